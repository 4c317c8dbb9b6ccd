"""vsmartcard *vpcd* wire protocol, and a slot that plugs a software card into pcscd.

pcscd loads vsmartcard's reader driver ``libifdvpcd.so`` (Debian package ``vsmartcard-vpcd``).
For every configured reader slot the driver **listens** on a TCP port (Debian's
``/etc/reader.conf.d/vpcd`` says ``CHANNELID 0x8C7B``: slot 0 on 35963, slot 1 on 35964, on all
interfaces). A virtual card (*vicc*) **connects** to that port: an open connection is an
inserted card, a closed connection is a removed card.

Every message in both directions is framed as a 2-byte big-endian length and a payload. The
driver sends:

=================  ======================================  ======================
payload            meaning                                 the card answers
=================  ======================================  ======================
``00``             power off                               nothing
``01``             power on (cold reset)                   nothing
``02``             reset (warm reset)                      nothing
``04``             get ATR                                 the ATR
anything else      a command APDU                          the response APDU
=================  ======================================  ======================

pcscd asks for the ATR every time it polls the reader for card presence (about every 0.4 s),
so a card that stops answering counts as removed.

This module has two layers, kept apart on purpose:

* **Pure protocol** — :func:`encode_frame`, :class:`FrameDecoder`, :func:`handle_message`.
  Bytes in, bytes out; testable without a socket.
* **I/O** — :class:`VirtualCardSlot` connects to the driver's port and serves a card from a
  background thread. It is the one place in :mod:`sscard` that touches a socket, an exception
  to DESIGN §3 ("sscard has no I/O") accepted because it needs nothing but the standard library
  and the software cards live here. It would move to a tools package (``sscard_tools`` or
  ``terminal_sdk.testing``) if one appears.

Hierarchy of errors::

    VpcdError
    ├── VpcdProtocolError      a frame or control message the driver never sends
    └── VpcdConnectError       nothing listens on the port (pcscd not running, no vpcd driver)

Example (pure layer)::

    >>> encode_frame(bytes([VpcdControl.GET_ATR]))
    b'\\x00\\x01\\x04'
    >>> decoder = FrameDecoder()
    >>> decoder.feed(b"\\x00\\x02\\x00")
    []
    >>> decoder.feed(b"\\x84")
    [b'\\x00\\x84']
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import threading
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "MAX_PAYLOAD_LEN",
    "VPCD_DEFAULT_HOST",
    "VPCD_DEFAULT_PORT",
    "FrameDecoder",
    "VirtualCard",
    "VirtualCardSlot",
    "VpcdConnectError",
    "VpcdControl",
    "VpcdError",
    "VpcdProtocolError",
    "encode_frame",
    "handle_message",
]

_log = logging.getLogger(__name__)

VPCD_DEFAULT_HOST: Final = "127.0.0.1"
#: Port of reader slot 0 in Debian's ``/etc/reader.conf.d/vpcd`` (``CHANNELID 0x8C7B``);
#: slot *n* listens on ``VPCD_DEFAULT_PORT + n``.
VPCD_DEFAULT_PORT: Final = 0x8C7B
#: The length prefix is 2 bytes, so no payload can be longer.
MAX_PAYLOAD_LEN: Final = 0xFFFF
_LENGTH_PREFIX_LEN: Final = 2
# A real card answers 6F00 ("no precise diagnosis") when its own code fails; the software
# card does the same rather than dropping the connection, so the reader sees a card error.
_SW_NO_PRECISE_DIAGNOSIS: Final = b"\x6f\x00"
_RECV_CHUNK_LEN: Final = 4096


class VpcdError(Exception):
    """Base class of the errors of this module."""


class VpcdProtocolError(VpcdError):
    """A frame or control message that the vpcd driver never sends."""


class VpcdConnectError(VpcdError):
    """Nothing accepts connections on the vpcd port: pcscd is not running or has no vpcd."""


class VpcdControl(enum.IntEnum):
    """One-byte control messages from the driver (payload length 1)."""

    POWER_OFF = 0x00
    POWER_ON = 0x01
    RESET = 0x02
    GET_ATR = 0x04


@runtime_checkable
class VirtualCard(Protocol):
    """What the slot needs from a card: the software cards in :mod:`sscard.softcard` fit."""

    @property
    def atr(self) -> bytes:
        """Answer to reset, 2..33 bytes."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Execute one command APDU and return the response APDU (data ‖ SW1 SW2)."""
        ...

    def reset(self) -> None:
        """Lose volatile state (selected files, verified PIN), as a power cycle does."""
        ...


def encode_frame(payload: bytes) -> bytes:
    """Frame ``payload`` for the vpcd socket: 2-byte big-endian length ‖ payload.

    Raises :class:`ValueError` for a payload longer than :data:`MAX_PAYLOAD_LEN` bytes.
    """
    if len(payload) > MAX_PAYLOAD_LEN:
        raise ValueError(f"vpcd payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LEN}")
    return len(payload).to_bytes(_LENGTH_PREFIX_LEN, "big") + payload


class FrameDecoder:
    """Incremental decoder of the vpcd framing: feed whatever ``recv`` returned.

    The buffer never holds more than one frame's worth (2 + 65,535 bytes) plus one chunk, since
    each complete frame is taken out as soon as it is whole.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads that are now complete, in order."""
        self._buffer += data
        payloads: list[bytes] = []
        while len(self._buffer) >= _LENGTH_PREFIX_LEN:
            length = int.from_bytes(self._buffer[:_LENGTH_PREFIX_LEN], "big")
            end = _LENGTH_PREFIX_LEN + length
            if len(self._buffer) < end:
                break
            payloads.append(bytes(self._buffer[_LENGTH_PREFIX_LEN:end]))
            del self._buffer[:end]
        return payloads

    @property
    def pending_len(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)


def handle_message(
    card: VirtualCard,
    payload: bytes,
    *,
    on_card_fault: Callable[[Exception], None] | None = None,
) -> bytes | None:
    """Apply one message from the driver to ``card``; return the payload to answer, or None.

    Control messages that need no answer (power off / on, reset) return None. An APDU returns
    the card's response APDU. If the card's code raises, the answer is ``6F00`` as from a real
    card with an internal fault; the exception is logged (type only: APDUs may carry a PIN)
    and passed to ``on_card_fault`` so a test can fail on it.

    Raises :class:`VpcdProtocolError` for an empty payload or an unknown control byte.
    """
    if not payload:
        raise VpcdProtocolError("empty vpcd message")
    if len(payload) == 1:
        try:
            control = VpcdControl(payload[0])
        except ValueError:
            raise VpcdProtocolError(f"unknown vpcd control byte 0x{payload[0]:02X}") from None
        if control is VpcdControl.GET_ATR:
            return card.atr
        # Power off, power on and reset all end the card session: volatile state is lost.
        card.reset()
        return None
    try:
        return card.transmit(payload)
    except Exception as exc:  # a card never drops the line on its own bug
        _log.error("software card raised %s on INS %02X", type(exc).__name__, _ins(payload))
        if on_card_fault is not None:
            on_card_fault(exc)
        return _SW_NO_PRECISE_DIAGNOSIS


def _ins(apdu: bytes) -> int:
    return apdu[1] if len(apdu) > 1 else -1


# --------------------------------------------------------------------------------------------
# I/O layer
# --------------------------------------------------------------------------------------------


class VirtualCardSlot:
    """One vpcd reader slot into which a software card can be inserted and removed.

    ``insert(card)`` connects to the driver's port and serves ``card`` from a daemon thread;
    ``remove()`` closes the connection, which pcscd sees as the card being pulled out at its
    next presence poll. Insert another card afterwards to swap cards. pcscd notices both
    changes within about 0.4 s; wait on the reader state (``SCardGetStatusChange``) rather than
    sleeping.

    The slot is also a context manager that removes the card on exit::

        with VirtualCardSlot(port=35963) as slot:
            slot.insert(card)
            ...   # talk to "Virtual PCD 00 00" through pyscard

    Thread safety: ``insert``/``remove`` are meant for one controlling thread. The card object
    is driven by the serving thread while inserted; read its state from elsewhere only between
    APDUs.
    """

    def __init__(
        self,
        host: str = VPCD_DEFAULT_HOST,
        port: int = VPCD_DEFAULT_PORT,
        *,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"invalid TCP port {port}")
        if connect_timeout_s <= 0:
            raise ValueError("connect_timeout_s must be positive")
        self._host = host
        self._port = port
        self._connect_timeout_s = connect_timeout_s
        self._card: VirtualCard | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._polled = threading.Event()
        self._disconnected = threading.Event()
        self._card_faults = 0

    def __repr__(self) -> str:
        # The card's repr is left out: it is the card's business what it shows.
        state = "inserted" if self._card is not None else "empty"
        return f"VirtualCardSlot({self._host}:{self._port}, {state})"

    @property
    def port(self) -> int:
        """The TCP port of the vpcd reader slot."""
        return self._port

    @property
    def card(self) -> VirtualCard | None:
        """The inserted card, or None."""
        return self._card

    @property
    def connected(self) -> bool:
        """True while a card is inserted and the driver has not closed the connection."""
        return self._card is not None and not self._disconnected.is_set()

    @property
    def card_faults(self) -> int:
        """How many APDUs the card answered with 6F00 because its code raised."""
        return self._card_faults

    def insert(self, card: VirtualCard) -> None:
        """Connect to the driver and serve ``card``.

        Raises :class:`VpcdError` if a card is already inserted and :class:`VpcdConnectError` if
        nothing listens on the port.
        """
        if self._card is not None:
            raise VpcdError("a card is already inserted in this slot; remove it first")
        try:
            sock = socket.create_connection(
                (self._host, self._port), timeout=self._connect_timeout_s
            )
        except OSError as exc:
            raise VpcdConnectError(
                f"cannot connect to vpcd at {self._host}:{self._port} ({exc}); is pcscd running"
                " with the vsmartcard vpcd driver (/etc/reader.conf.d/vpcd)?"
            ) from exc
        # Blocking reads: the serving thread waits for the driver; remove() unblocks it by
        # shutting the socket down.
        sock.settimeout(None)
        # APDUs are tiny and strictly request/response: Nagle would only add latency.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._card = card
        self._sock = sock
        self._polled.clear()
        self._disconnected.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(sock, card), name=f"vpcd-slot-{self._port}", daemon=True
        )
        self._thread.start()

    def remove(self, *, join_timeout_s: float = 5.0) -> VirtualCard | None:
        """Pull the card out: close the connection and stop serving. Returns the card.

        Idempotent: removing from an empty slot returns None.
        """
        card, sock, thread = self._card, self._sock, self._thread
        self._card, self._sock, self._thread = None, None, None
        try:
            if sock is not None:
                # shutdown() wakes the serving thread from recv(); the descriptor is closed
                # only after the thread is gone, so it cannot be reused under the thread.
                with contextlib.suppress(OSError):  # the driver may have closed it first
                    sock.shutdown(socket.SHUT_RDWR)
            if thread is not None:
                thread.join(join_timeout_s)
                if thread.is_alive():
                    raise VpcdError(f"vpcd slot thread did not stop within {join_timeout_s} s")
        finally:
            if sock is not None:
                sock.close()
        return card

    def wait_until_polled(self, timeout_s: float = 5.0) -> bool:
        """Wait until pcscd has asked the inserted card for its ATR (it has seen the card)."""
        return self._polled.wait(timeout_s)

    def __enter__(self) -> VirtualCardSlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def _serve(self, sock: socket.socket, card: VirtualCard) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                try:
                    _ack_quickly(sock)
                    data = sock.recv(_RECV_CHUNK_LEN)
                except OSError:
                    return  # remove() shut the socket down, or the driver reset it
                if not data:
                    return  # the driver closed the connection (pcscd stopped or ejected)
                for payload in decoder.feed(data):
                    if payload == bytes([VpcdControl.GET_ATR]):
                        self._polled.set()
                    answer = handle_message(card, payload, on_card_fault=self._record_fault)
                    if answer is None:
                        continue
                    try:
                        sock.sendall(encode_frame(answer))
                    except OSError:
                        return
        except VpcdProtocolError as exc:
            # Unknown traffic on the card's line: pull the card rather than guess an answer.
            _log.error("vpcd slot %d: %s; disconnecting", self._port, exc)
        finally:
            self._disconnected.set()

    def _record_fault(self, exc: Exception) -> None:
        del exc  # already logged by handle_message; only the count is kept
        self._card_faults += 1


def _ack_quickly(sock: socket.socket) -> None:
    """Acknowledge the next segment at once instead of after the ~40 ms delayed-ACK timer.

    Debian's vpcd writes a frame's 2-byte length and its payload with two ``send`` calls; with
    Nagle on in pcscd's socket the payload waits for our ACK of the length, and a delayed ACK
    made every APDU take ~44 ms. Linux clears TCP_QUICKACK after use, so it is set before each
    read; elsewhere the option does not exist and the delay is merely kept.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
