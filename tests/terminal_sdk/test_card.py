"""SocialSecurityCard over MemoryReader with software cards of both generations."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from sdk_testkit import (
    CARD_SN,
    CITIZEN_ID,
    LEGACY_SN,
    MASTER_KEY,
    NAME,
    NOW,
    PIN,
    TERMINAL_ID,
    WRONG_PIN,
    EndOfFileCard,
    ExactLeCard,
    NoPkiCard,
    Pki,
    PulledOutCard,
    WrappedCard,
    legacy_card,
    third_gen_card,
)

from sscard.certs import load_der, verify_chain
from sscard.crypto import SignatureInvalid, sm2_verify
from sscard.layout import card_auth_message
from sscard.softcard import diversify_card_key, legacy_cryptogram
from sscard.vpcd import VirtualCard
from terminal_sdk import (
    BasicInfo,
    CardDataInvalid,
    CardLocked,
    CardRefused,
    CardRemoved,
    MemoryReader,
    NoCard,
    PinBlocked,
    SocialSecurityCard,
    UnsupportedCard,
    WrongPin,
)

CHALLENGE16 = bytes(range(0x40, 0x50))
CHALLENGE8 = bytes.fromhex("0102030405060708")


def open_card(reader: MemoryReader, card: VirtualCard) -> SocialSecurityCard:
    reader.insert(card)
    reader.wait_for_card(timeout_s=1)
    return SocialSecurityCard.connect(reader)


def personal_needles() -> list[str]:
    """Every spelling of the PIN and the holder's data that must never reach a trace."""
    return [
        PIN,
        CITIZEN_ID,
        CITIZEN_ID.encode("ascii").hex().upper(),
        NAME,
        NAME.encode("gbk").hex().upper(),
        "19491231",  # birth date, BCD
    ]


# -- third generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("t0", [False, True], ids=["T=1", "T=0"])
def test_third_gen_card_end_to_end(reader: MemoryReader, pki: Pki, t0: bool) -> None:
    card = third_gen_card(pki, t0_get_response=t0)
    ssc = open_card(reader, card)
    assert ssc.info.protocol == (0 if t0 else 1)

    generation = ssc.detect_generation()
    assert (generation.spec_version, generation.generation, generation.has_pki) == ("3.00", 3, True)
    assert generation.is_third_generation

    assert ssc.read_identity() == card.identity
    info = ssc.read_basic_info(terminal_no="000000000001", device_no="POS-01")
    assert info.citizen_id == CITIZEN_ID
    assert info.name == NAME
    assert info.card_sn == CARD_SN
    assert info.atr == card.atr

    ssc.verify_pin(PIN)
    assert card.pin_verified

    der = ssc.read_certificate()
    assert der == pki.card_cert.der
    verified = verify_chain(load_der(der), [pki.ca], pki.root, at=NOW)
    assert verified.card_sn == CARD_SN

    signature = ssc.internal_authenticate(CHALLENGE16, TERMINAL_ID)
    message = card_auth_message(CHALLENGE16, ssc.card_sn, TERMINAL_ID)
    sm2_verify(verified.public_key, message, signature)
    with pytest.raises(SignatureInvalid):
        sm2_verify(verified.public_key, card_auth_message(CHALLENGE16, ssc.card_sn, "X"), signature)

    with pytest.raises(UnsupportedCard, match="third-generation"):
        ssc.legacy_cryptogram(CHALLENGE8)
    if t0:  # every answer with data came through GET RESPONSE
        assert any(e.command.startswith("00C00000") for e in ssc.trace.entries())


def test_basic_info_string_follows_ireadcardbas(reader: MemoryReader, pki: Pki) -> None:
    card = third_gen_card(pki)
    ssc = open_card(reader, card)
    info = ssc.read_basic_info(terminal_no="000000000001", device_no="POS-01")
    text = info.to_ireadcardbas()
    assert text.endswith("|")
    fields = text.split("|")[:-1]
    assert len(fields) == len(BasicInfo.FIELD_NAMES_ZH) == 11
    assert fields == [
        "310000",
        CITIZEN_ID,
        "A12345678",
        CARD_SN,
        NAME,
        card.atr.hex().upper(),
        "3.00",
        "20190115",
        "20290115",
        "000000000001",
        "POS-01",
    ]
    shown = repr(info)
    assert CITIZEN_ID not in shown
    assert NAME not in shown
    assert "110*************2X" in shown
    assert "张*" in shown


def test_basic_info_refuses_a_separator_inside_a_field() -> None:
    info = BasicInfo(
        "310000", CITIZEN_ID, "A12345678", CARD_SN, NAME, b"\x3b\x00", "3.00",
        dt.date(2019, 1, 1), dt.date(2029, 1, 1), device_no="POS|1",
    )  # fmt: skip
    with pytest.raises(ValueError, match="终端设备号"):
        info.to_ireadcardbas()


def test_card_answering_6cxx_gets_exact_le_resends(reader: MemoryReader, pki: Pki) -> None:
    card = ExactLeCard(third_gen_card(pki))
    ssc = open_card(reader, card)
    assert ssc.read_identity() == card.inner.identity  # type: ignore[attr-defined]
    assert ssc.read_certificate() == pki.card_cert.der
    assert len(ssc.internal_authenticate(CHALLENGE16, TERMINAL_ID)) == 64
    sws = [e.sw for e in ssc.trace.entries()]
    assert any(sw is not None and sw >> 8 == 0x6C for sw in sws)
    # every 6Cxx was followed by exactly one resend of the same command with Le = xx
    for before, after in zip(card.commands, card.commands[1:], strict=False):
        if before[-1] == 0x00 and after[:4] == before[:4] and after[-1] != 0x00:
            assert after[:-1] == before[:-1]


def test_t0_card_answering_6cxx_too(reader: MemoryReader, pki: Pki) -> None:
    card = ExactLeCard(third_gen_card(pki, t0_get_response=True))
    ssc = open_card(reader, card)
    assert ssc.read_basic_info().citizen_id == CITIZEN_ID
    assert ssc.read_certificate() == pki.card_cert.der


def test_certificate_read_accepts_end_of_file_warning(reader: MemoryReader, pki: Pki) -> None:
    ssc = open_card(reader, EndOfFileCard(third_gen_card(pki)))
    assert ssc.read_certificate() == pki.card_cert.der


def test_card_claiming_3_00_without_pki_is_invalid(reader: MemoryReader, pki: Pki) -> None:
    ssc = open_card(reader, NoPkiCard(third_gen_card(pki)))
    with pytest.raises(CardDataInvalid, match="cannot be read") as error:
        ssc.detect_generation()
    assert error.value.detail is not None
    assert "no PKI" in error.value.detail


def test_signature_needs_pin_on_a_card_that_requires_it(reader: MemoryReader, pki: Pki) -> None:
    ssc = open_card(reader, third_gen_card(pki, require_pin_for_auth=True))
    with pytest.raises(CardRefused, match="PIN first") as refused:
        ssc.internal_authenticate(CHALLENGE16, TERMINAL_ID)
    assert refused.value.sw == 0x6982
    ssc.verify_pin(PIN)
    assert len(ssc.internal_authenticate(CHALLENGE16, TERMINAL_ID)) == 64


def test_bad_challenge_or_terminal_id_is_the_callers_error(reader: MemoryReader, pki: Pki) -> None:
    card = WrappedCard(third_gen_card(pki))
    ssc = open_card(reader, card)
    ssc.read_issuer_data()
    sent = len(card.commands)
    with pytest.raises(ValueError, match="challenge"):
        ssc.internal_authenticate(CHALLENGE8, TERMINAL_ID)
    with pytest.raises(ValueError, match="terminal_id"):
        ssc.internal_authenticate(CHALLENGE16, "has space")
    assert len(card.commands) == sent  # nothing went to the card


# -- PIN -----------------------------------------------------------------------------------------


def test_wrong_pin_counts_down_then_blocks(reader: MemoryReader, pki: Pki) -> None:
    card = third_gen_card(pki)
    ssc = open_card(reader, card)
    tries = []
    for _ in range(3):
        with pytest.raises(WrongPin) as wrong:
            ssc.verify_pin(WRONG_PIN)
        tries.append(wrong.value.tries_left)
        assert wrong.value.sw == 0x63C0 | wrong.value.tries_left
    assert tries == [2, 1, 0]
    assert "blocked" in str(wrong.value)
    with pytest.raises(PinBlocked) as blocked:
        ssc.verify_pin(PIN)
    assert blocked.value.message_zh.startswith("卡片密码已锁定")


def test_right_pin_restores_tries(reader: MemoryReader, pki: Pki) -> None:
    card = third_gen_card(pki)
    ssc = open_card(reader, card)
    with pytest.raises(WrongPin, match="2 tries left"):
        ssc.verify_pin(WRONG_PIN)
    ssc.verify_pin(PIN)
    assert card.pin_tries_left == 3


@pytest.mark.parametrize("bad", ["123", "12345678901234", "12a456", "１２３４５６"])
def test_malformed_pin_is_refused_before_the_card_sees_it(
    reader: MemoryReader, pki: Pki, bad: str
) -> None:
    card = WrappedCard(third_gen_card(pki))
    ssc = open_card(reader, card)
    with pytest.raises(ValueError, match="PIN") as error:
        ssc.verify_pin(bad)
    assert bad not in str(error.value)
    assert card.commands == []


def test_disconnect_ends_the_verified_pin(reader: MemoryReader, pki: Pki) -> None:
    card = third_gen_card(pki)
    ssc = open_card(reader, card)
    ssc.verify_pin(PIN)
    assert card.pin_verified
    reader.disconnect()
    assert not card.pin_verified


# -- legacy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("t0", [False, True], ids=["T=1", "T=0"])
def test_legacy_card_end_to_end(reader: MemoryReader, t0: bool) -> None:
    card = legacy_card(t0_get_response=t0)
    ssc = open_card(reader, card)
    generation = ssc.detect_generation()
    assert (generation.spec_version, generation.generation, generation.has_pki) == (
        "2.00",
        2,
        False,
    )
    info = ssc.read_basic_info()
    assert (info.card_sn, info.spec_version, info.citizen_id) == (LEGACY_SN, "2.00", CITIZEN_ID)
    ssc.verify_pin(PIN)
    cryptogram = ssc.legacy_cryptogram(CHALLENGE8)
    card_key = diversify_card_key(MASTER_KEY, ssc.card_sn)
    assert cryptogram == legacy_cryptogram(card_key, CHALLENGE8, ssc.card_sn)

    with pytest.raises(UnsupportedCard, match="no certificate") as no_cert:
        ssc.read_certificate()
    assert no_cert.value.sw == 0x6A82
    with pytest.raises(UnsupportedCard, match="no digital signature"):
        ssc.internal_authenticate(CHALLENGE16, TERMINAL_ID)
    with pytest.raises(ValueError, match="8 bytes"):
        ssc.legacy_cryptogram(CHALLENGE16)


def test_locked_card(reader: MemoryReader) -> None:
    card = legacy_card()
    card.lock_application()
    ssc = open_card(reader, card)
    with pytest.raises(CardLocked) as locked:
        ssc.read_basic_info()
    assert locked.value.sw == 0x9303
    assert locked.value.code == "CARD_LOCKED"


# -- removal and masking -------------------------------------------------------------------------


@pytest.mark.parametrize("after", [1, 5, 12])
def test_card_removed_mid_transaction(reader: MemoryReader, pki: Pki, after: int) -> None:
    card = PulledOutCard(third_gen_card(pki), after, reader.remove)
    ssc = open_card(reader, card)
    with pytest.raises(CardRemoved) as removed:
        ssc.read_basic_info()
    assert "removed during the transaction" in str(removed.value)
    assert len(card.commands) == after
    last = ssc.trace.entries()[-1]
    assert (last.sw, last.response) == (None, "failed: CARD_REMOVED")
    with pytest.raises(CardRemoved):  # the connection stays dead
        ssc.verify_pin(PIN)
    with pytest.raises(NoCard):
        reader.connect()


def test_card_swapped_under_a_connection_is_removed(reader: MemoryReader, pki: Pki) -> None:
    ssc = open_card(reader, third_gen_card(pki))
    ssc.read_issuer_data()
    reader.remove()
    reader.insert(legacy_card())
    with pytest.raises(CardRemoved):
        ssc.verify_pin(PIN)


@pytest.mark.parametrize("t0", [False, True], ids=["T=1", "T=0"])
def test_trace_and_log_hold_no_pin_and_no_personal_data(
    reader: MemoryReader, pki: Pki, caplog: pytest.LogCaptureFixture, t0: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="terminal_sdk.apdu")
    ssc = open_card(reader, ExactLeCard(third_gen_card(pki, t0_get_response=t0)))
    info = ssc.read_basic_info()
    ssc.verify_pin(PIN)
    with pytest.raises(WrongPin) as wrong:
        ssc.verify_pin(WRONG_PIN)
    ssc.read_certificate()
    ssc.internal_authenticate(CHALLENGE16, TERMINAL_ID)
    reader.remove()
    reader.insert(legacy_card(t0_get_response=t0))
    legacy = SocialSecurityCard.connect(reader, trace=ssc.trace)
    legacy.read_basic_info()
    legacy.legacy_cryptogram(CHALLENGE8)

    dump = ssc.trace.dump()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert len(caplog.records) == len(ssc.trace) > 40
    texts = [dump, logged, repr(info), str(wrong.value), repr(ssc.read_identity())]
    for needle in [*personal_needles(), WRONG_PIN]:
        for text in texts:
            assert needle not in text, f"{needle!r} leaked"
    assert "<3 bytes redacted>" in dump  # VERIFY shown, its PIN not
    assert CARD_SN in dump  # issuer data (EF05) stays readable for support


def test_trace_is_a_bounded_ring(reader: MemoryReader, pki: Pki) -> None:
    from terminal_sdk import ApduTrace

    trace = ApduTrace(size=5)
    reader.insert(third_gen_card(pki))
    ssc = SocialSecurityCard.connect(reader, trace=trace)
    ssc.read_basic_info()
    entries = trace.entries()
    assert len(entries) == 5
    assert entries[-1].command.startswith("00B20D00")  # the last EF06 read, birth date
    trace.clear()
    assert len(trace) == 0
    with pytest.raises(ValueError, match="at least 1"):
        ApduTrace(size=0)
