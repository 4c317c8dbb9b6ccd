"""sscard.layout: card file layout, EF05/EF06 codecs, masking, and the card-auth profile."""

from __future__ import annotations

import dataclasses
import datetime as dt
import doctest
import pickle
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sscard.layout
from sscard.apdu import read_record
from sscard.layout import (
    CERT_ADF_AID,
    EF05_TAGS,
    EF06_RECORD_NUMBERS,
    EF06_TAGS,
    PKI_AID,
    SSSE_AID,
    SUB_APP_AIDS,
    CardAuthMessage,
    CardDataError,
    CardIdentity,
    CardSn,
    Gender,
    HolderData,
    IssuerData,
    card_auth_message,
    citizen_id_check_digit,
    decode_ef05,
    decode_ef06,
    decode_identity,
    encode_ef05,
    encode_ef06,
    legacy_auth_input,
    parse_card_auth_message,
    spec_generation,
    validate_citizen_id,
)
from sscard.masking import mask_citizen_id, mask_name
from sscard.tlv import encode_record


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


SN_HEX = "310000D1560000050123456789ABCDEF"
CITIZEN_ID = "11010519491231002X"  # the worked example of GB 11643


def identity(**changes: Any) -> CardIdentity:
    fields: dict[str, Any] = {
        "card_sn": CardSn.from_hex(SN_HEX),
        "card_type": "3",
        "spec_version": "3.00",
        "init_org": "310000D15600000512345678",
        "issue_date": dt.date(2019, 1, 2),
        "expiry_date": dt.date(2029, 1, 2),
        "card_no": "A12345678",
        "citizen_id": CITIZEN_ID,
        "name": "张三",
        "gender": Gender.MALE,
        "nation": "01",
        "birth_date": dt.date(1949, 12, 31),
    }
    fields.update(changes)
    return CardIdentity(**fields)


EF05_VECTORS = {
    0x01: "01 10 310000D1560000050123456789ABCDEF",
    0x02: "02 01 33",
    0x03: "03 04 332E3030",
    0x04: "04 0C 310000D15600000512345678",
    0x05: "05 04 20190102",
    0x06: "06 04 20290102",
    0x07: "07 09 413132333435363738",
}
EF06_VECTORS = {
    0x08: "08 12 313130313035313934393132333130303258",
    0x09: "09 1E D5C5C8FD" + "00" * 26,
    0x0A: "0A 01 31",
    0x0B: "0B 01 01",
    0x0D: "0D 04 19491231",
}


# -- constants ------------------------------------------------------------------------------


def test_application_ids_spell_what_the_domain_says() -> None:
    assert b"sx1.sh." + "社会保障".encode("gbk") == SSSE_AID
    assert b"PKI." + "社会保障".encode("gbk") == PKI_AID
    assert CERT_ADF_AID == b"SS.CERT.ADF1"
    assert [aid.hex().upper() for aid in SUB_APP_AIDS] == [f"D1560000050{n}" for n in range(5)]


def test_record_tag_sets() -> None:
    assert EF05_TAGS == (1, 2, 3, 4, 5, 6, 7)
    assert EF06_TAGS == (8, 9, 10, 11, 13)
    assert sorted(EF06_RECORD_NUMBERS) == list(EF06_TAGS)
    with pytest.raises(TypeError):
        EF06_RECORD_NUMBERS[0x08] = 3  # type: ignore[index]


# -- EF05 / EF06 vectors --------------------------------------------------------------------


def test_encode_ef05_vectors() -> None:
    assert encode_ef05(identity()) == {tag: h(value) for tag, value in EF05_VECTORS.items()}
    assert encode_ef05(identity().issuer) == encode_ef05(identity())


def test_encode_ef06_vectors() -> None:
    assert encode_ef06(identity()) == {tag: h(value) for tag, value in EF06_VECTORS.items()}
    assert encode_ef06(identity().holder) == encode_ef06(identity())


def test_decode_vectors() -> None:
    ef05 = {tag: h(value) for tag, value in EF05_VECTORS.items()}
    ef06 = {tag: h(value) for tag, value in EF06_VECTORS.items()}
    assert decode_identity(ef05, ef06) == identity()
    assert decode_ef05(ef05) == identity().issuer
    assert decode_ef06(ef06) == identity().holder


def test_decode_card_sn_seen_on_a_real_card() -> None:
    # 卡识别码 as returned by a card in the field (public reader code): F-padded unique part.
    ef05 = {tag: h(value) for tag, value in EF05_VECTORS.items()}
    ef05[0x01] = h("0110 330300D15600000599110145FFFFFFFF")
    issuer = decode_ef05(ef05)
    assert issuer.card_sn.area_code == "330300"
    assert issuer.card_sn.unique == h("99110145FFFFFFFF")


def test_decoders_ignore_other_records_and_accept_bytearrays() -> None:
    ef06: dict[int, Any] = {tag: bytearray(h(value)) for tag, value in EF06_VECTORS.items()}
    ef06[0x0C] = h("0C03 310000")  # birthplace: not used by the project
    assert decode_ef06(ef06) == identity().holder


def test_name_fills_exactly_thirty_bytes() -> None:
    name = "欧阳" * 7 + "娜"  # 15 characters, 30 bytes in GBK
    records = encode_ef06(identity(name=name))
    assert records[0x09] == b"\x09\x1e" + name.encode("gbk")
    assert decode_ef06(records).name == name


def test_name_with_middle_dot_and_latin_letters() -> None:
    for name in ("阿卜杜·热合曼", "JOHN SMITH"):
        assert decode_ef06(encode_ef06(identity(name=name))).name == name


def test_generation_from_spec_version() -> None:
    assert identity().generation == 3
    assert identity(spec_version="2.00").issuer.generation == 2
    assert identity(spec_version="1.00").generation == 1


# -- decoder errors -------------------------------------------------------------------------

# (file, tag, record hex or None for "missing", field, message fragment)
DECODE_ERRORS: list[tuple[str, int, str | None, str | None, str]] = [
    ("ef05", 0x03, None, None, "EF05 record 03 is missing"),
    ("ef05", 0x03, "0304 332E30", None, "not a valid TLV record"),
    ("ef05", 0x03, "0404 332E3030", None, "holds tag 04"),
    ("ef05", 0x03, "0304 332E3030 00", None, "trailing byte"),
    ("ef05", 0x01, "0110 310000D1560000060123456789ABCDEF", "card_sn", "RID D156000005"),
    ("ef05", 0x01, "0110 3A0000D1560000050123456789ABCDEF", "card_sn", "area code"),
    ("ef05", 0x01, "010F 310000D1560000050123456789ABCD", "card_sn", "16 bytes"),
    ("ef05", 0x02, "0201 61", "card_type", "upper-case letter or digit"),
    ("ef05", 0x02, "0202 3333", "card_type", "must be 1 bytes"),
    ("ef05", 0x03, "0304 342E3030", "spec_version", "d.dd"),
    ("ef05", 0x03, "0304 332E30FF", "spec_version", "non-ASCII"),
    ("ef05", 0x03, "0303 332E30", "spec_version", "must be 4 bytes"),
    ("ef05", 0x04, "040B 310000D156000005123456", "init_org", "must be 12 bytes"),
    ("ef05", 0x05, "0504 20190230", "issue_date", "not a calendar date"),
    ("ef05", 0x05, "0504 2019010A", "issue_date", "8 BCD digits"),
    ("ef05", 0x06, "0604 00000000", "expiry_date", "not a calendar date"),
    ("ef05", 0x06, "0603 202901", "expiry_date", "must be 4 bytes"),
    ("ef05", 0x07, "0709 613132333435363738", "card_no", "upper-case letters"),
    ("ef05", 0x07, "0709 413132333435363700", "card_no", "exactly 9"),
    ("ef05", 0x07, "0709 410032333435363738", "card_no", "00 byte before its end"),
    ("ef06", 0x08, "0812 313130313035313934393132333130303259", "citizen_id", "check character"),
    ("ef06", 0x08, "0812 313130313035313934393132333130303278", "citizen_id", "upper-case X"),
    ("ef06", 0x08, "0811 3131303130353139343931323331303032", "citizen_id", "must be 18 bytes"),
    ("ef06", 0x09, "091E FFFF" + "00" * 28, "name", "not valid GBK"),
    ("ef06", 0x09, "091E" + "00" * 30, "name", "empty or blank"),
    ("ef06", 0x09, "091E 2020" + "00" * 28, "name", "empty or blank"),
    ("ef06", 0x09, "091E D5C500C8FD" + "00" * 25, "name", "00 byte before its end"),
    ("ef06", 0x09, "091E D5C509" + "00" * 27, "name", "control characters"),
    ("ef06", 0x09, "091D D5C5C8FD" + "00" * 25, "name", "must be 30 bytes"),
    ("ef06", 0x0A, "0A01 33", "gender", "0, 1, 2, 9"),
    ("ef06", 0x0A, "0A01 01", "gender", "0, 1, 2, 9"),
    ("ef06", 0x0A, "0A01 80", "gender", "non-ASCII"),
    ("ef06", 0x0B, "0B01 AF", "nation", "neither a digit nor F"),
    ("ef06", 0x0B, "0B01 1F", "nation", "two BCD digits"),
    ("ef06", 0x0B, "0B02 0101", "nation", "must be 1 bytes"),
    ("ef06", 0x0D, "0D04 19491331", "birth_date", "not a calendar date"),
]


@pytest.mark.parametrize(("file", "tag", "record", "field", "fragment"), DECODE_ERRORS)
def test_decoders_reject_bad_records(
    file: str, tag: int, record: str | None, field: str | None, fragment: str
) -> None:
    vectors = EF05_VECTORS if file == "ef05" else EF06_VECTORS
    records = {t: h(value) for t, value in vectors.items()}
    if record is None:
        del records[tag]
    else:
        records[tag] = h(record)
    decode = decode_ef05 if file == "ef05" else decode_ef06
    with pytest.raises(CardDataError, match=re.escape(fragment)) as info:
        decode(records)
    assert info.value.record == tag
    assert info.value.field == field
    assert f"record {tag:02X}" in str(info.value)


def test_decode_errors_do_not_quote_personal_data() -> None:
    records = {t: h(value) for t, value in EF06_VECTORS.items()}
    records[0x08] = encode_record(0x08, b"110105194912310021")  # wrong check digit
    with pytest.raises(CardDataError) as info:
        decode_ef06(records)
    assert "11010519491231002" not in str(info.value)
    assert "check character" in str(info.value)


def test_record_value_of_wrong_type() -> None:
    records: dict[int, Any] = {t: h(value) for t, value in EF05_VECTORS.items()}
    records[0x02] = "3"
    with pytest.raises(CardDataError, match="must be bytes, not str"):
        decode_ef05(records)


# -- construction errors --------------------------------------------------------------------

CONSTRUCTION_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"citizen_id": "11010519491231002x"}, "citizen_id", "upper-case X"),
    ({"citizen_id": "110105194912310021"}, "citizen_id", "check character does not match"),
    ({"citizen_id": "1101051949123100"}, "citizen_id", "must be 18 characters, got 16"),
    ({"citizen_id": "１１０１０５１９４９１２３１００２X"}, "citizen_id", "17 digits"),
    ({"citizen_id": 11010519491231002}, "citizen_id", "must be a str"),
    ({"name": ""}, "name", "empty"),
    ({"name": "  "}, "name", "blank"),
    ({"name": "张" * 16}, "name", "32 bytes in GBK; the card holds 30"),
    ({"name": "张\n三"}, "name", "control characters"),
    ({"name": "张😀"}, "name", "GBK cannot encode"),
    ({"gender": "1"}, "gender", "must be a Gender"),
    ({"nation": "1"}, "nation", "exactly 2 digits"),
    ({"nation": "0A"}, "nation", "exactly 2 digits"),
    ({"birth_date": dt.datetime(1949, 12, 31, 8, 0)}, "birth_date", "datetime.date"),
    ({"birth_date": "1949-12-31"}, "birth_date", "datetime.date"),
    ({"card_sn": h(SN_HEX)}, "card_sn", "must be a CardSn"),
    ({"card_type": "33"}, "card_type", "exactly 1"),
    ({"spec_version": "3.0"}, "spec_version", "d.dd"),
    ({"spec_version": "4.00"}, "spec_version", "d.dd"),
    ({"init_org": "310000d15600000512345678"}, "init_org", "upper-case hex"),
    ({"init_org": "310000D156"}, "init_org", "exactly 24"),
    ({"issue_date": None}, "issue_date", "datetime.date"),
    ({"card_no": "a12345678"}, "card_no", "upper-case letters or digits"),
    ({"card_no": "A1234567"}, "card_no", "exactly 9"),
]


@pytest.mark.parametrize(("changes", "field", "fragment"), CONSTRUCTION_ERRORS)
def test_identity_validation(changes: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(CardDataError, match=re.escape(fragment)) as info:
        identity(**changes)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_parts_validate_on_their_own() -> None:
    with pytest.raises(CardDataError, match="check character"):
        HolderData("110105194912310021", "张三", Gender.MALE, "01", dt.date(1949, 12, 31))
    with pytest.raises(CardDataError, match="card_no"):
        dataclasses.replace(identity().issuer, card_no="?")
    assert isinstance(identity().issuer, IssuerData)


def test_card_data_error_pickles() -> None:
    error = CardDataError("bad", field="name", record=0x09)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.field, clone.record, str(clone)) == ("name", 0x09, "record 09 (name): bad")


# -- masking --------------------------------------------------------------------------------


def test_identity_repr_masks_personal_data() -> None:
    text = repr(identity(name="欧阳娜娜"))
    assert "110*************2X" in text
    assert "'欧*'" in text
    assert "1949-**-**" in text
    for secret in (CITIZEN_ID, "欧阳", "阳娜", "12-31", "1231"):
        assert secret not in text
    assert str(identity()) == repr(identity())
    # The card number is masked too (sscard.masking: first 1 and last 2 kept); a clerk who must
    # quote it reads it from the card (iReadCardBas), not from a log line.
    assert "'A******78'" in text
    assert "A12345678" not in text


def test_holder_repr_masks_personal_data() -> None:
    text = repr(identity().holder)
    assert text == (
        "HolderData(citizen_id='110*************2X', name='张*', gender=MALE, nation='01', "
        "birth_date=1949-**-**)"
    )


@pytest.mark.parametrize(
    ("value", "masked"),
    [(CITIZEN_ID, "110*************2X"), ("12345", "*****"), ("123456", "123*56"), ("", "")],
)
def test_mask_citizen_id(value: str, masked: str) -> None:
    assert mask_citizen_id(value) == masked


@pytest.mark.parametrize(("value", "masked"), [("张三丰", "张*"), ("张", "张*"), ("", "*")])
def test_mask_name(value: str, masked: str) -> None:
    assert mask_name(value) == masked


# -- card_sn, spec version, citizen id ----------------------------------------------------------


def test_card_sn() -> None:
    sn = CardSn.from_hex(SN_HEX.lower())
    assert sn.raw == h(SN_HEX)
    assert (sn.hex, str(sn), sn.area_code) == (SN_HEX, SN_HEX, "310000")
    assert sn.unique == h("0123456789ABCDEF")
    assert repr(sn) == f"CardSn.from_hex('{SN_HEX}')"
    assert sn == CardSn(h(SN_HEX))


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: CardSn.from_hex(SN_HEX[:-2]), "32 hex digits"),
        (lambda: CardSn.from_hex(SN_HEX[:-1] + "G"), "32 hex digits"),
        (lambda: CardSn(h(SN_HEX + "00")), "must be 16 bytes"),
        (lambda: CardSn(h("31000AD1560000050123456789ABCDEF")), "area code as 6 BCD digits"),
        (lambda: CardSn(h("310000D1560000040123456789ABCDEF")), "got D156000004"),
        (lambda: CardSn(bytearray(16)), "must be bytes"),  # type: ignore[arg-type]
    ],
)
def test_card_sn_errors(call: Callable[[], object], fragment: str) -> None:
    with pytest.raises(CardDataError, match=re.escape(fragment)) as info:
        call()
    assert info.value.field == "card_sn"


@pytest.mark.parametrize(("version", "generation"), [("3.00", 3), ("2.00", 2), ("1.00", 1)])
def test_spec_generation(version: str, generation: int) -> None:
    assert spec_generation(version) == generation


@pytest.mark.parametrize("version", ["4.00", "0.00", "3.0", "3,00", "", "3.00 ", "３.00"])
def test_spec_generation_rejects(version: str) -> None:
    with pytest.raises(CardDataError, match="spec_version"):
        spec_generation(version)


@pytest.mark.parametrize("citizen_id", [CITIZEN_ID, "440524188001010014", "310101199001011234"])
def test_valid_citizen_ids(citizen_id: str) -> None:
    assert validate_citizen_id(citizen_id) == citizen_id


@given(st.text(alphabet="0123456789", min_size=17, max_size=17), st.sampled_from("0123456789X"))
def test_exactly_one_check_character_is_valid(first17: str, check: str) -> None:
    citizen_id = first17 + check
    if check == citizen_id_check_digit(first17):
        assert validate_citizen_id(citizen_id) == citizen_id
    else:
        with pytest.raises(CardDataError, match="check character does not match"):
            validate_citizen_id(citizen_id)


# -- card authentication profile ------------------------------------------------------------

CHALLENGE = bytes(range(16))


def test_card_auth_message_vector() -> None:
    message = card_auth_message(CHALLENGE, h(SN_HEX), "T1")
    assert message == h(
        "0B 5353432D415554482D7631"  # len 11, "SSC-AUTH-v1"
        "10 000102030405060708090A0B0C0D0E0F"  # len 16, challenge
        "10 310000D1560000050123456789ABCDEF"  # len 16, card_sn
        "02 5431"  # len 2, "T1"
    )
    assert card_auth_message(CHALLENGE, CardSn.from_hex(SN_HEX), "T1") == message
    assert parse_card_auth_message(message) == CardAuthMessage(
        CHALLENGE, CardSn.from_hex(SN_HEX), "T1"
    )


@pytest.mark.parametrize("terminal_id", ["X", "T" * 32, "HIS-0001.pharmacy_7:A~!"])
def test_card_auth_message_lengths(terminal_id: str) -> None:
    message = card_auth_message(CHALLENGE, h(SN_HEX), terminal_id)
    assert len(message) == 47 + len(terminal_id)
    # It fits a short INTERNAL AUTHENTICATE, which is how the terminal sends it.
    assert len(message) <= 79


@pytest.mark.parametrize(
    ("args", "field", "fragment"),
    [
        ((bytes(15), h(SN_HEX), "T1"), "challenge", "16 bytes"),
        ((bytes(17), h(SN_HEX), "T1"), "challenge", "16 bytes"),
        ((bytes(8), h(SN_HEX), "T1"), "challenge", "16 bytes"),
        ((bytearray(16), h(SN_HEX), "T1"), "challenge", "16 bytes"),
        ((CHALLENGE, h(SN_HEX)[:15], "T1"), "card_sn", "16 bytes"),
        ((CHALLENGE, h("310000D1560000040123456789ABCDEF"), "T1"), "card_sn", "RID"),
        ((CHALLENGE, h(SN_HEX), ""), "terminal_id", "1..32"),
        ((CHALLENGE, h(SN_HEX), "T" * 33), "terminal_id", "1..32"),
        ((CHALLENGE, h(SN_HEX), "T 1"), "terminal_id", "without spaces"),
        ((CHALLENGE, h(SN_HEX), "终端1"), "terminal_id", "printable ASCII"),
        ((CHALLENGE, h(SN_HEX), "T\n1"), "terminal_id", "printable ASCII"),
        ((CHALLENGE, h(SN_HEX), b"T1"), "terminal_id", "must be a str"),
    ],
)
def test_card_auth_message_rejects(args: tuple[Any, ...], field: str, fragment: str) -> None:
    with pytest.raises(CardDataError, match=re.escape(fragment)) as info:
        card_auth_message(*args)
    assert info.value.field == field


VALID_MESSAGE = "0B5353432D415554482D7631 10000102030405060708090A0B0C0D0E0F 10" + SN_HEX + "025431"


@pytest.mark.parametrize(
    ("encoded", "fragment"),
    [
        ("", "truncated at byte 0"),
        (VALID_MESSAGE + "00", "1 trailing byte"),
        (VALID_MESSAGE + "0000", "2 trailing bytes"),
        (VALID_MESSAGE[:-2], "runs past the end"),
        ("0B5353432D415554482D7632" + VALID_MESSAGE[24:], "unknown domain tag"),
        ("0A" + VALID_MESSAGE[2:], "runs past the end"),  # tag length 10: "1" becomes a length
        (VALID_MESSAGE[:-6] + "02FF31", "not ASCII"),
        (VALID_MESSAGE[:-6] + "00", "1..32"),
        (
            "0B5353432D415554482D7631 0F 000102030405060708090A0B0C0D0E 10" + SN_HEX + "025431",
            "16 bytes",
        ),
    ],
)
def test_parse_card_auth_message_rejects(encoded: str, fragment: str) -> None:
    with pytest.raises(CardDataError, match=re.escape(fragment)):
        parse_card_auth_message(h(encoded))


def test_legacy_auth_input() -> None:
    data = legacy_auth_input(h("0102030405060708"), h(SN_HEX))
    assert data == b"SSC-LGCY" + h("0102030405060708") + h(SN_HEX)
    assert len(data) == 32
    with pytest.raises(CardDataError, match="8 bytes"):
        legacy_auth_input(CHALLENGE, h(SN_HEX))
    with pytest.raises(CardDataError, match="RID"):
        legacy_auth_input(bytes(8), bytes(16))


def test_read_record_by_identifier_reaches_ef06_elements() -> None:
    # The documented way to read EF06 on real cards, whose record numbers differ from the tags.
    assert read_record(0x09, by_identifier=True).to_bytes() == h("00B2090000")
    assert read_record(EF06_RECORD_NUMBERS[0x09]).to_bytes() == h("00B2020400")


def test_doctests() -> None:
    result = doctest.testmod(sscard.layout)
    assert result.attempted > 10
    assert result.failed == 0


# -- properties -----------------------------------------------------------------------------

NAME_CHARS = "张王李赵刘陈杨黄周吴欧阳娜丰·ABCxyz"

identities = st.builds(
    CardIdentity,
    card_sn=st.builds(
        lambda area, unique: CardSn(bytes.fromhex(area) + bytes.fromhex("D156000005") + unique),
        st.text(alphabet="0123456789", min_size=6, max_size=6),
        st.binary(min_size=8, max_size=8),
    ),
    card_type=st.sampled_from("0123ABZ"),
    spec_version=st.sampled_from(["1.00", "2.00", "3.00", "3.10"]),
    init_org=st.binary(min_size=12, max_size=12).map(lambda raw: raw.hex().upper()),
    issue_date=st.dates(),
    expiry_date=st.dates(),
    card_no=st.text(alphabet="0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=9, max_size=9),
    citizen_id=st.text(alphabet="0123456789", min_size=17, max_size=17).map(
        lambda first17: first17 + citizen_id_check_digit(first17)
    ),
    name=st.text(alphabet=NAME_CHARS, min_size=1, max_size=15).filter(lambda n: n.strip() != ""),
    gender=st.sampled_from(Gender),
    nation=st.integers(0, 99).map(lambda n: f"{n:02d}"),
    birth_date=st.dates(),
)


@given(identities)
def test_identity_round_trips_through_records(card: CardIdentity) -> None:
    ef05, ef06 = encode_ef05(card), encode_ef06(card)
    assert sorted(ef05) == list(EF05_TAGS)
    assert sorted(ef06) == list(EF06_TAGS)
    assert decode_identity(ef05, ef06) == card
    assert card.citizen_id not in repr(card)


@given(
    st.binary(min_size=16, max_size=16),
    st.builds(
        lambda area, unique: CardSn(bytes.fromhex(area) + bytes.fromhex("D156000005") + unique),
        st.text(alphabet="0123456789", min_size=6, max_size=6),
        st.binary(min_size=8, max_size=8),
    ),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32
    ),
)
def test_auth_message_is_unambiguous(challenge: bytes, card_sn: CardSn, terminal_id: str) -> None:
    # Parsing recovers every field, so two different inputs can never give the same message.
    message = card_auth_message(challenge, card_sn, terminal_id)
    assert parse_card_auth_message(message) == CardAuthMessage(challenge, card_sn, terminal_id)


def card_data_error(call: Callable[[], object]) -> CardDataError | None:
    """Run ``call``; return the CardDataError it raised, or None. Anything else propagates."""
    try:
        call()
    except CardDataError as error:
        return error
    return None


def well_formed_record(tag: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=32).map(lambda value: encode_record(tag, value))


def tag_keyed(tags: tuple[int, ...]) -> st.SearchStrategy[dict[int, bytes]]:
    # Half raw random bytes, half well-formed TLVs with random values, to get past the TLV layer.
    return st.fixed_dictionaries(
        {tag: st.one_of(st.binary(max_size=40), well_formed_record(tag)) for tag in tags}
    )


@given(tag_keyed(EF05_TAGS), tag_keyed(EF06_TAGS))
def test_random_records_raise_only_card_data_error(
    ef05: dict[int, bytes], ef06: dict[int, bytes]
) -> None:
    for call in (lambda: decode_ef05(ef05), lambda: decode_ef06(ef06)):
        error = card_data_error(call)
        assert error is None or error.record in EF05_TAGS + EF06_TAGS


@given(st.sampled_from(EF06_TAGS), st.binary(max_size=32))
def test_one_random_value_in_valid_records(tag: int, value: bytes) -> None:
    records = {t: h(v) for t, v in EF06_VECTORS.items()}
    records[tag] = encode_record(tag, value)
    error = card_data_error(lambda: decode_ef06(records))
    assert error is None or error.record == tag


@given(st.binary(max_size=90))
def test_random_bytes_into_auth_message_parser(raw: bytes) -> None:
    error = card_data_error(lambda: parse_card_auth_message(raw))
    if error is None:
        assert parse_card_auth_message(raw).to_bytes() == raw
