"""Readers that live in memory and hold software cards: the reader for tests and demos.

:class:`MemoryReader` behaves like :class:`terminal_sdk.readers.pcsc.PcscReader` where it
matters to the layers above: exclusive connections (a second handle, :meth:`sibling`, gets
ReaderBusy), CardRemoved when the card leaves during a connection, even in the middle of an
APDU, and the same events. The cards are :mod:`sscard.softcard` cards (anything with ``atr``,
``transmit`` and ``reset``, see :class:`sscard.vpcd.VirtualCard`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sscard.vpcd import VirtualCard
from terminal_sdk.errors import CardRemoved, NoCard, NoReader, ReaderBusy, TransmitFailed
from terminal_sdk.readers.base import (
    DEFAULT_WAIT_S,
    CardInfo,
    CardInterface,
    EventKind,
    EventStream,
    ReaderEvent,
    ReaderInfo,
    detect_interface,
    offered_protocols,
)

__all__ = ["DEFAULT_MEMORY_READER", "MemoryReader"]

DEFAULT_MEMORY_READER = "Memory Reader 0"


@dataclass(eq=False)
class _Slot:
    name: str
    interface: CardInterface
    card: VirtualCard | None = None
    insertion: int = 0  # bumped on every insert: a connection belongs to one insertion
    holder: object | None = None  # the MemoryReader holding the exclusive connection


@dataclass(eq=False)
class _Bus:
    """What the handles of one machine share: the slots, and who listens for events."""

    slots: dict[str, _Slot] = field(default_factory=dict)
    streams: list[EventStream] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, event: ReaderEvent) -> None:
        for stream in list(self.streams):
            stream.put(event)


class MemoryReader:
    """In-memory readers with software cards. Thread-safe; one connection per handle.

    >>> from terminal_sdk.readers.memory import MemoryReader
    >>> reader = MemoryReader()
    >>> [r.name for r in reader.list_readers()]
    ['Memory Reader 0']
    """

    def __init__(
        self,
        names: Sequence[str] = (DEFAULT_MEMORY_READER,),
        *,
        contactless: Iterable[str] = (),
        _bus: _Bus | None = None,
    ) -> None:
        self._bus = _bus if _bus is not None else _Bus()
        if _bus is None:
            wireless = set(contactless)
            for name in names:
                self._add_slot(name, contactless=name in wireless)
        self._slot: _Slot | None = None
        self._insertion = 0
        self._card: CardInfo | None = None
        self._waited: str | None = None

    # -- the test's hands -------------------------------------------------------------------

    def sibling(self) -> MemoryReader:
        """Another handle on the same readers, as a second program on the same PC has."""
        return MemoryReader(_bus=self._bus)

    def insert(self, card: VirtualCard, reader: str | None = None) -> None:
        """Put ``card`` into ``reader`` (the first reader if None); it gets a cold reset."""
        with self._bus.changed:
            slot = self._named_slot(reader)
            if slot.card is not None:
                raise ValueError(f"{slot.name} already holds a card: remove it first")
            card.reset()
            slot.card = card
            slot.insertion += 1
            slot.holder = None  # a connection to the card before is stale, as in PC/SC
            self._bus.changed.notify_all()
        self._bus.publish(ReaderEvent(EventKind.CARD_INSERTED, slot.name, card.atr))

    def remove(self, reader: str | None = None) -> VirtualCard | None:
        """Pull the card out of ``reader`` (the first reader if None); returns it. Idempotent."""
        with self._bus.changed:
            slot = self._named_slot(reader)
            card, slot.card = slot.card, None
            self._bus.changed.notify_all()
        if card is not None:
            self._bus.publish(ReaderEvent(EventKind.CARD_REMOVED, slot.name))
        return card

    def plug(self, name: str, *, contactless: bool = False) -> None:
        """Attach another reader (a USB reader plugged in)."""
        with self._bus.changed:
            if name in self._bus.slots:
                raise ValueError(f"{name} is already plugged in")
            self._add_slot(name, contactless=contactless)
            self._bus.changed.notify_all()
        self._bus.publish(ReaderEvent(EventKind.READER_ADDED, name))

    def unplug(self, name: str) -> None:
        """Detach a reader; a card in it goes with it."""
        with self._bus.changed:
            slot = self._bus.slots.pop(name, None)
            if slot is None:
                raise ValueError(f"{name} is not plugged in")
            had_card, slot.card = slot.card is not None, None
            self._bus.changed.notify_all()
        if had_card:
            self._bus.publish(ReaderEvent(EventKind.CARD_REMOVED, name))
        self._bus.publish(ReaderEvent(EventKind.READER_REMOVED, name))

    # -- Reader -------------------------------------------------------------------------------

    def list_readers(self) -> list[ReaderInfo]:
        with self._bus.changed:
            return [
                ReaderInfo(s.name, s.interface, s.card.atr if s.card is not None else None)
                for s in self._bus.slots.values()
            ]

    def wait_for_card(
        self, timeout_s: float = DEFAULT_WAIT_S, reader: str | None = None
    ) -> CardInfo:
        deadline = time.monotonic() + timeout_s
        with self._bus.changed:
            while True:
                if not self._bus.slots or (reader is not None and reader not in self._bus.slots):
                    raise NoReader(detail=f"reader {reader!r} not attached" if reader else None)
                for slot in self._bus.slots.values():
                    if slot.card is not None and reader in (None, slot.name):
                        self._waited = slot.name
                        return CardInfo(slot.name, slot.card.atr, slot.interface)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoCard(detail=f"no card within {timeout_s} s")
                self._bus.changed.wait(remaining)

    def connect(self, reader: str | None = None) -> CardInfo:
        self.disconnect()
        with self._bus.changed:
            if not self._bus.slots:
                raise NoReader
            slot = self._choose(reader if reader is not None else self._waited)
            if slot.card is None:
                raise NoCard
            if slot.holder is not None:
                raise ReaderBusy(detail=f"{slot.name} is held exclusively by another handle")
            slot.holder = self
            slot.card.reset()  # connecting powers the card up: a cold reset
            atr = slot.card.atr
            offered = offered_protocols(atr)
            self._slot, self._insertion = slot, slot.insertion
            self._card = CardInfo(slot.name, atr, slot.interface, 1 if 1 in offered else 0)
            return self._card

    @property
    def card(self) -> CardInfo | None:
        return self._card

    def transmit(self, apdu: bytes) -> bytes:
        slot = self._slot
        if slot is None:
            raise NoCard(detail="not connected")
        card = self._present_card(slot)
        try:
            response = card.transmit(bytes(apdu))
        except Exception as exc:  # a software card's bug looks like a card that stops answering
            raise TransmitFailed(detail=f"software card raised {type(exc).__name__}") from exc
        # Pulled out while it was working on the command: the answer never reaches the reader.
        self._present_card(slot)
        return response

    def disconnect(self) -> None:
        with self._bus.changed:
            slot, self._slot, self._card = self._slot, None, None
            if slot is None:
                return
            if slot.holder is self:
                slot.holder = None
            if slot.card is not None and slot.insertion == self._insertion:
                slot.card.reset()  # SCARD_RESET_CARD: a verified PIN ends with the transaction

    def events(self) -> EventStream:
        stream: EventStream

        def unsubscribe() -> None:
            with self._bus.changed:
                if stream in self._bus.streams:
                    self._bus.streams.remove(stream)

        stream = EventStream(on_close=unsubscribe)
        with self._bus.changed:
            for slot in self._bus.slots.values():
                stream.put(ReaderEvent(EventKind.READER_ADDED, slot.name))
                if slot.card is not None:
                    stream.put(ReaderEvent(EventKind.CARD_INSERTED, slot.name, slot.card.atr))
            self._bus.streams.append(stream)
        return stream

    def close(self) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        return f"MemoryReader(readers={list(self._bus.slots)}, connected={self._card is not None})"

    # -- helpers ------------------------------------------------------------------------------

    def _add_slot(self, name: str, *, contactless: bool) -> None:
        interface = CardInterface.CONTACTLESS if contactless else detect_interface(name)
        self._bus.slots[name] = _Slot(name, interface)

    def _named_slot(self, reader: str | None) -> _Slot:
        if reader is None:
            if not self._bus.slots:
                raise ValueError("no reader plugged in")
            return next(iter(self._bus.slots.values()))
        try:
            return self._bus.slots[reader]
        except KeyError:
            raise ValueError(f"no reader named {reader!r}") from None

    def _choose(self, reader: str | None) -> _Slot:
        if reader is not None:
            slot = self._bus.slots.get(reader)
            if slot is None:
                raise NoReader(detail=f"reader {reader!r} not attached")
            return slot
        with_card = [s for s in self._bus.slots.values() if s.card is not None]
        if not with_card:
            raise NoCard
        return with_card[0]

    def _present_card(self, slot: _Slot) -> VirtualCard:
        with self._bus.changed:
            attached = self._bus.slots.get(slot.name) is slot
            if not attached or slot.card is None or slot.insertion != self._insertion:
                raise CardRemoved(detail=f"card left {slot.name}")
            return slot.card
