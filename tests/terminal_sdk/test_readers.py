"""MemoryReader as a Reader: listing, waiting, exclusive connections, events, interfaces."""

from __future__ import annotations

import doctest
import threading

import pytest
from sdk_testkit import Pki, legacy_card, third_gen_card

from terminal_sdk import (
    CardInterface,
    EventKind,
    MemoryReader,
    NoCard,
    NoReader,
    Reader,
    ReaderBusy,
    ReaderEvent,
)
from terminal_sdk.readers import base
from terminal_sdk.readers.base import detect_interface, offered_protocols


def test_memory_reader_is_a_reader() -> None:
    assert isinstance(MemoryReader(), Reader)


def test_list_readers_shows_cards_and_interfaces(pki: Pki) -> None:
    reader = MemoryReader(["Slot A", "Slot B CL"], contactless=["Slot B CL"])
    card = third_gen_card(pki)
    reader.insert(card, "Slot B CL")
    listed = {r.name: r for r in reader.list_readers()}
    assert listed["Slot A"].interface is CardInterface.CONTACT
    assert not listed["Slot A"].card_present
    assert listed["Slot B CL"].interface is CardInterface.CONTACTLESS
    assert listed["Slot B CL"].atr == card.atr
    info = reader.wait_for_card(timeout_s=0)
    assert (info.reader, info.interface) == ("Slot B CL", CardInterface.CONTACTLESS)
    assert reader.connect().reader == "Slot B CL"


def test_no_reader_and_no_card() -> None:
    empty = MemoryReader(names=())
    assert empty.list_readers() == []
    with pytest.raises(NoReader, match="No card reader found"):
        empty.wait_for_card(timeout_s=0.01)
    with pytest.raises(NoReader):
        empty.connect()
    reader = MemoryReader()
    with pytest.raises(NoCard, match="Insert the social security card") as no_card:
        reader.wait_for_card(timeout_s=0.02)
    assert no_card.value.detail == "no card within 0.02 s"
    with pytest.raises(NoReader):
        reader.wait_for_card(timeout_s=0.01, reader="Nope")
    with pytest.raises(NoCard):
        reader.connect()
    with pytest.raises(NoCard):
        reader.transmit(b"\x00\xa4\x04\x00")


def test_wait_for_card_wakes_on_insertion_from_another_thread() -> None:
    reader = MemoryReader()
    card = legacy_card()
    timer = threading.Timer(0.05, reader.insert, args=(card,))
    timer.start()
    try:
        info = reader.wait_for_card(timeout_s=5)
    finally:
        timer.join()
    assert info.atr == card.atr


def test_connections_are_exclusive(pki: Pki) -> None:
    reader = MemoryReader()
    other_program = reader.sibling()
    reader.insert(third_gen_card(pki))
    assert reader.connect().protocol == 1
    with pytest.raises(ReaderBusy, match="in use by another program") as busy:
        other_program.connect()
    assert busy.value.code == "READER_BUSY"
    reader.disconnect()
    reader.disconnect()  # idempotent
    assert other_program.connect().reader == "Memory Reader 0"
    assert reader.card is None
    assert other_program.card is not None
    # a new card frees the reader of a connection to the card before it
    reader.remove()
    reader.insert(legacy_card())
    assert reader.connect().atr == legacy_card().atr


def test_insert_and_remove_misuse(pki: Pki) -> None:
    reader = MemoryReader()
    reader.insert(third_gen_card(pki))
    with pytest.raises(ValueError, match="already holds"):
        reader.insert(legacy_card())
    with pytest.raises(ValueError, match="no reader named"):
        reader.remove("Nope")
    assert reader.remove() is not None
    assert reader.remove() is None


def test_events_start_with_the_state_then_follow_changes(pki: Pki) -> None:
    reader = MemoryReader()
    card = third_gen_card(pki)
    reader.insert(card)
    with reader.events() as events:
        assert events.get(0) == ReaderEvent(EventKind.READER_ADDED, "Memory Reader 0")
        assert events.get(0) == ReaderEvent(EventKind.CARD_INSERTED, "Memory Reader 0", card.atr)
        assert events.get(0) is None
        reader.remove()
        reader.plug("USB CL Reader", contactless=True)
        reader.insert(legacy_card(), "USB CL Reader")
        reader.unplug("USB CL Reader")
        kinds = [(e.kind, e.reader) for e in iter(lambda: events.get(0.05), None)]
    assert kinds == [
        (EventKind.CARD_REMOVED, "Memory Reader 0"),
        (EventKind.READER_ADDED, "USB CL Reader"),
        (EventKind.CARD_INSERTED, "USB CL Reader"),
        (EventKind.CARD_REMOVED, "USB CL Reader"),
        (EventKind.READER_REMOVED, "USB CL Reader"),
    ]
    assert events.closed
    reader.insert(legacy_card())  # a closed stream is no longer fed
    assert events.get(0) is None


def test_event_stream_iteration_ends_when_closed() -> None:
    reader = MemoryReader()
    events = reader.events()
    threading.Timer(0.05, events.close).start()
    assert [e.kind for e in events] == [EventKind.READER_ADDED]


@pytest.mark.parametrize(
    ("name", "atr", "expected"),
    [
        ("ACS ACR1252 1S CL Reader PICC 0", None, CardInterface.CONTACTLESS),
        ("OMNIKEY CardMan 5x21-CL 0", None, CardInterface.CONTACTLESS),
        ("Identiv uTrust 3700 F Contactless Reader 0", None, CardInterface.CONTACTLESS),
        ("ACS ACR122U PICC Interface 00 00", None, CardInterface.CONTACTLESS),
        ("Generic EMV Smartcard Reader 0", None, CardInterface.CONTACT),
        ("ACS ACR1252 1S CL Reader SAM 0", None, CardInterface.CONTACTLESS),
        ("Clever Reader 0", None, CardInterface.CONTACT),  # "cl" is a word, not a prefix
        ("Virtual PCD 00 00", bytes.fromhex("3B8180018080"), CardInterface.CONTACT),
        (
            "Some Reader 0",
            bytes.fromhex("3B8F8001804F0CA000000306030001000000006A"),
            CardInterface.CONTACTLESS,
        ),
    ],
)
def test_detect_interface(name: str, atr: bytes | None, expected: CardInterface) -> None:
    assert detect_interface(name, atr) is expected


@pytest.mark.parametrize(
    ("atr", "expected"),
    [
        ("3B0C53482D535343332D534F4654", {0}),
        ("3B8180018080", {0, 1}),
        ("3BFF1300008131FE45", {1}),  # TA1 TB1 TC1 TD1=81 (T=1), TD2=31 -> TA3 TB3
        ("3B", {0}),
        ("3B80", {0}),  # TD1 announced but missing
    ],
)
def test_offered_protocols(atr: str, expected: set[int]) -> None:
    assert offered_protocols(bytes.fromhex(atr)) == expected


def test_doctests() -> None:
    from terminal_sdk.readers import memory

    for module in (base, memory):
        result = doctest.testmod(module)
        assert result.failed == 0
        assert result.attempted > 0
