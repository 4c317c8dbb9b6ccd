"""terminal_sdk through the real PC/SC stack: PcscReader -> pyscard -> pcscd -> vpcd -> software
card (sscard.vpcd.VirtualCardSlot), with demo cards of both generations.

Needs pcscd and vsmartcard-vpcd (README bootstrap). Under CI=true a missing or broken pcscd
FAILS these tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from cikit import fail_or_skip
from pcscd import (
    PcscdSession,
    PcscdUnavailable,
    VpcdReader,
    claim_vpcd_slot,
    pcscd_with_vpcd,
    wait_for_card,
)

from sscard.certs import load_der, verify_chain
from sscard.crypto import sm2_verify
from sscard.demo import (
    DEMO_PIN,
    DemoPki,
    demo_card,
    demo_card_certificate,
    demo_card_key,
    demo_pki,
    legacy_master_key,
)
from sscard.layout import card_auth_message
from sscard.softcard import (
    LegacyCard,
    ThirdGenCard,
    diversify_card_key,
    legacy_cryptogram,
    make_legacy_card,
    make_third_gen_card,
)
from sscard.vpcd import VirtualCardSlot
from terminal_sdk import (
    CardInterface,
    CardRemoved,
    EventKind,
    EventStream,
    NoCard,
    PcscReader,
    ReaderBusy,
    ReaderEvent,
    SocialSecurityCard,
    WrongPin,
)

pytestmark = pytest.mark.integration

SEED = "terminal-sdk-integration"
TERMINAL_ID = "POS-INTEG-SDK"
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
CHALLENGE16 = bytes(range(0x80, 0x90))
CHALLENGE8 = bytes.fromhex("A1A2A3A4A5A6A7A8")


@pytest.fixture(scope="module")
def pki() -> DemoPki:
    return demo_pki(SEED)


@pytest.fixture(scope="module")
def pcscd_session() -> Iterator[PcscdSession]:
    try:
        with pcscd_with_vpcd() as session:
            yield session
    except PcscdUnavailable as exc:
        fail_or_skip(f"pcscd with vpcd is not available here: {exc}")


@pytest.fixture
def vpcd(pcscd_session: PcscdSession) -> Iterator[VpcdReader]:
    with claim_vpcd_slot(pcscd_session.readers) as claimed:
        yield claimed


@pytest.fixture
def slot(vpcd: VpcdReader) -> Iterator[VirtualCardSlot]:
    with VirtualCardSlot(port=vpcd.port) as card_slot:
        yield card_slot
        assert card_slot.card_faults == 0


@pytest.fixture
def pcsc() -> Iterator[PcscReader]:
    # Closed explicitly: a context released after pcscd stops would only log noise.
    reader = PcscReader()
    yield reader
    reader.close()


def third_gen(pki: DemoPki, *, t0_get_response: bool = False) -> ThirdGenCard:
    card = demo_card(SEED, 0)
    assert card.generation == 3
    return make_third_gen_card(
        card.identity,
        demo_card_key(SEED, 0),
        demo_card_certificate(SEED, 0, pki).der,
        DEMO_PIN,
        t0_get_response=t0_get_response,
    )


def legacy() -> LegacyCard:
    card = demo_card(SEED, 1)
    assert card.generation == 2
    return make_legacy_card(card.identity, legacy_master_key(SEED), DEMO_PIN)


def next_event(events: EventStream, reader: str, kind: EventKind) -> ReaderEvent:
    """The next event of ``kind`` for ``reader`` (other slots may be busy with other tests)."""
    while True:
        event = events.get(timeout_s=10)
        assert event is not None, f"no {kind} event for {reader} within 10 s"
        if event.reader == reader and event.kind is kind:
            return event


def test_third_gen_then_legacy_card_through_pcscd(
    pki: DemoPki, vpcd: VpcdReader, slot: VirtualCardSlot, pcsc: PcscReader
) -> None:
    listed = {r.name: r for r in pcsc.list_readers()}
    assert vpcd.name in listed
    assert listed[vpcd.name].interface is CardInterface.CONTACT

    with pcsc.events() as events:
        card = third_gen(pki)
        slot.insert(card)
        assert next_event(events, vpcd.name, EventKind.CARD_INSERTED).atr == card.atr
        info = pcsc.wait_for_card(timeout_s=10, reader=vpcd.name)
        assert (info.reader, info.atr) == (vpcd.name, card.atr)

        ssc = SocialSecurityCard.connect(pcsc, vpcd.name)
        assert ssc.info.protocol == 1
        generation = ssc.detect_generation()
        assert (generation.generation, generation.has_pki) == (3, True)
        basic = ssc.read_basic_info(terminal_no="000000000001", device_no="POS-01")
        assert basic.card_sn == card.card_sn.hex
        assert basic.citizen_id == card.identity.citizen_id
        assert basic.to_ireadcardbas().count("|") == 11

        # exclusive: another program cannot get at the card meanwhile
        other = PcscReader(vpcd.name)
        try:
            with pytest.raises(ReaderBusy):
                other.connect()
        finally:
            other.close()

        with pytest.raises(WrongPin) as wrong:
            ssc.verify_pin("000000")
        assert wrong.value.tries_left == 2
        ssc.verify_pin(DEMO_PIN)

        certificate = load_der(ssc.read_certificate())
        verified = verify_chain(certificate, [pki.issuing], pki.root, at=NOW)
        assert verified.card_sn == basic.card_sn
        signature = ssc.internal_authenticate(CHALLENGE16, TERMINAL_ID)
        sm2_verify(
            verified.public_key,
            card_auth_message(CHALLENGE16, ssc.card_sn, TERMINAL_ID),
            signature,
        )
        pcsc.disconnect()

        slot.remove()
        next_event(events, vpcd.name, EventKind.CARD_REMOVED)
        wait_for_card(vpcd.name, present=False)

        old = legacy()
        slot.insert(old)
        wait_for_card(vpcd.name, present=True, atr=old.atr)
        pcsc.wait_for_card(timeout_s=10, reader=vpcd.name)
        ssc = SocialSecurityCard.connect(pcsc, vpcd.name)
        generation = ssc.detect_generation()
        assert (generation.generation, generation.has_pki) == (2, False)
        assert ssc.read_basic_info().spec_version == "2.00"
        ssc.verify_pin(DEMO_PIN)
        cryptogram = ssc.legacy_cryptogram(CHALLENGE8)
        card_key = diversify_card_key(legacy_master_key(SEED), ssc.card_sn)
        assert cryptogram == legacy_cryptogram(card_key, CHALLENGE8, ssc.card_sn)

    dump = ssc.trace.dump()
    assert DEMO_PIN not in dump
    assert old.identity.citizen_id not in dump
    assert old.identity.citizen_id.encode().hex().upper() not in dump


def test_t0_card_through_pcscd(
    pki: DemoPki, vpcd: VpcdReader, slot: VirtualCardSlot, pcsc: PcscReader
) -> None:
    card = third_gen(pki, t0_get_response=True)
    slot.insert(card)
    wait_for_card(vpcd.name, present=True, atr=card.atr)
    ssc = SocialSecurityCard.connect(pcsc, vpcd.name)
    assert ssc.info.protocol == 0
    assert ssc.read_identity() == card.identity
    assert ssc.read_certificate() == card.certificate_der
    assert any(entry.command.startswith("00C00000") for entry in ssc.trace.entries())


def test_card_pulled_during_a_transaction(
    pki: DemoPki, vpcd: VpcdReader, slot: VirtualCardSlot, pcsc: PcscReader
) -> None:
    card = third_gen(pki)
    slot.insert(card)
    wait_for_card(vpcd.name, present=True, atr=card.atr)
    ssc = SocialSecurityCard.connect(pcsc, vpcd.name)
    ssc.read_issuer_data()
    slot.remove()
    wait_for_card(vpcd.name, present=False)
    with pytest.raises(CardRemoved, match="removed during the transaction"):
        ssc.verify_pin(DEMO_PIN)


def test_waiting_for_a_card_can_be_cancelled(vpcd: VpcdReader, pcsc: PcscReader) -> None:
    timer = threading.Timer(0.2, pcsc.cancel_wait)
    timer.start()
    try:
        with pytest.raises(NoCard) as no_card:
            pcsc.wait_for_card(timeout_s=10, reader=vpcd.name)
    finally:
        timer.join()
    assert no_card.value.detail == "waiting for a card was cancelled"
