"""The reader interface every implementation fits, and what it reports.

A :class:`Reader` is one program's handle on the card readers of a machine: it lists them,
waits for a card, holds at most one **exclusive** connection to a card and moves raw APDU bytes
over it. It does nothing about status words: 61xx / 6Cxx are resolved once, above every
reader, by :class:`terminal_sdk.readers.transport.ApduTransport`.

Contact and contactless readers differ only in what the UI asks of the cardholder ("insert" or
"tap"); both just transmit. :func:`detect_interface` tells them apart.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self, runtime_checkable

from terminal_sdk.errors import ReaderError

__all__ = [
    "DEFAULT_WAIT_S",
    "CardInfo",
    "CardInterface",
    "EventKind",
    "EventStream",
    "Reader",
    "ReaderEvent",
    "ReaderInfo",
    "detect_interface",
    "offered_protocols",
]

#: How long :meth:`Reader.wait_for_card` waits by default: a cardholder finding the card.
DEFAULT_WAIT_S: Final = 30.0

# Words vendors put in the PC/SC names of contactless readers or of the contactless slot of a
# dual-interface reader ("ACS ACR1252 1S CL Reader PICC 0", "OMNIKEY CardMan 5x21-CL 0",
# "Identiv uTrust 3700 F Contactless Reader"). Matched as whole words, case-insensitively.
_CONTACTLESS_NAME_WORDS: Final = frozenset({"contactless", "picc", "cl", "nfc", "rfid"})
_CONTACTLESS_NAME_PREFIXES: Final = ("acr122",)
# PC/SC Part 3 §3.1.3.2.3: a reader builds a pseudo-ATR for a contactless *storage* card with
# historical bytes 80 4F 0C A0 00 00 03 06 (RID of PC/SC). The pseudo-ATR of an ISO 14443-4
# card (3B 8n 80 01 ...) is not used: contact cards, our software cards among them, share it.
_PCSC_STORAGE_CARD_MARK: Final = bytes.fromhex("804F0CA000000306")


class CardInterface(enum.StrEnum):
    CONTACT = "contact"
    CONTACTLESS = "contactless"


def detect_interface(reader_name: str, atr: bytes | None = None) -> CardInterface:
    """Contact or contactless, from the reader's name and, failing that, the ATR.

    The name decides when it says so: dual-interface readers show up as two PC/SC readers
    whose names tell the slots apart. The ATR only catches the PC/SC storage-card pseudo-ATR.

    >>> detect_interface("ACS ACR1252 1S CL Reader PICC 0")
    <CardInterface.CONTACTLESS: 'contactless'>
    >>> detect_interface("Virtual PCD 00 00", bytes.fromhex("3B8180018080"))
    <CardInterface.CONTACT: 'contact'>
    """
    words = "".join(ch if ch.isalnum() else " " for ch in reader_name.lower()).split()
    if any(word in _CONTACTLESS_NAME_WORDS for word in words) or any(
        word.startswith(_CONTACTLESS_NAME_PREFIXES) for word in words
    ):
        return CardInterface.CONTACTLESS
    if atr is not None and _PCSC_STORAGE_CARD_MARK in atr:
        return CardInterface.CONTACTLESS
    return CardInterface.CONTACT


def offered_protocols(atr: bytes) -> frozenset[int]:
    """The transmission protocols (0 = T=0, 1 = T=1, ...) an ATR offers (ISO 7816-3 §8.2).

    No TD1 means T=0 only. Malformed or truncated ATRs give what could be read.

    >>> sorted(offered_protocols(bytes.fromhex("3B0C5348")))
    [0]
    >>> sorted(offered_protocols(bytes.fromhex("3B8180018080")))
    [0, 1]
    """
    protocols: set[int] = set()
    if len(atr) < 2:
        return frozenset({0})
    index, y = 1, atr[1] >> 4
    first = True
    while True:
        # TAi, TBi, TCi are present when bits 5, 6, 7 of Y are set; TDi when bit 8 is.
        index += sum(1 for bit in (0x1, 0x2, 0x4) if y & bit)
        if not y & 0x8:
            break
        index += 1
        if index >= len(atr):
            break
        td = atr[index]
        protocols.add(td & 0x0F)
        y = td >> 4
        first = False
    if first:
        protocols.add(0)
    return frozenset(protocols)


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    """A reader as :meth:`Reader.list_readers` reports it. ``atr`` is None without a card."""

    name: str
    interface: CardInterface
    atr: bytes | None = None

    @property
    def card_present(self) -> bool:
        return self.atr is not None


@dataclass(frozen=True, slots=True)
class CardInfo:
    """A card in a reader: where it is, its ATR, and (once connected) the protocol in use."""

    reader: str
    atr: bytes
    interface: CardInterface
    protocol: int | None = None  # 0 = T=0, 1 = T=1; None before connect

    def __repr__(self) -> str:
        protocol = "" if self.protocol is None else f", protocol=T={self.protocol}"
        return (
            f"CardInfo(reader={self.reader!r}, atr={self.atr.hex().upper()}, "
            f"interface={self.interface.value}{protocol})"
        )


class EventKind(enum.StrEnum):
    READER_ADDED = "reader_added"
    READER_REMOVED = "reader_removed"
    CARD_INSERTED = "card_inserted"
    CARD_REMOVED = "card_removed"


@dataclass(frozen=True, slots=True)
class ReaderEvent:
    """A reader plugged in or out, a card inserted or removed. ``atr`` is set on insertion."""

    kind: EventKind
    reader: str
    atr: bytes | None = None


class EventStream:
    """A queue of :class:`ReaderEvent` fed by a reader until :meth:`close`.

    Use it as a context manager and pull events with :meth:`get`, or iterate (blocks)::

        with reader.events() as events:
            event = events.get(timeout_s=5)   # None when nothing happened in time

    A stream starts with the current state, as if every reader had just been plugged in and
    every card just inserted, so a waiting screen needs no separate first look. If the source
    fails (the PC/SC service stops), :meth:`get` raises that :class:`ReaderError` once the
    events before it are consumed.
    """

    _CLOSED: Final = object()

    def __init__(self, on_close: Callable[[], None] | None = None) -> None:
        self._queue: queue.Queue[ReaderEvent | ReaderError | object] = queue.Queue()
        self._on_close = on_close
        self._closed = threading.Event()

    # -- producer side ------------------------------------------------------------------------

    def put(self, event: ReaderEvent) -> None:
        if not self._closed.is_set():
            self._queue.put(event)

    def fail(self, error: ReaderError) -> None:
        """The source stopped because of ``error``: :meth:`get` raises it after the events."""
        if not self._closed.is_set():
            self._queue.put(error)

    # -- consumer side ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def get(self, timeout_s: float | None = None) -> ReaderEvent | None:
        """The next event; None after ``timeout_s`` (or at once when closed and drained)."""
        try:
            item = (
                self._queue.get(timeout=timeout_s) if timeout_s != 0 else self._queue.get_nowait()
            )
        except queue.Empty:
            return None
        if isinstance(item, ReaderError):
            raise item
        if isinstance(item, ReaderEvent):
            return item
        return None  # the close marker

    def __iter__(self) -> Iterator[ReaderEvent]:
        while not self._closed.is_set() or not self._queue.empty():
            event = self.get(timeout_s=None if not self._closed.is_set() else 0)
            if event is None:
                if self._closed.is_set():
                    return
                continue
            yield event

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(self._CLOSED)  # wakes a consumer blocked in get()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@runtime_checkable
class Reader(Protocol):
    """One program's handle on the readers of a machine; at most one connection at a time.

    Every method raises :class:`terminal_sdk.errors.ReaderError` subclasses only.
    """

    def list_readers(self) -> list[ReaderInfo]:
        """The readers attached now (empty list if none), with the ATR of any card inside."""
        ...

    def wait_for_card(
        self, timeout_s: float = DEFAULT_WAIT_S, reader: str | None = None
    ) -> CardInfo:
        """Block until a card is in ``reader`` (any reader if None); NoReader, NoCard on timeout."""
        ...

    def connect(self, reader: str | None = None) -> CardInfo:
        """Connect exclusively to the card in ``reader``; None: the reader of the last
        :meth:`wait_for_card`, else the first reader holding a card. ReaderBusy, NoCard."""
        ...

    @property
    def card(self) -> CardInfo | None:
        """The connected card, or None."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return the response APDU as is (data || SW1 SW2).

        CardRemoved if the card left, TransmitFailed if it did not answer, NoCard when not
        connected.
        """
        ...

    def disconnect(self) -> None:
        """Release the card (reset, so no verified PIN outlives the transaction). Idempotent."""
        ...

    def events(self) -> EventStream:
        """A new stream of insertion / removal events; close it when done."""
        ...

    def close(self) -> None:
        """Disconnect and release every resource. Idempotent."""
        ...
