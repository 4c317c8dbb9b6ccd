"""sscard.apdu: command/response codecs, status words, builders; hex vectors and properties."""

from __future__ import annotations

import doctest
import pickle
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sscard.apdu
from sscard.apdu import (
    ApduDecodeError,
    ApplicationLocked,
    CardStatusError,
    ClaNotSupported,
    CommandApdu,
    ConditionsNotSatisfied,
    FileNotFound,
    InsNotSupported,
    PinBlocked,
    RecordNotFound,
    ResponseApdu,
    SecurityNotSatisfied,
    WrongLength,
    WrongParameters,
    WrongPin,
    check_sw,
    decode_pin,
    encode_pin,
    error_for_sw,
    external_authenticate,
    get_challenge,
    get_response,
    internal_authenticate,
    read_binary,
    read_record,
    select_aid,
    select_file,
    verify_pin,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (CommandApdu keyword arguments, case, extended on the wire, encoded hex)
HEADER: dict[str, Any] = {"cla": 0x00, "ins": 0xB0, "p1": 0x01, "p2": 0x02}
COMMANDS: list[tuple[dict[str, Any], int, bool, str]] = [
    ({}, 1, False, "00B00102"),
    ({"le": 1}, 2, False, "00B00102 01"),
    ({"le": 255}, 2, False, "00B00102 FF"),
    ({"le": 256}, 2, False, "00B00102 00"),
    ({"le": 257}, 2, True, "00B00102 00 0101"),
    ({"le": 65535}, 2, True, "00B00102 00 FFFF"),
    ({"le": 65536}, 2, True, "00B00102 00 0000"),
    ({"le": 16, "extended": True}, 2, True, "00B00102 00 0010"),
    ({"le": 256, "extended": True}, 2, True, "00B00102 00 0100"),
    ({"data": h("AA")}, 3, False, "00B00102 01 AA"),
    ({"data": bytes(255)}, 3, False, "00B00102 FF" + "00" * 255),
    ({"data": bytes(256)}, 3, True, "00B00102 00 0100" + "00" * 256),
    ({"data": h("AABB"), "extended": True}, 3, True, "00B00102 00 0002 AABB"),
    ({"data": h("AABB"), "le": 256}, 4, False, "00B00102 02 AABB 00"),
    ({"data": h("AABB"), "le": 8}, 4, False, "00B00102 02 AABB 08"),
    ({"data": h("AABB"), "le": 257}, 4, True, "00B00102 00 0002 AABB 0101"),
    ({"data": h("AABB"), "le": 65536}, 4, True, "00B00102 00 0002 AABB 0000"),
    ({"data": bytes(300), "le": 256}, 4, True, "00B00102 00 012C" + "00" * 300 + "0100"),
    ({"data": h("AABB"), "le": 8, "extended": True}, 4, True, "00B00102 00 0002 AABB 0008"),
]


@pytest.mark.parametrize(("kwargs", "case", "extended", "encoded"), COMMANDS)
def test_command_vectors(kwargs: dict[str, Any], case: int, extended: bool, encoded: str) -> None:
    command = CommandApdu(**HEADER, **kwargs)
    assert command.case == case
    assert command.is_extended is extended
    assert command.to_bytes() == h(encoded)
    assert CommandApdu.from_bytes(h(encoded)) == command


def test_forcing_extended_when_needed_anyway_is_normalised() -> None:
    # Same bytes on the wire, so the same value: equality must not depend on a redundant flag.
    assert CommandApdu(**HEADER, le=300, extended=True) == CommandApdu(**HEADER, le=300)
    assert CommandApdu(**HEADER, le=300, extended=True).extended is False
    assert CommandApdu(**HEADER, le=3, extended=True) != CommandApdu(**HEADER, le=3)


def test_real_world_select_and_read_vectors() -> None:
    # As sent by reader code in the field for the SSSE application and EF05.
    ssse = h("7378312E73682EC9E7BBE1B1A3D5CF")
    assert select_aid(ssse).to_bytes() == h("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
    assert select_file(h("EF05")).to_bytes() == h("00A4000002EF05")
    assert read_record(0x07).to_bytes() == h("00B2070400")
    assert CommandApdu.from_bytes(h("00B2070400")) == read_record(0x07)


# (input hex, offset, message fragment)
MALFORMED_COMMANDS = [
    ("", 0, "4-byte header"),
    ("00B207", 0, "4-byte header"),
    ("00A40400 0F 7378", 4, "short Lc=15 does not match the 2 bytes"),
    ("00A40400 02 7378 00 00", 4, "short Lc=2 does not match the 4 bytes"),
    ("00B20704 0000", 4, "neither short nor extended"),
    ("00B20704 000000 00", 5, "extended Lc of 0"),
    ("00B20704 000000 0000", 5, "extended Lc of 0"),
    ("00B20704 000005 0102", 5, "extended Lc=5 does not match the 2 bytes"),
    ("00B20704 000002 0102 00", 5, "extended Lc=2 does not match the 3 bytes"),
]


@pytest.mark.parametrize(("encoded", "offset", "fragment"), MALFORMED_COMMANDS)
def test_command_from_bytes_rejects(encoded: str, offset: int, fragment: str) -> None:
    with pytest.raises(ApduDecodeError, match=fragment) as info:
        CommandApdu.from_bytes(h(encoded))
    assert info.value.offset == offset
    assert f"offset {offset}" in str(info.value)


def test_command_longer_than_any_apdu_is_rejected() -> None:
    too_long = h("00B00000 00FFFF") + bytes(65535) + h("0000") + b"\x00"
    with pytest.raises(ApduDecodeError, match="exceeds"):
        CommandApdu.from_bytes(too_long)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"cla": 256}, ValueError, "cla must be one byte"),
        ({"p2": -1}, ValueError, "p2 must be one byte"),
        ({"ins": True}, TypeError, "ins must be an int"),
        ({"le": 0}, ValueError, "use 256 for the short Le byte 00"),
        ({"le": 65537}, ValueError, "le"),
        ({"data": bytes(65536)}, ValueError, "maximum is 65535"),
        ({"data": bytearray(2)}, TypeError, "data must be bytes"),
        ({"extended": True}, ValueError, "case 1"),
    ],
)
def test_command_validation(kwargs: dict[str, Any], error: type[Exception], fragment: str) -> None:
    arguments: dict[str, Any] = {**HEADER, **kwargs}
    with pytest.raises(error, match=fragment):
        CommandApdu(**arguments)


def test_with_le_resends_after_6cxx() -> None:
    command = read_record(0x01)
    response = ResponseApdu.from_bytes(h("6C12"))
    assert response.wrong_le_exact == 0x12
    assert command.with_le(response.wrong_le_exact).to_bytes() == h("00B2010412")


def test_command_repr_redacts_pins_and_shows_other_data() -> None:
    for command in (verify_pin("123456"), CommandApdu.from_bytes(h("0020000003123456"))):
        text = repr(command)
        assert "123456" not in text
        assert "<3 bytes redacted>" in text
    for ins in (0x24, 0x2C):  # CHANGE REFERENCE DATA, RESET RETRY COUNTER
        assert "1234" not in repr(CommandApdu(0, ins, 0, 0, h("1234")))
    assert repr(external_authenticate(h("A1B2"))) == (
        "CommandApdu(cla=0x00, ins=0x82, p1=0x00, p2=0x00, data=bytes.fromhex('A1B2'))"
    )


# -- responses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "data", "sw"),
    [
        ("9000", "", 0x9000),
        ("0304332E3030 9000", "0304332E3030", 0x9000),
        ("6A82", "", 0x6A82),
        ("AB 6110", "AB", 0x6110),
    ],
)
def test_response_vectors(encoded: str, data: str, sw: int) -> None:
    response = ResponseApdu.from_bytes(h(encoded))
    assert (response.data, response.sw) == (h(data), sw)
    assert response.to_bytes() == h(encoded)
    assert response == ResponseApdu.from_sw(sw, h(data))


@pytest.mark.parametrize(("encoded", "offset"), [("", 0), ("90", 1)])
def test_response_too_short(encoded: str, offset: int) -> None:
    with pytest.raises(ApduDecodeError, match="2 status bytes") as info:
        ResponseApdu.from_bytes(h(encoded))
    assert info.value.offset == offset


def test_response_too_long() -> None:
    assert len(ResponseApdu.from_bytes(bytes(65536) + h("9000")).data) == 65536
    with pytest.raises(ApduDecodeError, match="exceeds 65536") as info:
        ResponseApdu.from_bytes(bytes(65537) + h("9000"))
    assert info.value.offset == 65536


@pytest.mark.parametrize(
    ("sw", "ok", "more", "available", "exact"),
    [
        (0x9000, True, False, None, None),
        (0x6110, False, True, 16, None),
        (0x6100, False, True, 256, None),
        (0x6C09, False, False, None, 9),
        (0x6C00, False, False, None, 256),
        (0x6A82, False, False, None, None),
    ],
)
def test_response_transport_hints(
    sw: int, ok: bool, more: bool, available: int | None, exact: int | None
) -> None:
    response = ResponseApdu.from_sw(sw)
    assert response.is_ok is ok
    assert response.more_data_available is more
    assert response.available_length == available
    assert response.wrong_le_exact == exact
    if available is not None:
        assert get_response(response.sw2).le == available


def test_response_repr_hides_data() -> None:
    name = "张三".encode("gbk")
    text = repr(ResponseApdu(name, 0x90, 0x00))
    assert text == "ResponseApdu(sw=9000, data=<4 bytes>)"


def test_response_validation() -> None:
    with pytest.raises(ValueError, match="sw1 must be one byte"):
        ResponseApdu(b"", 0x100, 0)
    with pytest.raises(TypeError, match="data must be bytes"):
        ResponseApdu("x", 0x90, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maximum is 65536"):
        ResponseApdu(bytes(65537), 0x90, 0)


# -- status words ---------------------------------------------------------------------------

STATUS_ERRORS: list[tuple[int, type[CardStatusError], str]] = [
    (0x63C3, WrongPin, "wrong PIN, 3 tries left"),
    (0x63C1, WrongPin, "wrong PIN, 1 try left"),
    (0x63C0, WrongPin, "no tries left"),
    (0x6983, PinBlocked, "PIN is blocked"),
    (0x6A82, FileNotFound, "not found"),
    (0x9303, ApplicationLocked, "permanently locked"),
    (0x6982, SecurityNotSatisfied, "security status"),
    (0x6A86, WrongParameters, "wrong parameters"),
    (0x6B00, WrongParameters, "wrong parameters"),
    (0x6D00, InsNotSupported, "instruction not supported"),
    (0x6E00, ClaNotSupported, "class byte not supported"),
    (0x6700, WrongLength, "wrong length"),
    (0x6A83, RecordNotFound, "record not found"),
    (0x6985, ConditionsNotSatisfied, "conditions of use"),
    (0x6F00, CardStatusError, "refused"),
    (0x6282, CardStatusError, "refused"),
    (0x63C0 - 1, CardStatusError, "refused"),  # 63BF: not a 63Cx counter
    (0x9001, CardStatusError, "refused"),
    (0x0000, CardStatusError, "refused"),
]


@pytest.mark.parametrize(("sw", "kind", "fragment"), STATUS_ERRORS)
def test_check_sw_raises_typed_errors(sw: int, kind: type[CardStatusError], fragment: str) -> None:
    with pytest.raises(CardStatusError) as info:
        check_sw(sw)
    assert type(info.value) is kind
    assert info.value.sw == sw
    assert fragment in str(info.value)
    assert f"{sw:04X}" in str(info.value)
    assert info.value.code.startswith("CARD_")


@pytest.mark.parametrize(("sw", "tries"), [(0x63C0, 0), (0x63C2, 2), (0x63CF, 15)])
def test_wrong_pin_tries_left(sw: int, tries: int) -> None:
    error = error_for_sw(sw)
    assert isinstance(error, WrongPin)
    assert error.tries_left == tries


@pytest.mark.parametrize("sw", [0x9000, 0x6100, 0x61FF, 0x6C00, 0x6C10])
def test_success_and_transport_instructions_do_not_raise(sw: int) -> None:
    assert error_for_sw(sw) is None
    check_sw(sw)  # must not raise


def test_check_sw_range() -> None:
    with pytest.raises(ValueError, match=r"0x0000\.\.0xFFFF"):
        check_sw(0x10000)
    with pytest.raises(TypeError):
        check_sw(True)


@pytest.mark.parametrize("sw", [0x63C2, 0x6A82, 0x6F00])
def test_status_errors_pickle(sw: int) -> None:
    error = error_for_sw(sw)
    assert error is not None
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert (clone.sw, str(clone)) == (error.sw, str(error))
    if isinstance(error, WrongPin):
        assert isinstance(clone, WrongPin)
        assert clone.tries_left == error.tries_left


def test_custom_detail_keeps_the_status_word() -> None:
    error = CardStatusError(0x6F00, "applet crashed")
    assert str(error) == "card status 6F00: applet crashed"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_codes_are_distinct_per_class() -> None:
    classes = {kind for _, kind, _ in STATUS_ERRORS}
    assert len({kind.code for kind in classes}) == len(classes)


def test_decode_error_pickles() -> None:
    clone = pickle.loads(pickle.dumps(ApduDecodeError("bad", 3)))
    assert (clone.offset, str(clone)) == (3, "bad (at byte offset 3)")


# -- builders -------------------------------------------------------------------------------

BUILDERS: list[tuple[Callable[[], CommandApdu], str]] = [
    (lambda: select_aid(h("D15600000500")), "00A4040006D15600000500"),
    (lambda: select_aid(h("504B492EC9E7BBE1B1A3D5CF")), "00A404000C504B492EC9E7BBE1B1A3D5CF"),
    (lambda: select_file(h("0018")), "00A40000020018"),
    (lambda: read_record(0x01), "00B2010400"),
    (lambda: read_record(0xFE), "00B2FE0400"),
    (lambda: read_record(0x01, sfi=5), "00B2012C00"),
    (lambda: read_record(0x02, sfi=30), "00B202F400"),
    (lambda: read_record(0x08, by_identifier=True), "00B2080000"),
    (lambda: read_record(0x08, sfi=6, by_identifier=True), "00B2083000"),
    (lambda: read_binary(0, 0), "00B0000000"),
    (lambda: read_binary(0x7FFF, 1), "00B07FFF01"),
    (lambda: read_binary(0x0102, 256), "00B0010200"),
    (lambda: read_binary(0, 1000), "00B00000 0003E8"),
    (lambda: read_binary(0, 65536), "00B00000 000000"),
    (lambda: read_binary(0x10, 0x20, sfi=0x12), "00B0921020"),
    (lambda: verify_pin("123456"), "0020000003123456"),
    (lambda: verify_pin("1234"), "00200000021234"),
    (lambda: verify_pin("12345"), "002000000312345F"),
    (lambda: verify_pin("123456789012"), "0020000006123456789012"),
    (lambda: verify_pin("123456", reference=0x81), "0020008103123456"),
    (lambda: get_challenge(8), "0084000008"),
    (lambda: get_challenge(16), "0084000010"),
    (lambda: get_challenge(256), "0084000000"),
    (lambda: internal_authenticate(bytes(16)), "0088000010" + "00" * 16 + "00"),
    (lambda: internal_authenticate(h("AB"), p1=0x00, p2=0x01), "0088000101AB00"),
    (lambda: internal_authenticate(bytes(256)), "00880000 000100" + "00" * 256 + "0100"),
    (lambda: external_authenticate(h("11") * 8), "0082000008" + "11" * 8),
    (lambda: get_response(0x10), "00C0000010"),
    (lambda: get_response(0), "00C0000000"),
    (lambda: get_response(256), "00C0000000"),
]


@pytest.mark.parametrize(("build", "encoded"), BUILDERS)
def test_builder_vectors(build: Callable[[], CommandApdu], encoded: str) -> None:
    command = build()
    assert command.to_bytes() == h(encoded)
    assert CommandApdu.from_bytes(h(encoded)) == command


BUILDER_ERRORS: list[tuple[Callable[[], object], str]] = [
    (lambda: select_aid(bytes(4)), "AID must be 5..16 bytes"),
    (lambda: select_aid(bytes(17)), "AID must be 5..16 bytes"),
    (lambda: select_file(h("EF")), "file id must be 2..2 bytes"),
    (lambda: select_file(h("FFFF")), "reserved"),
    (lambda: select_file(h("3FFF")), "reserved"),
    (lambda: read_record(0), "record number must be 1..254"),
    (lambda: read_record(0xFF), "record number must be 1..254"),
    (lambda: read_record(1, sfi=0), "SFI must be 1..30"),
    (lambda: read_record(1, sfi=31), "SFI must be 1..30"),
    (lambda: read_binary(0x8000), "offset must be 0..32767"),
    (lambda: read_binary(256, sfi=1), "offset with an SFI must be 0..255"),
    (lambda: read_binary(0, -1), "0 means 256"),
    (lambda: read_binary(0, 65537), "0 means 256"),
    (lambda: read_binary(0, 0, sfi=31), "SFI must be 1..30"),
    (lambda: verify_pin("123"), "PIN must be 4..12 digits, got 3"),
    (lambda: verify_pin("1234567890123"), "PIN must be 4..12 digits, got 13"),
    (lambda: verify_pin("12a456"), "only the ASCII digits"),
    (lambda: verify_pin("١٢٣٤"), "only the ASCII digits"),  # Arabic-Indic digits
    (lambda: verify_pin("123456", reference=256), "PIN reference must be 0..255"),
    (lambda: get_challenge(0), "challenge length must be 1..256"),
    (lambda: get_challenge(257), "challenge length must be 1..256"),
    (lambda: internal_authenticate(b""), "authentication data must be 1..65535 bytes"),
    (lambda: internal_authenticate(h("AB"), p1=256), "P1 must be 0..255"),
    (lambda: external_authenticate(b""), "authentication data must be 1..65535 bytes"),
    (lambda: get_response(257), "le must be 0..256"),
]


@pytest.mark.parametrize(("call", "fragment"), BUILDER_ERRORS)
def test_builder_validation(call: Callable[[], object], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        call()


def test_builders_reject_wrong_types() -> None:
    with pytest.raises(TypeError):
        verify_pin(123456)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        select_aid("D15600000500")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        read_record(1.0)  # type: ignore[arg-type]


def test_pin_errors_never_quote_the_pin() -> None:
    with pytest.raises(ValueError, match="digits") as info:
        verify_pin("98765x")
    assert "98765" not in str(info.value)


@pytest.mark.parametrize(
    ("encoded", "offset", "fragment"),
    [
        ("", 0, "0 digits"),
        ("123F", 0, "3 digits"),
        ("12A456", 1, "not a decimal digit"),
        ("1F3456", 0, "not a decimal digit"),
        ("1234FF", 2, "not a decimal digit"),
        ("12345678901234", 0, "14 digits"),
    ],
)
def test_decode_pin_rejects(encoded: str, offset: int, fragment: str) -> None:
    with pytest.raises(ApduDecodeError, match=fragment) as info:
        decode_pin(h(encoded))
    assert info.value.offset == offset


def test_doctests() -> None:
    result = doctest.testmod(sscard.apdu)
    assert result.attempted > 10
    assert result.failed == 0


# -- properties -----------------------------------------------------------------------------

bytes_ = st.integers(0, 255)
small_data = st.one_of(st.binary(max_size=20), st.binary(min_size=250, max_size=300))


@st.composite
def commands(draw: st.DrawFn) -> CommandApdu:
    data = draw(small_data)
    le = draw(st.one_of(st.none(), st.integers(1, 300), st.integers(60000, 65536)))
    extended = draw(st.booleans()) if (data or le is not None) else False
    return CommandApdu(draw(bytes_), draw(bytes_), draw(bytes_), draw(bytes_), data, le, extended)


@given(commands())
def test_command_round_trip(command: CommandApdu) -> None:
    encoded = command.to_bytes()
    assert CommandApdu.from_bytes(encoded) == command
    body = len(encoded) - 4
    has_le = command.le is not None
    if command.is_extended:
        expected = 1 + (2 + len(command.data) if command.data else 0) + (2 if has_le else 0)
    else:
        expected = (1 + len(command.data) if command.data else 0) + (1 if has_le else 0)
    assert body == expected
    assert command.is_extended == (
        command.extended or len(command.data) > 255 or (command.le or 0) > 256
    )


@given(st.binary(max_size=2), st.integers(0, 255), st.integers(0, 255))
def test_response_round_trip(data: bytes, sw1: int, sw2: int) -> None:
    response = ResponseApdu(data, sw1, sw2)
    assert ResponseApdu.from_bytes(response.to_bytes()) == response


def decode_error(call: Callable[[], object]) -> ApduDecodeError | None:
    """Run ``call``; return the ApduDecodeError it raised, or None. Anything else propagates."""
    try:
        call()
    except ApduDecodeError as error:
        return error
    return None


header = st.binary(min_size=4, max_size=4)
random_bodies = st.one_of(
    st.binary(max_size=12),
    st.tuples(st.binary(min_size=3, max_size=3), st.binary(max_size=12)).map(
        lambda parts: b"\x00" + parts[0][:2] + parts[1]
    ),
)


@given(header, random_bodies)
def test_random_command_bytes_parse_canonically_or_raise_decode_error(
    head: bytes, body: bytes
) -> None:
    raw = head + body
    error = decode_error(lambda: CommandApdu.from_bytes(raw))
    if error is None:
        assert CommandApdu.from_bytes(raw).to_bytes() == raw
    else:
        assert 0 <= error.offset <= len(raw)


@given(st.binary(max_size=24))
def test_random_bytes_into_every_decoder_raise_only_decode_error(raw: bytes) -> None:
    for call in (
        lambda: CommandApdu.from_bytes(raw),
        lambda: ResponseApdu.from_bytes(raw),
        lambda: decode_pin(raw),
    ):
        error = decode_error(call)
        assert error is None or 0 <= error.offset <= len(raw)


@given(st.binary(max_size=8))
def test_decode_pin_is_the_inverse_of_encode_pin(raw: bytes) -> None:
    if decode_error(lambda: decode_pin(raw)) is None:
        assert encode_pin(decode_pin(raw)) == raw


@given(st.text(alphabet="0123456789", min_size=4, max_size=12))
def test_verify_pin_round_trip(pin: str) -> None:
    command = verify_pin(pin)
    assert decode_pin(command.data) == pin
    assert pin not in repr(command)
