"""A strict, minimal DER reader for the few ASN.1 types an X.509 certificate uses.

Why not asn1crypto here: its lazy parser costs ~0.6 ms to reach every field of a card
certificate (as much as the SM2 verify itself) and accepts BER that DER forbids (indefinite and
non-minimal lengths). This reader works on offsets into the original bytes, so a TLV is never
copied until a field is extracted, and it rejects anything that is not DER:

- low tag numbers only (< 31): X.509 never needs the high-tag-number form;
- definite lengths, minimally encoded, at most 3 length octets (16 MiB, far beyond any
  certificate; the caller bounds the input much tighter);
- children exactly fill their parent; INTEGERs minimal; BOOLEAN is 00 or FF.

Errors are :class:`DerError` carrying the offset; the certificate layer turns them into
``CERT_MALFORMED``. asn1crypto still builds certificates (:mod:`._build`), and the tests parse
every certificate with both to cross-check this reader.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_UTF8_STRING = 0x0C
TAG_PRINTABLE_STRING = 0x13
TAG_TELETEX_STRING = 0x14
TAG_IA5_STRING = 0x16
TAG_UTC_TIME = 0x17
TAG_GENERALIZED_TIME = 0x18
TAG_UNIVERSAL_STRING = 0x1C
TAG_BMP_STRING = 0x1E
TAG_SEQUENCE = 0x30
TAG_SET = 0x31

_MAX_LENGTH_OCTETS = 3


class DerError(ValueError):
    """Input is not strict DER of the expected shape; ``offset`` is where it went wrong."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


class Tlv(NamedTuple):
    """One TLV in a buffer: ``data[start:end]`` is the whole TLV, ``data[body:end]`` its value."""

    tag: int
    start: int
    body: int
    end: int


def read_tlv(data: bytes, pos: int, limit: int) -> Tlv:
    """The TLV starting at ``pos``, which must end at or before ``limit``."""
    if pos + 2 > limit:
        raise DerError("truncated TLV header", pos)
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high-tag-number form is not used in X.509", pos)
    first = data[pos + 1]
    body = pos + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError("indefinite length is BER, not DER", pos + 1)
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS:
            raise DerError("length too large", pos + 1)
        if body + count > limit:
            raise DerError("truncated length", pos + 1)
        if data[body] == 0:
            raise DerError("non-minimal length (leading zero octet)", pos + 1)
        length = int.from_bytes(data[body : body + count], "big")
        if length < 0x80:
            raise DerError("non-minimal length (long form for < 128)", pos + 1)
        body += count
    end = body + length
    if end > limit:
        raise DerError("truncated value", body)
    return Tlv(tag, pos, body, end)


def expect(data: bytes, pos: int, limit: int, tag: int, what: str) -> Tlv:
    tlv = read_tlv(data, pos, limit)
    if tlv.tag != tag:
        raise DerError(f"{what}: expected tag {tag:#04x}, got {tlv.tag:#04x}", pos)
    return tlv


def children(data: bytes, parent: Tlv, *, max_count: int = 64) -> list[Tlv]:
    """The TLVs that make up a constructed value, which they must exactly fill."""
    if not parent.tag & 0x20:
        raise DerError("expected a constructed value", parent.start)
    out: list[Tlv] = []
    pos = parent.body
    while pos < parent.end:
        if len(out) == max_count:
            raise DerError(f"more than {max_count} elements", pos)
        tlv = read_tlv(data, pos, parent.end)
        out.append(tlv)
        pos = tlv.end
    return out


def value(data: bytes, tlv: Tlv) -> bytes:
    return data[tlv.body : tlv.end]


def der_bytes(data: bytes, tlv: Tlv) -> bytes:
    return data[tlv.start : tlv.end]


def decode_integer(data: bytes, tlv: Tlv) -> int:
    if tlv.tag != TAG_INTEGER:
        raise DerError("expected INTEGER", tlv.start)
    raw = value(data, tlv)
    if not raw:
        raise DerError("empty INTEGER", tlv.start)
    if len(raw) > 1 and (
        (raw[0] == 0x00 and not raw[1] & 0x80) or (raw[0] == 0xFF and raw[1] & 0x80)
    ):
        raise DerError("non-minimal INTEGER", tlv.body)
    return int.from_bytes(raw, "big", signed=True)


def decode_boolean(data: bytes, tlv: Tlv) -> bool:
    if tlv.tag != TAG_BOOLEAN or tlv.end - tlv.body != 1:
        raise DerError("expected one-octet BOOLEAN", tlv.start)
    octet = data[tlv.body]
    if octet not in (0x00, 0xFF):
        raise DerError("DER BOOLEAN must be 00 or FF", tlv.body)
    return octet == 0xFF


def decode_oid(data: bytes, tlv: Tlv) -> str:
    """Dotted form of an OBJECT IDENTIFIER (e.g. ``1.2.156.10197.1.501``)."""
    if tlv.tag != TAG_OID:
        raise DerError("expected OBJECT IDENTIFIER", tlv.start)
    dotted = _oid_text(value(data, tlv))
    if dotted is None:
        raise DerError("malformed OBJECT IDENTIFIER", tlv.start)
    return dotted


@lru_cache(maxsize=256)
def _oid_text(raw: bytes) -> str | None:
    # A certificate repeats a handful of OIDs (name attributes, extensions); memoising the
    # decode by content bytes is a third of the parse time saved. Bounded, pure.
    if not raw or raw[-1] & 0x80:
        return None
    arcs: list[int] = []
    acc = 0
    fresh = True
    for octet in raw:
        if fresh and octet == 0x80:
            return None  # non-minimal arc
        acc = (acc << 7) | (octet & 0x7F)
        fresh = not octet & 0x80
        if fresh:
            arcs.append(acc)
            acc = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def decode_bit_string(data: bytes, tlv: Tlv) -> tuple[bytes, int]:
    """(octets, unused bit count); DER requires the unused bits to be zero."""
    if tlv.tag != TAG_BIT_STRING or tlv.end == tlv.body:
        raise DerError("expected BIT STRING", tlv.start)
    unused = data[tlv.body]
    octets = data[tlv.body + 1 : tlv.end]
    if unused > 7 or (unused and not octets):
        raise DerError("bad BIT STRING unused-bit count", tlv.body)
    if unused and octets[-1] & ((1 << unused) - 1):
        raise DerError("BIT STRING unused bits are not zero", tlv.end - 1)
    return octets, unused


def decode_time(data: bytes, tlv: Tlv) -> datetime:
    """UTCTime ``YYMMDDHHMMSSZ`` or GeneralizedTime ``YYYYMMDDHHMMSSZ`` (RFC 5280 §4.1.2.5).

    RFC 5280 fixes both forms to whole seconds in UTC, so anything else is rejected rather
    than interpreted.
    """
    raw = value(data, tlv)
    if tlv.tag == TAG_UTC_TIME and len(raw) == 13:
        yy = _digits(raw[0:2], tlv)
        year = 1900 + yy if yy >= 50 else 2000 + yy  # RFC 5280: YY >= 50 is 19YY
        rest = raw[2:]
    elif tlv.tag == TAG_GENERALIZED_TIME and len(raw) == 15:
        year = _digits(raw[0:4], tlv)
        rest = raw[4:]
    else:
        raise DerError("time must be UTCTime YYMMDDHHMMSSZ or GeneralizedTime", tlv.start)
    if rest[-1:] != b"Z":
        raise DerError("time must end in Z (UTC)", tlv.start)
    try:
        return datetime(
            year,
            _digits(rest[0:2], tlv),
            _digits(rest[2:4], tlv),
            _digits(rest[4:6], tlv),
            _digits(rest[6:8], tlv),
            _digits(rest[8:10], tlv),
            tzinfo=UTC,
        )
    except ValueError:
        raise DerError("time is not a calendar date", tlv.start) from None


def _digits(raw: bytes, tlv: Tlv) -> int:
    if not raw.isdigit():
        raise DerError("time field is not decimal digits", tlv.start)
    return int(raw)


def decode_string(data: bytes, tlv: Tlv) -> str:
    """A directory string attribute value; other types come back as RFC 4514 ``#hex``."""
    raw = value(data, tlv)
    try:
        if tlv.tag in (TAG_UTF8_STRING,):
            return raw.decode("utf-8")
        if tlv.tag in (TAG_PRINTABLE_STRING, TAG_IA5_STRING):
            return raw.decode("ascii")
        if tlv.tag == TAG_BMP_STRING:
            return raw.decode("utf-16-be")
        if tlv.tag == TAG_UNIVERSAL_STRING:
            return raw.decode("utf-32-be")
        if tlv.tag == TAG_TELETEX_STRING:
            # T.61 is in practice used as Latin-1; good enough for display and comparison.
            return raw.decode("latin-1")
    except UnicodeDecodeError:
        raise DerError("string value does not decode", tlv.body) from None
    return "#" + der_bytes(data, tlv).hex()
