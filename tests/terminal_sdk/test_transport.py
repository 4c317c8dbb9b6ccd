"""ApduTransport's T=0 rules against scripted answers, and the trace's masking rules."""

from __future__ import annotations

import pytest
from sdk_testkit import ScriptedReader

from sscard import apdu
from sscard.layout import EF05_FID, EF06_FID, SSSE_AID
from terminal_sdk import ApduTransport, TransmitFailed
from terminal_sdk.readers.trace import ApduMasker
from terminal_sdk.readers.transport import MAX_GET_RESPONSE


def transport(*answers: str) -> tuple[ApduTransport, ScriptedReader]:
    reader = ScriptedReader(*answers)
    return ApduTransport(reader), reader  # type: ignore[arg-type]


def test_9000_passes_through() -> None:
    link, reader = transport("01029000")
    response = link.transmit(apdu.read_record(1))
    assert (response.data, response.sw) == (b"\x01\x02", 0x9000)
    assert reader.sent == [bytes.fromhex("00B2010400")]


def test_61xx_chains_get_response() -> None:
    link, reader = transport("6104", "AABB6102", "CCDD9000")
    assert link.send(apdu.select_aid(SSSE_AID)) == bytes.fromhex("AABBCCDD")
    assert reader.sent[1:] == [bytes.fromhex("00C0000004"), bytes.fromhex("00C0000002")]


def test_6100_asks_for_256() -> None:
    link, reader = transport("6100", "00" * 256 + "9000")
    assert len(link.send(apdu.read_binary(0, 0))) == 256
    assert reader.sent[1] == bytes.fromhex("00C0000000")


def test_6cxx_resends_once_with_exact_le() -> None:
    link, reader = transport("6C12", "11" * 0x12 + "9000")
    assert link.send(apdu.read_record(1)) == b"\x11" * 0x12
    assert reader.sent == [bytes.fromhex("00B2010400"), bytes.fromhex("00B2010412")]


def test_6cxx_then_61xx() -> None:
    link, _ = transport("6C08", "6108", "0102030405060708" + "9000")
    assert link.send(apdu.read_binary(0, 0)) == bytes(range(1, 9))


def test_second_6cxx_is_a_card_fault() -> None:
    link, reader = transport("6C12", "6C10")
    with pytest.raises(TransmitFailed, match="does not answer") as failed:
        link.transmit(apdu.read_record(1))
    assert failed.value.detail == "card answered 6Cxx twice to INS B2"
    assert len(reader.sent) == 2


def test_6cxx_to_get_response_is_resent() -> None:
    link, reader = transport("6110", "6C08", "AA" * 8 + "9000")
    assert link.send(apdu.select_aid(SSSE_AID)) == b"\xaa" * 8
    assert reader.sent[2] == bytes.fromhex("00C0000008")


def test_endless_61xx_is_bounded() -> None:
    link, reader = transport("6101", *(["AA6101"] * (MAX_GET_RESPONSE + 5)))
    with pytest.raises(TransmitFailed):
        link.transmit(apdu.select_aid(SSSE_AID))
    assert len(reader.sent) == MAX_GET_RESPONSE + 1


def test_error_status_after_chaining_is_typed() -> None:
    link, _ = transport("6A82")
    with pytest.raises(apdu.FileNotFound):
        link.send(apdu.select_aid(SSSE_AID))


def test_malformed_response_is_a_transmit_failure() -> None:
    link, _ = transport("90")
    with pytest.raises(TransmitFailed) as failed:
        link.transmit(apdu.select_aid(SSSE_AID))
    assert failed.value.detail is not None
    assert "malformed" in failed.value.detail
    assert link.trace.entries()[-1].response == "failed: malformed response"


# -- masking -------------------------------------------------------------------------------------


def test_verify_data_is_redacted() -> None:
    text = ApduMasker.command_text(apdu.verify_pin("802613"))
    assert text == "00200000 <3 bytes redacted>"


def test_ef05_records_shown_ef06_and_binary_hidden() -> None:
    masker = ApduMasker()
    ok = apdu.ResponseApdu(b"", 0x90, 0x00)
    record = apdu.read_record(1)
    assert not masker.response_is_public(record)  # nothing known selected: hidden
    masker.observe(apdu.select_file(EF05_FID), ok)
    assert masker.response_is_public(record)
    masker.observe(apdu.select_file(EF06_FID), ok)
    assert not masker.response_is_public(apdu.read_record(8, by_identifier=True))
    masker.observe(apdu.select_file(EF05_FID), apdu.ResponseApdu(b"", 0x6A, 0x82))
    assert not masker.response_is_public(record)  # a failed SELECT changes nothing
    assert masker.response_is_public(apdu.read_record(1, sfi=5))
    assert not masker.response_is_public(apdu.read_record(1, sfi=6))
    masker.observe(apdu.read_record(1, sfi=5), ok)
    assert masker.response_is_public(record)  # READ RECORD by SFI made EF05 current
    masker.observe(apdu.read_record(1, sfi=6), ok)
    assert not masker.response_is_public(record)
    assert not masker.response_is_public(apdu.read_binary(0, 0))  # a certificate's subject
    assert masker.response_is_public(apdu.get_challenge(8))
    hidden = masker.response_text(apdu.ResponseApdu(b"secret", 0x90, 0x00), public=False)
    assert hidden == "<6 bytes> 9000"


def test_get_response_is_masked_like_its_command() -> None:
    record = "0812" + b"11010519491231002X".hex().upper()
    link, _ = transport("6114", record + "9000")
    assert link.send(apdu.read_record(8, by_identifier=True)).hex().upper() == record
    dump = link.trace.dump()
    assert record[4:] not in dump
    assert "<20 bytes> 9000" in dump
