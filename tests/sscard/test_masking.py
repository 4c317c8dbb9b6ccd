"""sscard.masking: one rule per kind of personal data, and the scanners for free text and log
fields that apply them."""

from __future__ import annotations

import datetime as dt
import doctest

import pytest

import sscard.masking
from sscard.masking import (
    mask_birth_date,
    mask_card_no,
    mask_citizen_id,
    mask_fields,
    mask_name,
    mask_phone,
    mask_psn_no,
    mask_text,
)

CITIZEN_ID = "11010519491231002X"
PHONE = "13812345678"


def test_doctests() -> None:
    result = doctest.testmod(sscard.masking)
    assert result.attempted >= 10
    assert result.failed == 0


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (CITIZEN_ID, "110*************2X"),
        ("310104198502030011", "310*************11"),
        ("123456", "123*56"),
        ("12345", "*****"),
        ("", ""),
    ],
)
def test_citizen_id_keeps_3_and_2(value: str, masked: str) -> None:
    assert mask_citizen_id(value) == masked


@pytest.mark.parametrize("name", ["张", "张三", "张三丰", "欧阳娜娜", "Zhang San"])
def test_name_hides_its_length(name: str) -> None:
    assert mask_name(name) == name[0] + "*"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (PHONE, "*******5678"),
        ("021-62345678", "********5678"),
        ("62345678", "****5678"),
        ("1234567", "*******"),
        ("", ""),
    ],
)
def test_phone_keeps_the_last_4(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("A12345678", "A******78"),
        ("S00000001", "S******01"),
        ("123456", "1***56"),
        ("1234", "****"),
    ],
)
def test_card_no_keeps_1_and_2(value: str, masked: str) -> None:
    assert mask_card_no(value) == masked


def test_psn_no_and_birth_date() -> None:
    assert mask_psn_no("320000000012345") == "32***********45"
    assert mask_psn_no(320000000012345) == "32***********45"
    assert mask_birth_date(dt.date(1985, 2, 3)) == "1985-**-**"


def test_text_masks_ids_and_mobiles_standing_alone() -> None:
    text = f"holder {CITIZEN_ID} (phone {PHONE}): id {CITIZEN_ID.lower()}"
    masked = mask_text(text)
    assert CITIZEN_ID not in masked
    assert CITIZEN_ID.lower() not in masked
    assert PHONE not in masked
    assert masked == "holder 110*************2X (phone *******5678): id 110*************2x"


@pytest.mark.parametrize(
    "text",
    [
        "request 0123456789abcdef" + "13812345678" + "0123456",  # inside a hex request id
        "bank card 6222021001234567890",  # 19 digits: not a citizen id, not a mobile
        "at 1718000000000 ms",  # a 13-digit timestamp
        "amount 12345678901 fen",  # 11 digits, not a mobile prefix (12)
        "short",
    ],
)
def test_text_leaves_longer_or_other_numbers_alone(text: str) -> None:
    assert mask_text(text) == text


def test_fields_by_name_and_by_shape() -> None:
    fields = {
        "citizen_id": CITIZEN_ID,
        "name": "张三丰",
        "phone": PHONE,
        "card_no": "A12345678",
        "psn_no": "320000000012345",
        "status": 200,
        "mobile_as_int": 13812345678,
        "detail": f"refused {CITIZEN_ID}",
        "nested": {"psn_name": "李四", "rows": [f"tel {PHONE}", 3]},
        "missing": None,
        "name_absent": None,
    }
    masked = mask_fields(fields)
    assert masked == {
        "citizen_id": "110*************2X",
        "name": "张*",
        "phone": "*******5678",
        "card_no": "A******78",
        "psn_no": "32***********45",
        "status": 200,
        "mobile_as_int": "*******5678",
        "detail": "refused 110*************2X",
        "nested": {"psn_name": "李*", "rows": ["tel *******5678", 3]},
        "missing": None,
        "name_absent": None,
    }
    assert fields["name"] == "张三丰"  # the caller's mapping is left as it was


def test_sscard_reprs_of_card_data_and_apdus_are_masked() -> None:
    """sscard's own output: the reprs of the card's records and of the APDUs that carry them
    (what lands in a log line, a trace or a test failure) show the masked forms only. A card
    holds no phone number; the PIN is planted instead."""
    from sscard import apdu
    from sscard.layout import CardIdentity, CardSn, Gender, encode_ef05, encode_ef06

    name, card_no, pin = "欧阳娜娜", "A12345678", "802613"
    identity = CardIdentity(
        CardSn.from_hex("310000D1560000050123456789ABCDEF"),
        "3",
        "3.00",
        "310000D15600000512345678",
        dt.date(2019, 1, 2),
        dt.date(2029, 1, 2),
        card_no,
        CITIZEN_ID,
        name,
        Gender.FEMALE,
        "01",
        dt.date(1949, 12, 31),
    )
    records = {**encode_ef05(identity), **encode_ef06(identity)}
    shown = [repr(identity), str(identity), repr(identity.issuer), repr(identity.holder)]
    shown += [repr(apdu.ResponseApdu(record, 0x90, 0x00)) for record in records.values()]
    shown.append(repr(apdu.verify_pin(pin)))
    for text in shown:
        for raw in (CITIZEN_ID, name, card_no, pin, "1949-12-31", "19491231"):
            assert raw not in text, f"{raw!r} in {text!r}"
    assert "'110*************2X'" in shown[0]
    assert "'欧*'" in shown[0]
    assert "'A******78'" in shown[0]
    assert "'A******78'" in shown[2]
    assert "1949-**-**" in shown[3]
