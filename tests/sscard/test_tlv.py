"""sscard.tlv: strict BER-TLV, table-driven over hex vectors plus property tests."""

from __future__ import annotations

import doctest
import pickle
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sscard.tlv
from sscard.tlv import (
    DEFAULT_MAX_LENGTH,
    Tlv,
    TlvDecodeError,
    decode_record,
    encode_record,
    encode_tlv,
    parse_exactly_one,
    parse_one,
    parse_tlv,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (encoded hex, [(tag, value hex), ...]) -- every vector is also the one canonical encoding.
VALID = [
    ("", []),
    ("5A00", [(0x5A, "")]),
    ("5A021234", [(0x5A, "1234")]),
    ("01 10 330300D15600000599110145FFFFFFFF", [(0x01, "330300D15600000599110145FFFFFFFF")]),
    ("0304 332E3030", [(0x03, "332E3030")]),
    ("00 00", [(0x00, "")]),
    ("9F02 06 000000001000", [(0x9F02, "000000001000")]),
    ("5F20 02 4142", [(0x5F20, "4142")]),
    ("1F1F 01 AA", [(0x1F1F, "AA")]),
    ("1F8101 01 BB", [(0x1F8101, "BB")]),
    ("DF8F7F 00", [(0xDF8F7F, "")]),
    ("70 03 5A0112", [(0x70, "5A0112")]),
    ("5A0112 9F0200 0101FF", [(0x5A, "12"), (0x9F02, ""), (0x01, "FF")]),
    ("04 7F" + "AB" * 0x7F, [(0x04, "AB" * 0x7F)]),
    ("04 8180" + "CD" * 0x80, [(0x04, "CD" * 0x80)]),
    ("04 81FF" + "00" * 0xFF, [(0x04, "00" * 0xFF)]),
    ("04 820100" + "11" * 0x100, [(0x04, "11" * 0x100)]),
]


@pytest.mark.parametrize(("encoded", "items"), VALID)
def test_parse_valid_vectors(encoded: str, items: list[tuple[int, str]]) -> None:
    parsed = parse_tlv(h(encoded))
    assert parsed == [Tlv(tag, h(value)) for tag, value in items]


@pytest.mark.parametrize(("encoded", "items"), VALID)
def test_encode_valid_vectors(encoded: str, items: list[tuple[int, str]]) -> None:
    assert b"".join(encode_tlv(tag, h(value)) for tag, value in items) == h(encoded)


def test_three_byte_length_form_round_trips() -> None:
    value = bytes(range(256)) * 256 + b"\x01"  # 65,537 bytes: needs the 0x83 form
    encoded = encode_tlv(0x04, value)
    assert encoded[:5] == h("04 83 010001")
    assert parse_exactly_one(encoded, max_length=len(value)) == Tlv(0x04, value)


# (input hex, offset of the problem, fragment of the message) for parse_tlv
INVALID = [
    ("9F", 1, "truncated tag"),
    ("9F81", 2, "truncated tag"),
    ("9F8181 01 00", 0, "tag longer than 3 bytes"),
    ("1F80 01 00", 1, "non-minimal tag"),
    ("5A", 1, "truncated length"),
    ("5A81", 1, "truncated length"),
    ("5A8201", 1, "truncated length"),
    ("5A830100", 1, "truncated length"),
    ("5A80 0000", 1, "indefinite length"),
    ("5A84 00000001 00", 1, "unsupported length form"),
    ("5AFF", 1, "unsupported length form"),
    ("5A81 05 0102030405", 1, "non-minimal length"),
    ("5A81 7F" + "00" * 0x7F, 1, "non-minimal length"),
    ("5A82 0080" + "00" * 0x80, 1, "non-minimal length"),
    ("5A82 00FF" + "00" * 0xFF, 1, "non-minimal length"),
    ("5A83 00FFFF" + "00" * 0xFFFF, 1, "non-minimal length"),
    ("5A03 1234", 1, "runs past the end"),
    ("5A0112 5A", 4, "truncated length"),
    ("5A0112 9F0205 00", 5, "runs past the end"),
    ("5A83 010000", 1, "exceeds the bound"),
]


@pytest.mark.parametrize(("encoded", "offset", "fragment"), INVALID)
def test_parse_rejects_malformed(encoded: str, offset: int, fragment: str) -> None:
    with pytest.raises(TlvDecodeError, match=fragment) as info:
        parse_tlv(h(encoded))
    assert info.value.offset == offset
    assert f"offset {offset}" in str(info.value)


def test_length_bound_is_enforced_and_adjustable() -> None:
    data = encode_tlv(0x04, bytes(300))
    with pytest.raises(TlvDecodeError, match="exceeds the bound of 299 bytes") as info:
        parse_tlv(data, max_length=299)
    assert info.value.offset == 1
    assert parse_tlv(data, max_length=300) == [Tlv(0x04, bytes(300))]
    assert DEFAULT_MAX_LENGTH == 0xFFFF


@pytest.mark.parametrize("bad", [-1, 0x1000000])
def test_max_length_out_of_range_is_a_programming_error(bad: int) -> None:
    with pytest.raises(ValueError, match="max_length") as info:
        parse_tlv(b"", max_length=bad)
    assert not isinstance(info.value, TlvDecodeError)


def test_parse_exactly_one() -> None:
    assert parse_exactly_one(h("5A0112")) == Tlv(0x5A, h("12"))
    with pytest.raises(TlvDecodeError, match="2 trailing bytes") as info:
        parse_exactly_one(h("5A0112 0000"))
    assert info.value.offset == 3
    with pytest.raises(TlvDecodeError, match="truncated tag") as info:
        parse_exactly_one(b"")
    assert info.value.offset == 0


def test_parse_one_walks_offsets() -> None:
    data = h("5A0112 9F0201AA")
    first, after_first = parse_one(data)
    second, end = parse_one(data, after_first)
    assert (first, after_first) == (Tlv(0x5A, h("12")), 3)
    assert (second, end) == (Tlv(0x9F02, h("AA")), 7)
    with pytest.raises(TlvDecodeError) as info:
        parse_one(data, end)
    assert info.value.offset == 7
    with pytest.raises(ValueError, match="outside the data"):
        parse_one(data, -1)
    with pytest.raises(ValueError, match="outside the data"):
        parse_one(data, 8)


def test_parse_accepts_bytearray_and_memoryview() -> None:
    assert parse_tlv(bytearray(h("5A0112"))) == [Tlv(0x5A, h("12"))]  # type: ignore[arg-type]
    assert parse_tlv(memoryview(h("5A0112"))) == [Tlv(0x5A, h("12"))]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tag", "fragment"),
    [
        (0x1F, "announces more tag bytes"),
        (0x3F, "announces more tag bytes"),
        (0x5A01, "must start with a byte whose low 5 bits are 11111"),
        (0x9F80, "leading zero group"),
        (0x9F81, "must not have b8 set"),
        (0x9F0101, "must have b8 set"),
        (0x1000000, "out of range"),
        (-1, "out of range"),
    ],
)
def test_invalid_tags_are_rejected_when_building(tag: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Tlv(tag, b"")
    with pytest.raises(ValueError, match=fragment):
        encode_tlv(tag, b"")


def test_tlv_type_checks() -> None:
    with pytest.raises(TypeError, match="tag must be an int"):
        Tlv(True, b"")
    with pytest.raises(TypeError, match="value must be bytes"):
        Tlv(0x5A, bytearray(b"x"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tag", "constructed", "tag_hex"),
    [(0x5A, False, "5A"), (0x70, True, "70"), (0x9F02, False, "9F02"), (0xBF0C, True, "BF0C"),
     (0x01, False, "01"), (0x3F8101, True, "3F8101")],
)  # fmt: skip
def test_constructed_flag_and_tag_bytes(tag: int, constructed: bool, tag_hex: str) -> None:
    item = Tlv(tag, b"")
    assert item.constructed is constructed
    assert item.tag_bytes == h(tag_hex)


def test_children_parses_one_level_down() -> None:
    outer = parse_exactly_one(h("70 08 5A0112 E1 03 010100"))
    assert outer.children() == [Tlv(0x5A, h("12")), Tlv(0xE1, h("010100"))]
    assert outer.children()[1].children() == [Tlv(0x01, h("00"))]
    with pytest.raises(ValueError, match="primitive"):
        Tlv(0x5A, h("5A00")).children()
    with pytest.raises(TlvDecodeError) as info:
        Tlv(0x70, h("5A05")).children()
    assert info.value.offset == 1


def test_repr_is_hex() -> None:
    assert repr(Tlv(0x9F02, h("0A0B"))) == "Tlv(tag=0x9F02, value=bytes.fromhex('0A0B'))"


def test_error_is_value_error_and_pickles() -> None:
    error = TlvDecodeError("truncated tag", 7)
    assert isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is TlvDecodeError
    assert (clone.offset, str(clone)) == (7, str(error))


# -- SSSE records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_no", "value", "encoded"),
    [
        (0x01, "330300D15600000599110145FFFFFFFF", "0110330300D15600000599110145FFFFFFFF"),
        (0x03, "332E3030", "0304332E3030"),
        (0x07, "", "0700"),
        (0x1E, "AA", "1E01AA"),
    ],
)
def test_record_vectors(record_no: int, value: str, encoded: str) -> None:
    assert encode_record(record_no, h(value)) == h(encoded)
    assert decode_record(record_no, h(encoded)) == h(value)


@pytest.mark.parametrize("record_no", [0, 0x1F, 0x20, 0xFF, -1])
def test_record_numbers_outside_single_byte_primitive_range(record_no: int) -> None:
    with pytest.raises(ValueError, match=r"record number must be 1\.\.30"):
        encode_record(record_no, b"")
    with pytest.raises(ValueError, match=r"record number must be 1\.\.30"):
        decode_record(record_no, h("0100"))


@pytest.mark.parametrize(
    ("encoded", "fragment", "offset"),
    [
        ("0404332E3030", "record 03 holds tag 04, expected tag 03", 0),
        ("0304332E303000", "1 trailing byte", 6),
        ("0305332E3030", "runs past the end", 1),
        ("038105 0102030405", "non-minimal", 1),
        ("", "truncated tag", 0),
    ],
)
def test_decode_record_rejects(encoded: str, fragment: str, offset: int) -> None:
    with pytest.raises(TlvDecodeError, match=fragment) as info:
        decode_record(0x03, h(encoded))
    assert info.value.offset == offset


def test_record_longer_than_a_short_response_is_rejected_by_default() -> None:
    encoded = encode_record(0x02, bytes(256))
    with pytest.raises(TlvDecodeError, match="exceeds the bound of 255"):
        decode_record(0x02, encoded)
    assert decode_record(0x02, encoded, max_length=256) == bytes(256)


def test_doctests() -> None:
    result = doctest.testmod(sscard.tlv)
    assert result.attempted > 5
    assert result.failed == 0


# -- properties -----------------------------------------------------------------------------

one_byte_tags = st.integers(0, 0xFF).filter(lambda t: t & 0x1F != 0x1F)
two_byte_tags = st.builds(
    lambda first, second: (first << 8) | second,
    st.integers(0, 7).map(lambda top: (top << 5) | 0x1F),
    st.integers(0, 0x7F),
)
three_byte_tags = st.builds(
    lambda first, mid, last: (first << 16) | (mid << 8) | last,
    st.integers(0, 7).map(lambda top: (top << 5) | 0x1F),
    st.integers(0x81, 0xFF),
    st.integers(0, 0x7F),
)
tags = st.one_of(one_byte_tags, two_byte_tags, three_byte_tags)
values = st.one_of(st.binary(max_size=140), st.binary(min_size=250, max_size=300))


@given(tags, values)
def test_encode_then_parse_round_trips(tag: int, value: bytes) -> None:
    encoded = encode_tlv(tag, value)
    assert parse_exactly_one(encoded) == Tlv(tag, value)
    assert parse_one(b"\xaa" + encoded, 1) == (Tlv(tag, value), 1 + len(encoded))


@given(st.lists(st.tuples(tags, values), max_size=5))
def test_concatenations_round_trip(items: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(encode_tlv(tag, value) for tag, value in items)
    assert parse_tlv(encoded) == [Tlv(tag, value) for tag, value in items]


def decode_error(call: Callable[[], object]) -> TlvDecodeError | None:
    """Run ``call``; return the TlvDecodeError it raised, or None. Anything else propagates."""
    try:
        call()
    except TlvDecodeError as error:
        return error
    return None


@given(st.binary(max_size=64))
def test_random_bytes_parse_canonically_or_raise_decode_error(data: bytes) -> None:
    # Strict parsing means one encoding per TLV: whatever parses re-encodes to the same bytes.
    error = decode_error(lambda: parse_tlv(data))
    if error is None:
        assert b"".join(item.to_bytes() for item in parse_tlv(data)) == data
    else:
        assert 0 <= error.offset <= len(data)


@given(st.binary(max_size=40), st.integers(0, 40))
def test_random_bytes_into_every_decoder_raise_only_decode_error(data: bytes, offset: int) -> None:
    calls: list[Callable[[], object]] = [
        lambda: parse_exactly_one(data),
        lambda: parse_one(data, min(offset, len(data))),
        lambda: decode_record(0x01, data),
        lambda: [item.children() for item in parse_tlv(data) if item.constructed],
    ]
    for call in calls:
        error = decode_error(call)
        assert error is None or 0 <= error.offset <= len(data)
