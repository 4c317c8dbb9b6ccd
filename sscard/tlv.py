"""Strict BER-TLV codec (ISO/IEC 7816-4 §5.2, X.690 §8.1) for card data.

Pure: bytes in, :class:`Tlv` out, and back. Only definite lengths are accepted, and only in
their shortest form, so every TLV has exactly one encoding and ``encode(parse(x)) == x``.

Byte layout of one TLV::

    tag     1..3 bytes  first byte: class (b8 b7), constructed (b6), tag number (b5..b1).
                        b5..b1 = 11111 means "more tag bytes follow"; each following byte
                        has b8 = 1 except the last. The first following byte may not be 0x80
                        (that would be a non-minimal tag number).
    length  1..4 bytes  00..7F          short form, 0..127
                        81 xx           128..255
                        82 xx xx        256..65,535
                        83 xx xx xx     65,536..16,777,215
                        80 (indefinite) and 84..FF are rejected.
    value   length bytes

Two-byte tags whose second byte is below 0x1F (EMV's ``9F02`` and friends) are accepted: ISO
7816-4 forbids them but every EMV card uses them.

SSSE records (社保环境 EF05/EF06) hold one TLV whose tag equals the record number; see
:func:`encode_record` and :func:`decode_record`.

Exceptions::

    ValueError
     └── TlvDecodeError     malformed input; .offset is the byte offset of the problem

Building a TLV from bad arguments (a tag that is not a valid BER tag, a value too long to
encode) raises plain ``ValueError``: that is a programming error, not bad card data.

>>> encode_tlv(0x5A, bytes.fromhex("1234")).hex().upper()
'5A021234'
>>> parse_tlv(bytes.fromhex("5A0112 9F0200"))
[Tlv(tag=0x5A, value=bytes.fromhex('12')), Tlv(tag=0x9F02, value=bytes.fromhex(''))]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "MAX_ENCODABLE_LENGTH",
    "MAX_RECORD_NO",
    "MAX_TAG_BYTES",
    "Tlv",
    "TlvDecodeError",
    "decode_record",
    "encode_record",
    "encode_tlv",
    "parse_exactly_one",
    "parse_one",
    "parse_tlv",
]

#: ISO 7816-4 allows tags of at most three bytes.
MAX_TAG_BYTES = 3
#: The longest value the 0x83 length form can state.
MAX_ENCODABLE_LENGTH = 0xFF_FFFF
#: Default bound on a single value while parsing: the largest extended-APDU payload. Card
#: files are far smaller; a bigger length in card data is corruption or an attack.
DEFAULT_MAX_LENGTH = 0xFFFF
#: SSSE record tags are single-byte primitive tags: 01..1E (0x1F would start a multi-byte tag).
MAX_RECORD_NO = 0x1E

_CONSTRUCTED_BIT = 0x20
_TAG_NUMBER_MASK = 0x1F
_MORE_TAG_BYTES = 0x80


class TlvDecodeError(ValueError):
    """Malformed BER-TLV input. ``offset`` is the byte offset of the problem in the input."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte offset {offset})")
        self.message = message
        self.offset = offset

    def __reduce__(self) -> tuple[type[TlvDecodeError], tuple[str, int]]:
        # Keep the error picklable (worker processes, logging handlers) despite the 2-arg init.
        return (type(self), (self.message, self.offset))


def _tag_to_bytes(tag: int) -> bytes:
    """The BER encoding of ``tag``; ValueError if ``tag`` is not a well-formed BER tag."""
    if isinstance(tag, bool) or not isinstance(tag, int):
        raise TypeError(f"tag must be an int, not {type(tag).__name__}")
    if not 0 <= tag <= 0xFF_FFFF:
        raise ValueError(f"tag 0x{tag:X} is out of range: tags are 1..3 bytes (0x00..0xFFFFFF)")
    size = max(1, (tag.bit_length() + 7) // 8)
    raw = tag.to_bytes(size, "big")
    if size == 1:
        if raw[0] & _TAG_NUMBER_MASK == _TAG_NUMBER_MASK:
            raise ValueError(f"tag 0x{tag:02X} announces more tag bytes but has none")
        return raw
    if raw[0] & _TAG_NUMBER_MASK != _TAG_NUMBER_MASK:
        raise ValueError(
            f"tag 0x{tag:X}: a multi-byte tag must start with a byte whose low 5 bits are 11111"
        )
    if raw[1] == _MORE_TAG_BYTES:
        raise ValueError(f"tag 0x{tag:X}: tag number has a leading zero group (byte 2 is 0x80)")
    for index, byte in enumerate(raw[1:], start=1):
        is_last = index == size - 1
        if bool(byte & _MORE_TAG_BYTES) == is_last:
            raise ValueError(
                f"tag 0x{tag:X}: byte {index + 1} must "
                + ("not " if is_last else "")
                + "have b8 set (b8 marks 'more tag bytes follow')"
            )
    return raw


def _length_to_bytes(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    if length <= MAX_ENCODABLE_LENGTH:
        return b"\x83" + length.to_bytes(3, "big")
    raise ValueError(
        f"value of {length} bytes is too long for BER-TLV (max {MAX_ENCODABLE_LENGTH})"
    )


@dataclass(frozen=True, slots=True)
class Tlv:
    """One BER-TLV data object: ``tag`` as an int over all its bytes (``0x9F02``), raw ``value``.

    A constructed TLV's value is itself a sequence of TLVs; read it with :meth:`children`.
    """

    tag: int
    value: bytes

    def __post_init__(self) -> None:
        _tag_to_bytes(self.tag)
        if not isinstance(self.value, bytes):
            raise TypeError(f"value must be bytes, not {type(self.value).__name__}")
        if len(self.value) > MAX_ENCODABLE_LENGTH:
            raise ValueError(
                f"value of {len(self.value)} bytes is too long for BER-TLV"
                f" (max {MAX_ENCODABLE_LENGTH})"
            )

    def __repr__(self) -> str:
        # Hex reads better than bytes escapes in test failures and debug output.
        return f"Tlv(tag=0x{self.tag:02X}, value=bytes.fromhex({self.value.hex().upper()!r}))"

    @property
    def tag_bytes(self) -> bytes:
        """The encoded tag, 1..3 bytes."""
        return _tag_to_bytes(self.tag)

    @property
    def constructed(self) -> bool:
        """True when b6 of the first tag byte is set: the value is a sequence of TLVs."""
        return bool(self.tag_bytes[0] & _CONSTRUCTED_BIT)

    def to_bytes(self) -> bytes:
        """Tag, minimal definite length, value."""
        return self.tag_bytes + _length_to_bytes(len(self.value)) + self.value

    def children(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> list[Tlv]:
        """Parse the value of a constructed TLV one level down (TlvDecodeError if malformed).

        Offsets in errors are relative to the start of this TLV's value.
        """
        if not self.constructed:
            raise ValueError(f"tag 0x{self.tag:02X} is primitive: its value is not a TLV list")
        return parse_tlv(self.value, max_length=max_length)


def encode_tlv(tag: int, value: bytes) -> bytes:
    """Encode one TLV with the shortest definite length.

    >>> encode_tlv(0x01, b"\\x00" * 200)[:3].hex().upper()
    '0181C8'
    >>> encode_tlv(0x1F, b"")
    Traceback (most recent call last):
    ...
    ValueError: tag 0x1F announces more tag bytes but has none
    """
    return Tlv(tag, value).to_bytes()


def _parse_tag(data: bytes, offset: int) -> tuple[int, int]:
    """(tag, offset after the tag)."""
    size = len(data)
    start = offset
    if offset >= size:
        raise TlvDecodeError("truncated tag: no bytes left", offset)
    first = data[offset]
    tag = first
    offset += 1
    if first & _TAG_NUMBER_MASK != _TAG_NUMBER_MASK:
        return tag, offset
    while True:
        if offset >= size:
            raise TlvDecodeError("truncated tag: more tag bytes announced", offset)
        byte = data[offset]
        if offset == start + 1 and byte == _MORE_TAG_BYTES:
            raise TlvDecodeError("non-minimal tag: leading zero tag-number group", offset)
        tag = (tag << 8) | byte
        offset += 1
        if not byte & _MORE_TAG_BYTES:
            return tag, offset
        if offset - start >= MAX_TAG_BYTES:
            raise TlvDecodeError(f"tag longer than {MAX_TAG_BYTES} bytes", start)


def _parse_length(data: bytes, offset: int) -> tuple[int, int]:
    """(length, offset after the length field)."""
    if offset >= len(data):
        raise TlvDecodeError("truncated length: no length byte after tag", offset)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    if first == 0x80:
        raise TlvDecodeError("indefinite length (0x80) is not allowed", offset)
    if first > 0x83:
        raise TlvDecodeError(f"unsupported length form 0x{first:02X}", offset)
    count = first & 0x7F
    if offset + 1 + count > len(data):
        raise TlvDecodeError(f"truncated length: 0x{first:02X} needs {count} more bytes", offset)
    length = int.from_bytes(data[offset + 1 : offset + 1 + count], "big")
    # Shortest form only, so each length has one encoding: 0x81 for 128..255, 0x82 from 256,
    # 0x83 from 65,536. A longer form than needed is how parsers get confused about framing.
    shortest = (0x80, 0x100, 0x1_0000)[count - 1]
    if length < shortest:
        raise TlvDecodeError(f"non-minimal length: {length} encoded with 0x{first:02X}", offset)
    return length, offset + 1 + count


def _parse_one(data: bytes, offset: int, max_length: int) -> tuple[Tlv, int]:
    tag, length_at = _parse_tag(data, offset)
    length, value_at = _parse_length(data, length_at)
    if length > max_length:
        raise TlvDecodeError(f"length {length} exceeds the bound of {max_length} bytes", length_at)
    if value_at + length > len(data):
        raise TlvDecodeError(
            f"length {length} runs past the end of the data ({len(data) - value_at} bytes left)",
            length_at,
        )
    return Tlv(tag, data[value_at : value_at + length]), value_at + length


def _check_max_length(max_length: int) -> None:
    if not 0 <= max_length <= MAX_ENCODABLE_LENGTH:
        raise ValueError(f"max_length must be 0..{MAX_ENCODABLE_LENGTH}, got {max_length}")


def parse_one(
    data: bytes, offset: int = 0, *, max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[Tlv, int]:
    """Parse the TLV starting at ``offset``; return it and the offset just past it.

    >>> parse_one(bytes.fromhex("00 5A0112 FF"), 1)
    (Tlv(tag=0x5A, value=bytes.fromhex('12')), 4)
    """
    _check_max_length(max_length)
    raw = bytes(data)
    if not 0 <= offset <= len(raw):
        raise ValueError(f"offset {offset} is outside the data (0..{len(raw)})")
    return _parse_one(raw, offset, max_length)


def parse_tlv(data: bytes, *, max_length: int = DEFAULT_MAX_LENGTH) -> list[Tlv]:
    """Parse a concatenation of TLVs, one level deep. Empty input gives an empty list.

    Constructed values are not descended into; call :meth:`Tlv.children` for that.
    """
    _check_max_length(max_length)
    raw = bytes(data)
    result: list[Tlv] = []
    offset = 0
    while offset < len(raw):
        item, offset = _parse_one(raw, offset, max_length)
        result.append(item)
    return result


def parse_exactly_one(data: bytes, *, max_length: int = DEFAULT_MAX_LENGTH) -> Tlv:
    """Parse data that must hold exactly one TLV and nothing after it.

    >>> parse_exactly_one(bytes.fromhex("5A0112 00"))
    Traceback (most recent call last):
    ...
    sscard.tlv.TlvDecodeError: 1 trailing byte after the TLV (at byte offset 3)
    """
    _check_max_length(max_length)
    raw = bytes(data)
    item, end = _parse_one(raw, 0, max_length)
    if end != len(raw):
        extra = len(raw) - end
        raise TlvDecodeError(f"{extra} trailing byte{'s' if extra != 1 else ''} after the TLV", end)
    return item


def _check_record_no(record_no: int) -> None:
    if isinstance(record_no, bool) or not isinstance(record_no, int):
        raise TypeError(f"record number must be an int, not {type(record_no).__name__}")
    if not 1 <= record_no <= MAX_RECORD_NO:
        raise ValueError(
            f"SSSE record number must be 1..{MAX_RECORD_NO} (a one-byte primitive tag),"
            f" got {record_no}"
        )


def encode_record(record_no: int, value: bytes) -> bytes:
    """Encode an SSSE record: one TLV whose tag is the record number.

    >>> encode_record(0x03, b"3.00").hex().upper()
    '0304332E3030'
    """
    _check_record_no(record_no)
    return encode_tlv(record_no, value)


def decode_record(record_no: int, data: bytes, *, max_length: int = 0xFF) -> bytes:
    """The value of SSSE record ``record_no``: exactly one TLV whose tag is ``record_no``.

    ``max_length`` defaults to 255: a record travels in one short READ RECORD response.

    >>> decode_record(0x03, bytes.fromhex("0304332E3030"))
    b'3.00'
    >>> decode_record(0x03, bytes.fromhex("0404332E3030"))
    Traceback (most recent call last):
    ...
    sscard.tlv.TlvDecodeError: record 03 holds tag 04, expected tag 03 (at byte offset 0)
    """
    _check_record_no(record_no)
    item = parse_exactly_one(data, max_length=max_length)
    if item.tag != record_no:
        raise TlvDecodeError(
            f"record {record_no:02X} holds tag {item.tag:02X}, expected tag {record_no:02X}", 0
        )
    return item.value
