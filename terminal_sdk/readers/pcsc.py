"""PC/SC readers through pyscard (pcsc-lite on Linux, WinSCard on Windows).

Built on pyscard's thin ``smartcard.scard`` layer rather than its object layer, for three
reasons: SCARD_SHARE_EXCLUSIVE and the disposition on disconnect must be explicit; every
PC/SC return code must map to one typed error (the object layer folds them into a few
exception classes and a message); and pyscard's CardMonitor / ReaderMonitor are process-wide
singletons whose threads cannot be stopped and print tracebacks to stderr when pcscd goes
away, which an SDK embedded in a HIS cannot have. :class:`PcscReader.events` does their job
with one stoppable thread per stream on ``SCardGetStatusChange``.

PC/SC handles are not shared between threads: each :class:`PcscReader` owns one context for
its calls, each event stream another one. Only :meth:`PcscReader.cancel_wait` crosses
threads, through ``SCardCancel``, which PC/SC allows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from terminal_sdk.errors import (
    CardRemoved,
    NoCard,
    NoReader,
    ReaderBusy,
    ReaderError,
    TransmitFailed,
)
from terminal_sdk.readers.base import (
    DEFAULT_WAIT_S,
    CardInfo,
    EventKind,
    EventStream,
    ReaderEvent,
    ReaderInfo,
    detect_interface,
)

__all__ = ["PcscReader"]

_log = logging.getLogger(__name__)

# Special reader name: pcsc-lite and WinSCard flag it CHANGED when a reader comes or goes.
_PNP_NOTIFICATION: Final = "\\\\?PnP?\\Notification"
# How long one SCardGetStatusChange blocks in the event thread before it looks at the reader
# list again; also the worst delay of close() on a stack without SCardCancel.
_EVENT_POLL_MS: Final = 500
_WAIT_SLICE_MS: Final = 1000


def _scard() -> Any:
    """pyscard's PC/SC module, imported on first use so the SDK imports without pyscard."""
    try:
        from smartcard import scard
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise NoReader(
            "Card reader support is not installed on this computer.",
            message_zh="本机未安装读卡器支持组件。",
            detail=f"pyscard is not importable: {exc}",
        ) from exc
    return scard


def _u32(code: int) -> int:
    # pyscard returns LONG; on some builds error codes come back negative.
    return code & 0xFFFFFFFF


class _Codes:
    """PC/SC return codes as unsigned 32-bit values, and the error each one maps to."""

    def __init__(self, scard: Any) -> None:
        def u(name: str) -> int:
            return _u32(getattr(scard, name))

        self.success = u("SCARD_S_SUCCESS")
        self.timeout = u("SCARD_E_TIMEOUT")
        self.cancelled = u("SCARD_E_CANCELLED")
        self.no_readers = u("SCARD_E_NO_READERS_AVAILABLE")
        self.no_service = {u("SCARD_E_NO_SERVICE"), u("SCARD_E_SERVICE_STOPPED")}
        self.stale_context = {u("SCARD_E_INVALID_HANDLE"), *self.no_service}
        self.no_reader = {
            u("SCARD_E_UNKNOWN_READER"),
            u("SCARD_E_READER_UNAVAILABLE"),
            u("SCARD_E_NO_READERS_AVAILABLE"),
        }
        self.no_card = {u("SCARD_E_NO_SMARTCARD")}
        self.removed = {u("SCARD_W_REMOVED_CARD"), u("SCARD_E_NO_SMARTCARD")}
        self.busy = {u("SCARD_E_SHARING_VIOLATION")}
        self.mute = {
            u("SCARD_W_UNRESPONSIVE_CARD"),
            u("SCARD_W_UNPOWERED_CARD"),
            u("SCARD_W_UNSUPPORTED_CARD"),
            u("SCARD_E_PROTO_MISMATCH"),
        }


def _message(scard: Any, code: int) -> str:
    try:
        return f"{scard.SCardGetErrorMessage(code)} (0x{_u32(code):08X})"
    except Exception:  # a message for a log must not raise
        return f"PC/SC error 0x{_u32(code):08X}"


_SERVICE_DOWN_MESSAGE: Final = (
    "The card reader service is not running. Restart the computer or ask IT support."
)
_SERVICE_DOWN_MESSAGE_ZH: Final = "读卡器服务未运行，请重启电脑或联系信息科。"


class PcscReader:
    """A :class:`terminal_sdk.readers.base.Reader` over PC/SC.

    ``reader`` names the reader to use (see :meth:`list_readers`); None lets
    :meth:`wait_for_card` and :meth:`connect` take any reader that holds a card. Connections
    are exclusive (SCARD_SHARE_EXCLUSIVE), T=0 or T=1 as the card offers, and end with
    SCARD_RESET_CARD so that a verified PIN never outlives the transaction.
    """

    def __init__(self, reader: str | None = None) -> None:
        self._scard = _scard()
        self._codes = _Codes(self._scard)
        self._preferred = reader
        self._context: Any = None
        self._context_lock = threading.Lock()
        self._hcard: Any = None
        self._protocol: int | None = None
        self._card: CardInfo | None = None
        self._waited: str | None = None
        self._streams: list[_EventThread] = []

    # -- context ------------------------------------------------------------------------------

    def _ctx(self) -> Any:
        with self._context_lock:
            if self._context is None:
                self._context = _establish(self._scard, self._codes)
            return self._context

    def _drop_ctx(self) -> None:
        """Forget a context pcscd no longer knows (it restarted); the next call makes one."""
        with self._context_lock:
            context, self._context = self._context, None
        if context is not None:
            self._scard.SCardReleaseContext(context)

    def _check_context_error(self, rv: int) -> None:
        if _u32(rv) in self._codes.stale_context:
            self._drop_ctx()
            raise NoReader(
                _SERVICE_DOWN_MESSAGE,
                message_zh=_SERVICE_DOWN_MESSAGE_ZH,
                detail=_message(self._scard, rv),
            )

    # -- Reader -------------------------------------------------------------------------------

    def reader_names(self) -> list[str]:
        rv, names = self._scard.SCardListReaders(self._ctx(), [])
        if _u32(rv) == self._codes.no_readers:
            return []
        self._check_context_error(rv)
        if _u32(rv) != self._codes.success:
            raise NoReader(detail=f"SCardListReaders: {_message(self._scard, rv)}")
        return [str(name) for name in names]

    def list_readers(self) -> list[ReaderInfo]:
        names = self.reader_names()
        if not names:
            return []
        states = self._states(names, timeout_ms=0)
        return [
            ReaderInfo(name, detect_interface(name, atr), atr) for name, (_, atr) in states.items()
        ]

    def wait_for_card(
        self, timeout_s: float = DEFAULT_WAIT_S, reader: str | None = None
    ) -> CardInfo:
        wanted = reader if reader is not None else self._preferred
        deadline = time.monotonic() + timeout_s
        known: dict[str, int] = {}
        saw_mute = False
        while True:
            names = self.reader_names()
            candidates = [n for n in names if wanted in (None, n)]
            if not candidates:
                detail = f"reader {wanted!r} not attached" if wanted else "no reader attached"
                raise NoReader(detail=detail)
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            current = {
                name: known.get(name, self._scard.SCARD_STATE_UNAWARE) for name in candidates
            }
            rv, result = self._scard.SCardGetStatusChange(
                self._ctx(), min(remaining_ms, _WAIT_SLICE_MS), list(current.items())
            )
            code = _u32(rv)
            if code == self._codes.cancelled:
                raise NoCard(detail="waiting for a card was cancelled")
            if code == self._codes.success:
                for name, event_state, atr in result:
                    if self._usable(event_state):
                        self._waited = str(name)
                        atr_bytes = bytes(atr)
                        return CardInfo(
                            str(name), atr_bytes, detect_interface(str(name), atr_bytes)
                        )
                    saw_mute = saw_mute or bool(event_state & self._scard.SCARD_STATE_MUTE)
                    known[str(name)] = event_state & ~self._scard.SCARD_STATE_CHANGED
            elif code != self._codes.timeout:
                self._check_context_error(rv)
                if code in self._codes.no_reader:
                    continue  # a reader went away while we waited: list again
                raise NoReader(detail=f"SCardGetStatusChange: {_message(self._scard, rv)}")
            if time.monotonic() >= deadline:
                if saw_mute:
                    # A card is in but does not answer its reset: upside down, dirty, dead.
                    raise TransmitFailed(detail="card present but mute (no ATR)")
                raise NoCard(detail=f"no card within {timeout_s} s")

    def cancel_wait(self) -> None:
        """From another thread: make a blocked :meth:`wait_for_card` raise NoCard now."""
        with self._context_lock:
            context = self._context
        if context is not None:
            self._scard.SCardCancel(context)

    def connect(self, reader: str | None = None) -> CardInfo:
        self.disconnect()
        name = reader or self._waited or self._preferred
        if name is None:
            with_card = [r for r in self.list_readers() if r.card_present]
            if not with_card:
                if not self.reader_names():
                    raise NoReader
                raise NoCard
            name = with_card[0].name
        scard = self._scard
        rv, hcard, protocol = scard.SCardConnect(
            self._ctx(),
            name,
            scard.SCARD_SHARE_EXCLUSIVE,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        code = _u32(rv)
        if code != self._codes.success:
            self._check_context_error(rv)
            detail = f"SCardConnect({name!r}): {_message(scard, rv)}"
            if code in self._codes.busy:
                raise ReaderBusy(detail=detail)
            if code in self._codes.no_card or code == _u32(scard.SCARD_W_REMOVED_CARD):
                raise NoCard(detail=detail)
            if code in self._codes.no_reader:
                raise NoReader(detail=detail)
            raise TransmitFailed(detail=detail)
        self._hcard, self._protocol = hcard, protocol
        rv, _reader, _state, _protocol, atr = scard.SCardStatus(hcard)
        if _u32(rv) != self._codes.success:
            self.disconnect()
            raise CardRemoved(detail=f"SCardStatus: {_message(scard, rv)}")
        atr_bytes = bytes(atr)
        number = 0 if protocol == scard.SCARD_PROTOCOL_T0 else 1
        self._card = CardInfo(name, atr_bytes, detect_interface(name, atr_bytes), number)
        return self._card

    @property
    def card(self) -> CardInfo | None:
        return self._card

    def transmit(self, apdu: bytes) -> bytes:
        if self._hcard is None:
            raise NoCard(detail="not connected")
        rv, response = self._scard.SCardTransmit(self._hcard, self._protocol, list(apdu))
        code = _u32(rv)
        if code == self._codes.success:
            return bytes(response)
        detail = f"SCardTransmit: {_message(self._scard, rv)}"
        if code in self._codes.removed:
            raise CardRemoved(detail=detail)
        if code == _u32(self._scard.SCARD_W_RESET_CARD):
            # Someone reset the card under us (not possible while we hold it exclusively,
            # but a driver can): its selected files and verified PIN are gone.
            raise CardRemoved(
                "The card was reset during the transaction. Start over.",
                message_zh="交易过程中卡片被复位，请重新开始。",
                detail=detail,
            )
        if code in self._codes.no_reader:
            raise NoReader(
                "The card reader was disconnected during the transaction.",
                message_zh="交易过程中读卡器断开连接。",
                detail=detail,
            )
        self._check_context_error(rv)
        raise TransmitFailed(detail=detail)

    def disconnect(self) -> None:
        hcard, self._hcard, self._card, self._protocol = self._hcard, None, None, None
        if hcard is not None:
            # The card may be gone already; the handle is released either way.
            self._scard.SCardDisconnect(hcard, self._scard.SCARD_RESET_CARD)

    def events(self) -> EventStream:
        watcher = _EventThread(self._scard, self._codes, self._preferred)
        self._streams.append(watcher)
        watcher.start()
        return watcher.stream

    def close(self) -> None:
        self.disconnect()
        for watcher in self._streams:
            watcher.stream.close()
        self._streams.clear()
        self._drop_ctx()

    def __enter__(self) -> PcscReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PcscReader(reader={self._preferred!r}, connected={self._card is not None})"

    # -- helpers ------------------------------------------------------------------------------

    def _usable(self, event_state: int) -> bool:
        """A card is present and answered its reset (a mute card cannot be connected)."""
        scard = self._scard
        return bool(event_state & scard.SCARD_STATE_PRESENT) and not (
            event_state & scard.SCARD_STATE_MUTE
        )

    def _states(
        self, names: Sequence[str], *, timeout_ms: int
    ) -> dict[str, tuple[int, bytes | None]]:
        scard = self._scard
        rv, result = scard.SCardGetStatusChange(
            self._ctx(), timeout_ms, [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        )
        if _u32(rv) not in (self._codes.success, self._codes.timeout):
            self._check_context_error(rv)
            raise NoReader(detail=f"SCardGetStatusChange: {_message(scard, rv)}")
        states: dict[str, tuple[int, bytes | None]] = {}
        for name, event_state, atr in result:
            present = self._usable(event_state)
            states[str(name)] = (event_state, bytes(atr) if present else None)
        return states


def _establish(scard: Any, codes: _Codes) -> Any:
    rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if _u32(rv) != codes.success:
        raise NoReader(
            _SERVICE_DOWN_MESSAGE,
            message_zh=_SERVICE_DOWN_MESSAGE_ZH,
            detail=f"SCardEstablishContext: {_message(scard, rv)}",
        )
    return context


class _EventThread:
    """Feeds one :class:`EventStream` from its own PC/SC context until the stream closes."""

    def __init__(self, scard: Any, codes: _Codes, only: str | None) -> None:
        self._scard = scard
        self._codes = codes
        self._only = only
        self._states: dict[str, int] = {}  # reader -> last event state seen
        self._present: dict[str, bool] = {}  # reader -> a usable card is in
        self._context: Any = None
        self._context_ready = threading.Event()
        self.stream = EventStream(on_close=self._stop)
        self._thread = threading.Thread(
            target=self._run, name="terminal_sdk-pcsc-events", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _stop(self) -> None:
        # SCardCancel wakes the blocked SCardGetStatusChange; without it the poll ends within
        # _EVENT_POLL_MS anyway.
        if self._context_ready.is_set() and self._context is not None:
            self._scard.SCardCancel(self._context)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2 * _EVENT_POLL_MS / 1000)

    def _run(self) -> None:
        scard = self._scard
        try:
            self._context = _establish(scard, self._codes)
        except ReaderError as exc:
            self.stream.fail(exc)
            return
        finally:
            self._context_ready.set()
        try:
            self._loop()
        except ReaderError as exc:
            self.stream.fail(exc)
        except Exception as exc:  # the thread must end with a reported error
            _log.exception("reader event thread failed")
            self.stream.fail(ReaderError(detail=f"event thread: {type(exc).__name__}"))
        finally:
            scard.SCardReleaseContext(self._context)

    def _loop(self) -> None:
        scard, codes, stream = self._scard, self._codes, self.stream
        pnp_state = scard.SCARD_STATE_UNAWARE
        while not stream.closed:
            rv, names = scard.SCardListReaders(self._context, [])
            if _u32(rv) in codes.no_service:
                raise NoReader(_SERVICE_DOWN_MESSAGE, message_zh=_SERVICE_DOWN_MESSAGE_ZH)
            names = [str(n) for n in names] if _u32(rv) == codes.success else []
            self._sync_readers([n for n in names if self._only in (None, n)])
            query = [*self._states.items(), (_PNP_NOTIFICATION, pnp_state)]
            rv, result = scard.SCardGetStatusChange(self._context, _EVENT_POLL_MS, query)
            code = _u32(rv)
            if code == codes.cancelled or stream.closed:
                return
            if code in codes.no_service:
                raise NoReader(_SERVICE_DOWN_MESSAGE, message_zh=_SERVICE_DOWN_MESSAGE_ZH)
            if code != codes.success:
                continue  # timeout, or a reader vanished mid-call: list again
            for raw_name, event_state, atr in result:
                if str(raw_name) == _PNP_NOTIFICATION:
                    pnp_state = event_state & ~scard.SCARD_STATE_CHANGED
                elif str(raw_name) in self._states:
                    self._card_state(str(raw_name), event_state, bytes(atr))

    def _sync_readers(self, names: list[str]) -> None:
        """Report readers that went away (with their card) and readers that came."""
        for gone in [n for n in self._states if n not in names]:
            if self._present.pop(gone, False):
                self.stream.put(ReaderEvent(EventKind.CARD_REMOVED, gone))
            self._states.pop(gone)
            self.stream.put(ReaderEvent(EventKind.READER_REMOVED, gone))
        for new in [n for n in names if n not in self._states]:
            self._states[new] = self._scard.SCARD_STATE_UNAWARE
            self._present[new] = False
            self.stream.put(ReaderEvent(EventKind.READER_ADDED, new))

    def _card_state(self, name: str, event_state: int, atr: bytes) -> None:
        scard, stream = self._scard, self.stream
        before = self._states[name]
        # pcsc-lite and WinSCard count card events in the high 16 bits: a card swapped between
        # two polls is present both times but bumps the counter.
        swapped = before != scard.SCARD_STATE_UNAWARE and (event_state >> 16) != (before >> 16)
        self._states[name] = event_state & ~scard.SCARD_STATE_CHANGED
        now = bool(event_state & scard.SCARD_STATE_PRESENT) and not (
            event_state & scard.SCARD_STATE_MUTE
        )
        if now and self._present[name] and swapped:
            stream.put(ReaderEvent(EventKind.CARD_REMOVED, name))
            stream.put(ReaderEvent(EventKind.CARD_INSERTED, name, atr))
        elif now and not self._present[name]:
            stream.put(ReaderEvent(EventKind.CARD_INSERTED, name, atr))
        elif not now and self._present[name]:
            stream.put(ReaderEvent(EventKind.CARD_REMOVED, name))
        self._present[name] = now
