"""The social security card's file layout (社会保障卡, LD/T 32) and the project's auth profile.

Pure: records in, dataclasses out, and back. This module is the one place that knows which
byte of the card means what, and the one place that defines the bytes a card signs or MACs.

Applications and files (DOMAIN §2)::

    SSSE 社保环境      7378312E73682EC9E7BBE1B1A3D5CF  ("sx1.sh." + GBK "社会保障")
      EF05  FID EF05  issuer data 发卡机构数据   records 01..07 (record number = tag)
      EF06  FID EF06  holder data 持卡人基本信息 data elements 08 09 0A 0B 0D (see below)
    sub-applications    D156000005 + 00..04
    PKI.社会保障        504B492EC9E7BBE1B1A3D5CF
      SS.CERT.ADF1      53532E434552542E41444631
        EF 0012  SM2 signing public key (66 bytes)
        EF 0018  signing certificate (X.509 v3, SM2 / SM2-with-SM3)
        EF 0019  encryption certificate

Each record is one BER-TLV (:mod:`sscard.tlv`) whose tag is the data element's number::

    tag field         fmt   bytes  content
    01  card_sn       b     16     卡识别码  :class:`CardSn`: BCD area code (3) + RID D156000005
                                  (5) + card-unique part (8, F-padded on some cards)
    02  card_type     an    1      卡类别    one ASCII upper-case letter or digit
    03  spec_version  an    4      规范版本  ASCII "d.dd", d = generation: "3.00", "2.00", "1.00"
    04  init_org      b     12     初始化机构编号, kept as 24 upper-case hex digits
    05  issue_date    cn    4      发卡日期  BCD yyyymmdd
    06  expiry_date   cn    4      卡有效期  BCD yyyymmdd
    07  card_no       an    9      卡号      9 ASCII upper-case letters or digits
    08  citizen_id    an    18     社会保障号码 17 digits + ISO 7064 MOD 11-2 check (0-9, X)
    09  name          an    30     姓名      GBK, right-padded with 00
    0A  gender        an    1      性别      ASCII GB/T 2261.1 code: 0 unknown, 1 male, 2 female,
                                            9 unspecified
    0B  nation        cn    1      民族      two BCD digits (GB/T 3304: 01 汉族 .. 56; 97, 98)
    0D  birth_date    cn    4      出生日期  BCD yyyymmdd

Field formats: ``cn`` is compressed numeric, BCD digits right-padded with F nibbles; ``an`` is
text right-padded with 00 bytes; ``b`` is binary. Every field has the fixed size above; a
decoder rejects any other size. card_sn is binary (16 bytes, shown as 32 hex digits), not
ASCII: cards in the field answer READ RECORD 01 with ``0110 330300D15600000599110145FFFFFFFF``.

Record numbers versus tags. In EF05 the record number equals the tag, so ``00B2 rr 04 00``
reads data element rr. Public reader code shows that in EF06 the data elements sit in records
1, 2, 4, 5, 7 (3 and 6 hold the name extension and the birthplace, unused here): see
:data:`EF06_RECORD_NUMBERS`. Reading by record identifier (``read_record(tag,
by_identifier=True)``, P2 = 00) finds a data element by its tag in both files. The record maps
below (``dict[int, bytes]``) are keyed by tag and hold the whole record (the TLV) as READ
RECORD returns it. A software card should answer both forms of READ RECORD, so a terminal
that works against it also works against a real card.

Masking: the ``repr`` of :class:`IssuerData`, :class:`HolderData` and :class:`CardIdentity`
masks the card number, the citizen id, the name and the birth date by the rules of
:mod:`sscard.masking` (``A******78``, ``110*************2X``, ``张*``, ``1949-**-**``). Error
messages never quote a citizen id, a name or a PIN.

Exceptions::

    ValueError
     └── CardDataError   a field or record is invalid; .field and .record say which

Card authentication, the project profile (our choice; the official command text is not
public). A third-generation card signs :func:`card_auth_message` with its SM2 signing key
(signature r||s, 64 bytes; SM2-with-SM3, default signer id). A second-generation card MACs
:func:`legacy_auth_input` with its diversified symmetric key.

>>> CardSn.from_hex("310000D1560000050123456789ABCDEF").area_code
'310000'
>>> spec_generation("3.00")
3
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from sscard.masking import mask_birth_date, mask_card_no, mask_citizen_id, mask_name
from sscard.tlv import TlvDecodeError, decode_record, encode_record

__all__ = [
    "AUTH_DOMAIN_TAG",
    "CARD_SN_LEN",
    "CERT_ADF_AID",
    "CHALLENGE_LEN_GEN2",
    "CHALLENGE_LEN_GEN3",
    "EF05_FID",
    "EF05_TAGS",
    "EF06_FID",
    "EF06_RECORD_NUMBERS",
    "EF06_TAGS",
    "EF_ENC_CERT_FID",
    "EF_SIGN_CERT_FID",
    "EF_SIGN_PUBLIC_KEY_FID",
    "LEGACY_DOMAIN_TAG",
    "MAX_TERMINAL_ID_LEN",
    "NAME_FIELD_LEN",
    "PKI_AID",
    "RID",
    "SIGNATURE_LEN",
    "SIGN_PUBLIC_KEY_LEN",
    "SSSE_AID",
    "SUB_APP_AIDS",
    "CardAuthMessage",
    "CardDataError",
    "CardIdentity",
    "CardSn",
    "Gender",
    "HolderData",
    "IssuerData",
    "card_auth_message",
    "citizen_id_check_digit",
    "decode_ef05",
    "decode_ef06",
    "decode_identity",
    "encode_ef05",
    "encode_ef06",
    "legacy_auth_input",
    "parse_card_auth_message",
    "spec_generation",
    "validate_citizen_id",
]

# -- applications and files ----------------------------------------------------------------------

#: SSSE: "sx1.sh." + GBK "社会保障" (15 bytes).
SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
#: Registered application provider id of the social security card (中国 MOHRSS).
RID = bytes.fromhex("D156000005")
#: Sub-applications D156000005 00..04 (6 bytes each).
SUB_APP_AIDS: tuple[bytes, ...] = tuple(RID + bytes([n]) for n in range(5))
#: "PKI." + GBK "社会保障" (12 bytes).
PKI_AID = bytes.fromhex("504B492EC9E7BBE1B1A3D5CF")
#: "SS.CERT.ADF1" (12 bytes), selected after PKI_AID.
CERT_ADF_AID = bytes.fromhex("53532E434552542E41444631")
EF_SIGN_PUBLIC_KEY_FID = bytes.fromhex("0012")
EF_SIGN_CERT_FID = bytes.fromhex("0018")
EF_ENC_CERT_FID = bytes.fromhex("0019")
#: EF05 / EF06 under SSSE, selected with ``00A4000002EF05`` by the readers in the field.
EF05_FID = bytes.fromhex("EF05")
EF06_FID = bytes.fromhex("EF06")

EF05_TAGS: tuple[int, ...] = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07)
EF06_TAGS: tuple[int, ...] = (0x08, 0x09, 0x0A, 0x0B, 0x0D)
#: Where real cards keep each EF06 data element (tag -> record number) [code, two sources].
EF06_RECORD_NUMBERS: Mapping[int, int] = MappingProxyType(
    {0x08: 1, 0x09: 2, 0x0A: 4, 0x0B: 5, 0x0D: 7}
)

SIGN_PUBLIC_KEY_LEN = 66
SIGNATURE_LEN = 64
CARD_SN_LEN = 16
CHALLENGE_LEN_GEN2 = 8
CHALLENGE_LEN_GEN3 = 16
NAME_FIELD_LEN = 30
MAX_TERMINAL_ID_LEN = 32
AUTH_DOMAIN_TAG = b"SSC-AUTH-v1"
LEGACY_DOMAIN_TAG = b"SSC-LGCY"

_CARD_TYPE_LEN = 1
_SPEC_VERSION_LEN = 4
_INIT_ORG_LEN = 12
_DATE_LEN = 4
_CARD_NO_LEN = 9
_CITIZEN_ID_LEN = 18
_UPPER_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_HEX_UPPER = frozenset("0123456789ABCDEF")
_SPEC_VERSION_RE = re.compile(r"[1-3]\.[0-9]{2}")


class CardDataError(ValueError):
    """A card data field or record is invalid. ``field`` names the field, ``record`` the tag.

    Messages say what is wrong, never the personal data itself.
    """

    def __init__(self, message: str, *, field: str | None = None, record: int | None = None):
        where = ""
        if record is not None:
            where = f"record {record:02X}" + (f" ({field})" if field else "") + ": "
        elif field:
            where = f"{field}: "
        super().__init__(where + message)
        self.message = message
        self.field = field
        self.record = record

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_card_data_error, (self.message, self.field, self.record))


def _rebuild_card_data_error(message: str, field: str | None, record: int | None) -> CardDataError:
    return CardDataError(message, field=field, record=record)


# -- field codecs ---------------------------------------------------------------------------------


def _require_str(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise CardDataError(f"must be a str, not {type(value).__name__}", field=field)
    return value


def _decode_cn(field: str, value: bytes) -> str:
    """BCD digits with trailing F padding -> the digit string."""
    nibbles = value.hex().upper().rstrip("F")
    if any(ch not in _DIGITS for ch in nibbles):
        raise CardDataError(
            "cn field holds a nibble that is neither a digit nor F padding", field=field
        )
    return nibbles


def _encode_cn(digits: str, size: int) -> bytes:
    return bytes.fromhex(digits.ljust(size * 2, "F"))


def _decode_an(field: str, value: bytes) -> bytes:
    """Text with trailing 00 padding -> the text bytes (no NUL left inside)."""
    text = value.rstrip(b"\x00")
    if b"\x00" in text:
        raise CardDataError("an field has a 00 byte before its end", field=field)
    return text


def _decode_ascii(field: str, value: bytes) -> str:
    raw = _decode_an(field, value)
    if not raw.isascii():
        raise CardDataError("holds non-ASCII bytes", field=field)
    return raw.decode("ascii")


def _check_size(field: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise CardDataError(f"must be {size} bytes, got {len(value)}", field=field)


def _encode_date(value: dt.date) -> bytes:
    return bytes.fromhex(f"{value.year:04d}{value.month:02d}{value.day:02d}")


def _decode_date(field: str, value: bytes) -> dt.date:
    _check_size(field, value, _DATE_LEN)
    digits = value.hex()
    if any(ch not in _DIGITS for ch in digits):
        raise CardDataError("date must be 8 BCD digits yyyymmdd", field=field)
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise CardDataError("not a calendar date (BCD yyyymmdd)", field=field) from None


def _check_date(field: str, value: object) -> None:
    # datetime is a date subclass; a time of day has no place in a yyyymmdd field.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise CardDataError(f"must be a datetime.date, not {type(value).__name__}", field=field)


def _check_chars(field: str, value: object, size: int, allowed: frozenset[str], what: str) -> str:
    text = _require_str(field, value)
    if len(text) != size or any(ch not in allowed for ch in text):
        raise CardDataError(f"must be exactly {size} {what}", field=field)
    return text


# -- card_sn -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardSn:
    """卡识别码: 16 bytes, shown as 32 upper-case hex digits.

    Layout: bytes 0..2 issuing area code as 6 BCD digits (``310000`` Shanghai), bytes 3..7 the
    RID ``D156000005``, bytes 8..15 unique to the card (any value; some cards pad with F).

    >>> sn = CardSn.from_hex("330300D15600000599110145FFFFFFFF")
    >>> (sn.area_code, sn.unique.hex().upper(), str(sn))
    ('330300', '99110145FFFFFFFF', '330300D15600000599110145FFFFFFFF')
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes):
            raise CardDataError(f"must be bytes, not {type(self.raw).__name__}", field="card_sn")
        if len(self.raw) != CARD_SN_LEN:
            raise CardDataError(
                f"must be {CARD_SN_LEN} bytes (32 hex digits), got {len(self.raw)}", field="card_sn"
            )
        if any(ch not in _DIGITS for ch in self.raw[:3].hex()):
            raise CardDataError("bytes 1-3 must be the area code as 6 BCD digits", field="card_sn")
        if self.raw[3:8] != RID:
            raise CardDataError(
                f"bytes 4-8 must be the RID {RID.hex().upper()}, got {self.raw[3:8].hex().upper()}",
                field="card_sn",
            )

    @classmethod
    def from_hex(cls, text: str) -> CardSn:
        text = _require_str("card_sn", text)
        if len(text) != CARD_SN_LEN * 2 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
            raise CardDataError("must be 32 hex digits", field="card_sn")
        return cls(bytes.fromhex(text))

    @property
    def hex(self) -> str:
        return self.raw.hex().upper()

    @property
    def area_code(self) -> str:
        """The issuing area (GB/T 2260), 6 digits: ``310000`` for Shanghai."""
        return self.raw[:3].hex()

    @property
    def unique(self) -> bytes:
        """The 8 bytes that tell cards of one area apart."""
        return self.raw[8:]

    def __str__(self) -> str:
        return self.hex

    def __repr__(self) -> str:
        return f"CardSn.from_hex({self.hex!r})"


def _dec_card_sn(value: bytes) -> CardSn:
    return CardSn(value)


def _as_card_sn(value: bytes | CardSn) -> CardSn:
    return value if isinstance(value, CardSn) else CardSn(value)


# -- small typed fields --------------------------------------------------------------------------


def spec_generation(version: str) -> int:
    """The card generation (1, 2 or 3) of a spec version string ``d.dd``.

    >>> spec_generation("2.00")
    2
    """
    text = _require_str("spec_version", version)
    if not _SPEC_VERSION_RE.fullmatch(text):
        raise CardDataError(
            'must be ASCII "d.dd" with d.=1, 2 or 3, e.g. "3.00"', field="spec_version"
        )
    return int(text[0])


class Gender(enum.StrEnum):
    """性别, GB/T 2261.1 code as stored on the card (one ASCII digit)."""

    UNKNOWN = "0"
    MALE = "1"
    FEMALE = "2"
    UNSPECIFIED = "9"


_CITIZEN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def citizen_id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character (GB 11643) over the first 17 digits.

    >>> citizen_id_check_digit("11010519491231002")
    'X'
    """
    text = _require_str("citizen_id", first17)
    if len(text) != 17 or any(ch not in _DIGITS for ch in text):
        raise CardDataError("check digit needs exactly 17 digits", field="citizen_id")
    total = sum(int(ch) * w for ch, w in zip(text, _CITIZEN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def validate_citizen_id(citizen_id: str) -> str:
    """Return ``citizen_id`` if it is 17 digits plus a correct check character (0-9 or X)."""
    text = _require_str("citizen_id", citizen_id)
    if len(text) != _CITIZEN_ID_LEN:
        raise CardDataError(
            f"must be {_CITIZEN_ID_LEN} characters, got {len(text)}", field="citizen_id"
        )
    if any(ch not in _DIGITS for ch in text[:17]) or text[17] not in "0123456789X":
        raise CardDataError(
            "must be 17 digits and a check character 0-9 or upper-case X", field="citizen_id"
        )
    if citizen_id_check_digit(text[:17]) != text[17]:
        raise CardDataError(
            "check character does not match (ISO 7064 MOD 11-2): mistyped or misread",
            field="citizen_id",
        )
    return text


def _encode_name(name: object) -> bytes:
    text = _require_str("name", name)
    if not text.strip():
        raise CardDataError("must not be empty or blank", field="name")
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in text):
        raise CardDataError("must not contain control characters", field="name")
    try:
        raw = text.encode("gbk")
    except UnicodeEncodeError:
        raise CardDataError(
            "has a character GBK cannot encode (a rare character needs the card's name extension)",
            field="name",
        ) from None
    if len(raw) > NAME_FIELD_LEN:
        raise CardDataError(
            f"is {len(raw)} bytes in GBK; the card holds {NAME_FIELD_LEN}", field="name"
        )
    return raw.ljust(NAME_FIELD_LEN, b"\x00")


def _decode_name(value: bytes) -> str:
    _check_size("name", value, NAME_FIELD_LEN)
    raw = _decode_an("name", value)
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError:
        raise CardDataError("is not valid GBK", field="name") from None
    # Round-trip through the encoder's checks: empty names and control characters are rejected
    # on the way in as on the way out.
    _encode_name(text)
    return text


# -- EF05 / EF06 records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class IssuerData:
    """EF05, issuer data (发卡机构数据). Field formats: see the module docstring. Its repr
    masks the card number."""

    card_sn: CardSn
    card_type: str
    spec_version: str
    init_org: str
    issue_date: dt.date
    expiry_date: dt.date
    card_no: str

    def __post_init__(self) -> None:
        if not isinstance(self.card_sn, CardSn):
            raise CardDataError("must be a CardSn", field="card_sn")
        _check_chars(
            "card_type", self.card_type, _CARD_TYPE_LEN, _UPPER_ALNUM, "upper-case letter or digit"
        )
        spec_generation(self.spec_version)
        _check_chars(
            "init_org", self.init_org, _INIT_ORG_LEN * 2, _HEX_UPPER, "upper-case hex digits"
        )
        _check_date("issue_date", self.issue_date)
        _check_date("expiry_date", self.expiry_date)
        _check_chars(
            "card_no", self.card_no, _CARD_NO_LEN, _UPPER_ALNUM, "upper-case letters or digits"
        )

    @property
    def generation(self) -> int:
        """3 for a third-generation card, 2 or 1 before."""
        return spec_generation(self.spec_version)

    def __repr__(self) -> str:
        return f"IssuerData({_issuer_repr(self)})"


@dataclass(frozen=True, slots=True, repr=False)
class HolderData:
    """EF06, holder data (持卡人基本信息). Its repr masks the personal data."""

    citizen_id: str
    name: str
    gender: Gender
    nation: str
    birth_date: dt.date

    def __post_init__(self) -> None:
        validate_citizen_id(self.citizen_id)
        _encode_name(self.name)
        if not isinstance(self.gender, Gender):
            raise CardDataError("must be a Gender", field="gender")
        _check_chars("nation", self.nation, 2, _DIGITS, "digits (GB/T 3304 code)")
        _check_date("birth_date", self.birth_date)

    def __repr__(self) -> str:
        return f"HolderData({_holder_repr(self)})"


def _issuer_repr(issuer: IssuerData | CardIdentity) -> str:
    return (
        f"card_sn={issuer.card_sn.hex}, card_type={issuer.card_type!r}, "
        f"spec_version={issuer.spec_version!r}, init_org={issuer.init_org!r}, "
        f"issue_date={issuer.issue_date.isoformat()}, "
        f"expiry_date={issuer.expiry_date.isoformat()}, "
        f"card_no={mask_card_no(issuer.card_no)!r}"
    )


def _holder_repr(holder: HolderData | CardIdentity) -> str:
    return (
        f"citizen_id={mask_citizen_id(holder.citizen_id)!r}, name={mask_name(holder.name)!r}, "
        f"gender={holder.gender.name}, nation={holder.nation!r}, "
        f"birth_date={mask_birth_date(holder.birth_date)}"
    )


@dataclass(frozen=True, slots=True, repr=False)
class CardIdentity:
    """What a terminal reads from EF05 and EF06: the card and its holder. Repr is masked.

    Build it from parts with :meth:`from_parts`, or from records with :func:`decode_identity`.
    """

    card_sn: CardSn
    card_type: str
    spec_version: str
    init_org: str
    issue_date: dt.date
    expiry_date: dt.date
    card_no: str
    citizen_id: str
    name: str
    gender: Gender
    nation: str
    birth_date: dt.date

    def __post_init__(self) -> None:
        # One set of rules: the parts validate themselves.
        _ = self.issuer, self.holder

    @classmethod
    def from_parts(cls, issuer: IssuerData, holder: HolderData) -> CardIdentity:
        return cls(
            issuer.card_sn,
            issuer.card_type,
            issuer.spec_version,
            issuer.init_org,
            issuer.issue_date,
            issuer.expiry_date,
            issuer.card_no,
            holder.citizen_id,
            holder.name,
            holder.gender,
            holder.nation,
            holder.birth_date,
        )

    @property
    def issuer(self) -> IssuerData:
        return IssuerData(
            self.card_sn,
            self.card_type,
            self.spec_version,
            self.init_org,
            self.issue_date,
            self.expiry_date,
            self.card_no,
        )

    @property
    def holder(self) -> HolderData:
        return HolderData(self.citizen_id, self.name, self.gender, self.nation, self.birth_date)

    @property
    def generation(self) -> int:
        return spec_generation(self.spec_version)

    def __repr__(self) -> str:
        return f"CardIdentity({_issuer_repr(self)}, {_holder_repr(self)})"


def encode_ef05(identity: CardIdentity | IssuerData) -> dict[int, bytes]:
    """EF05 records 01..07, keyed by record number (= tag), each a complete TLV record."""
    issuer = identity.issuer if isinstance(identity, CardIdentity) else identity
    values = {
        0x01: issuer.card_sn.raw,
        0x02: issuer.card_type.encode("ascii"),
        0x03: issuer.spec_version.encode("ascii"),
        0x04: bytes.fromhex(issuer.init_org),
        0x05: _encode_date(issuer.issue_date),
        0x06: _encode_date(issuer.expiry_date),
        0x07: issuer.card_no.encode("ascii"),
    }
    return {tag: encode_record(tag, value) for tag, value in values.items()}


def encode_ef06(identity: CardIdentity | HolderData) -> dict[int, bytes]:
    """EF06 data elements 08, 09, 0A, 0B, 0D, keyed by tag, each a complete TLV record.

    On real cards these sit in records 1, 2, 4, 5, 7: see :data:`EF06_RECORD_NUMBERS`.
    """
    holder = identity.holder if isinstance(identity, CardIdentity) else identity
    values = {
        0x08: holder.citizen_id.encode("ascii"),
        0x09: _encode_name(holder.name),
        0x0A: holder.gender.value.encode("ascii"),
        0x0B: _encode_cn(holder.nation, 1),
        0x0D: _encode_date(holder.birth_date),
    }
    return {tag: encode_record(tag, value) for tag, value in values.items()}


def _record_values(
    records: Mapping[int, bytes], tags: tuple[int, ...], file: str
) -> dict[int, bytes]:
    """Unwrap each expected record's TLV; other records in the map are ignored."""
    values: dict[int, bytes] = {}
    for tag in tags:
        if tag not in records:
            raise CardDataError(f"{file} record {tag:02X} is missing", record=tag)
        raw = records[tag]
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise CardDataError(f"must be bytes, not {type(raw).__name__}", record=tag)
        try:
            values[tag] = decode_record(tag, bytes(raw))
        except TlvDecodeError as exc:
            raise CardDataError(f"not a valid TLV record: {exc}", record=tag) from exc
    return values


_T = TypeVar("_T")


def _in_record(tag: int, decode: Callable[[bytes], _T], value: bytes) -> _T:
    """Run a field decoder and name the record in its error."""
    try:
        return decode(value)
    except CardDataError as exc:
        raise CardDataError(exc.message, field=exc.field, record=tag) from exc


def _dec_ascii_field(
    field: str, size: int, allowed: frozenset[str], what: str
) -> Callable[[bytes], str]:
    def decode(value: bytes) -> str:
        _check_size(field, value, size)
        return _check_chars(field, _decode_ascii(field, value), size, allowed, what)

    return decode


def _dec_spec_version(value: bytes) -> str:
    _check_size("spec_version", value, _SPEC_VERSION_LEN)
    text = _decode_ascii("spec_version", value)
    spec_generation(text)
    return text


def _dec_init_org(value: bytes) -> str:
    _check_size("init_org", value, _INIT_ORG_LEN)
    return value.hex().upper()


def _dec_citizen_id(value: bytes) -> str:
    _check_size("citizen_id", value, _CITIZEN_ID_LEN)
    return validate_citizen_id(_decode_ascii("citizen_id", value))


def _dec_gender(value: bytes) -> Gender:
    _check_size("gender", value, 1)
    text = _decode_ascii("gender", value)
    try:
        return Gender(text)
    except ValueError:
        raise CardDataError("must be one of the codes 0, 1, 2, 9", field="gender") from None


def _dec_nation(value: bytes) -> str:
    _check_size("nation", value, 1)
    digits = _decode_cn("nation", value)
    if len(digits) != 2:
        raise CardDataError("must be two BCD digits", field="nation")
    return digits


def _dec_date(field: str) -> Callable[[bytes], dt.date]:
    def decode(value: bytes) -> dt.date:
        return _decode_date(field, value)

    return decode


def decode_ef05(records: Mapping[int, bytes]) -> IssuerData:
    """Decode EF05 from its records (tag -> whole TLV record); CardDataError on any defect.

    Records other than 01..07 are ignored.
    """
    v = _record_values(records, EF05_TAGS, "EF05")
    return IssuerData(
        card_sn=_in_record(0x01, _dec_card_sn, v[0x01]),
        card_type=_in_record(
            0x02,
            _dec_ascii_field(
                "card_type", _CARD_TYPE_LEN, _UPPER_ALNUM, "upper-case letter or digit"
            ),
            v[0x02],
        ),
        spec_version=_in_record(0x03, _dec_spec_version, v[0x03]),
        init_org=_in_record(0x04, _dec_init_org, v[0x04]),
        issue_date=_in_record(0x05, _dec_date("issue_date"), v[0x05]),
        expiry_date=_in_record(0x06, _dec_date("expiry_date"), v[0x06]),
        card_no=_in_record(
            0x07,
            _dec_ascii_field("card_no", _CARD_NO_LEN, _UPPER_ALNUM, "upper-case letters or digits"),
            v[0x07],
        ),
    )


def decode_ef06(records: Mapping[int, bytes]) -> HolderData:
    """Decode EF06 from its records (tag -> whole TLV record); CardDataError on any defect.

    Records other than 08, 09, 0A, 0B, 0D are ignored.
    """
    v = _record_values(records, EF06_TAGS, "EF06")
    return HolderData(
        citizen_id=_in_record(0x08, _dec_citizen_id, v[0x08]),
        name=_in_record(0x09, _decode_name, v[0x09]),
        gender=_in_record(0x0A, _dec_gender, v[0x0A]),
        nation=_in_record(0x0B, _dec_nation, v[0x0B]),
        birth_date=_in_record(0x0D, _dec_date("birth_date"), v[0x0D]),
    )


def decode_identity(ef05: Mapping[int, bytes], ef06: Mapping[int, bytes]) -> CardIdentity:
    """Both files at once: what a terminal reads before it asks for a challenge."""
    return CardIdentity.from_parts(decode_ef05(ef05), decode_ef06(ef06))


# -- card authentication profile ----------------------------------------------------------------


def _check_terminal_id(terminal_id: object) -> bytes:
    text = _require_str("terminal_id", terminal_id)
    # Printable ASCII without space: one spelling per terminal, nothing a log could mangle.
    if not 1 <= len(text) <= MAX_TERMINAL_ID_LEN or any(not 0x21 <= ord(ch) <= 0x7E for ch in text):
        raise CardDataError(
            f"must be 1..{MAX_TERMINAL_ID_LEN} printable ASCII characters without spaces",
            field="terminal_id",
        )
    return text.encode("ascii")


@dataclass(frozen=True, slots=True)
class CardAuthMessage:
    """The message a third-generation card signs (project profile ``SSC-AUTH-v1``).

    Byte layout (every field is one length byte, then the field)::

        offset  size  content
        0       1     0x0B, length of the domain tag
        1       11    b"SSC-AUTH-v1"
        12      1     0x10, length of the challenge
        13      16    challenge from the gateway (GET CHALLENGE length on a 3rd-gen card)
        29      1     0x10, length of card_sn
        30      16    card_sn (卡识别码, EF05 record 01)
        46      1     n, length of the terminal id (1..32)
        47      n     terminal id, printable ASCII

    47 + n bytes in all (48..79): it fits one short INTERNAL AUTHENTICATE, so the terminal
    sends exactly these bytes as the command data and the card checks that the card_sn inside
    is its own before it signs. The card signs with SM2-with-SM3 and the default signer id;
    the signature is r||s, 64 bytes. The domain tag keeps this signature from ever being valid
    for any other purpose, and the length bytes make the split into fields unambiguous.
    """

    challenge: bytes
    card_sn: CardSn
    terminal_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.challenge, bytes) or len(self.challenge) != CHALLENGE_LEN_GEN3:
            raise CardDataError(f"must be {CHALLENGE_LEN_GEN3} bytes", field="challenge")
        if not isinstance(self.card_sn, CardSn):
            raise CardDataError("must be a CardSn", field="card_sn")
        _check_terminal_id(self.terminal_id)

    def to_bytes(self) -> bytes:
        terminal = _check_terminal_id(self.terminal_id)
        parts = (AUTH_DOMAIN_TAG, self.challenge, self.card_sn.raw, terminal)
        message = b"".join(bytes([len(part)]) + part for part in parts)
        assert len(message) == 47 + len(terminal)
        return message

    @classmethod
    def from_bytes(cls, message: bytes) -> CardAuthMessage:
        """Strict inverse of :meth:`to_bytes`; CardDataError(field="auth_message") if malformed."""
        raw = bytes(message)
        fields: list[bytes] = []
        offset = 0
        for _ in range(4):
            if offset >= len(raw):
                raise CardDataError(f"truncated at byte {offset}", field="auth_message")
            size = raw[offset]
            if offset + 1 + size > len(raw):
                raise CardDataError(
                    f"field at byte {offset} runs past the end", field="auth_message"
                )
            fields.append(raw[offset + 1 : offset + 1 + size])
            offset += 1 + size
        if offset != len(raw):
            extra = len(raw) - offset
            raise CardDataError(
                f"{extra} trailing byte{'s' if extra != 1 else ''}", field="auth_message"
            )
        if fields[0] != AUTH_DOMAIN_TAG:
            raise CardDataError("unknown domain tag (not SSC-AUTH-v1)", field="auth_message")
        try:
            terminal_id = fields[3].decode("ascii")
        except UnicodeDecodeError:
            raise CardDataError("terminal id is not ASCII", field="terminal_id") from None
        return cls(fields[1], CardSn(fields[2]), terminal_id)


def card_auth_message(challenge: bytes, card_sn: bytes | CardSn, terminal_id: str) -> bytes:
    r"""The exact bytes a third-generation card signs: see :class:`CardAuthMessage`.

    ``challenge`` 16 bytes, ``card_sn`` 16 bytes (or a :class:`CardSn`), ``terminal_id``
    1..32 printable ASCII characters. Result: 47 + len(terminal_id) bytes.

    >>> msg = card_auth_message(bytes(range(16)),
    ...                         bytes.fromhex("310000D1560000050123456789ABCDEF"), "T1")
    >>> len(msg), msg[:12], msg[-3:]
    (49, b'\x0bSSC-AUTH-v1', b'\x02T1')
    >>> msg.hex().upper()
    '0B5353432D415554482D763110000102030405060708090A0B0C0D0E0F10310000D1560000050123456789ABCDEF025431'
    """
    return CardAuthMessage(challenge, _as_card_sn(card_sn), terminal_id).to_bytes()


def parse_card_auth_message(message: bytes) -> CardAuthMessage:
    """Split a signed message back into its fields (what a software card does before signing)."""
    return CardAuthMessage.from_bytes(message)


def legacy_auth_input(challenge: bytes, card_sn: bytes | CardSn) -> bytes:
    """What a second-generation card MACs with its diversified key (project profile).

    Layout, 32 bytes: ``b"SSC-LGCY"`` (8) || challenge (8, GET CHALLENGE on a 2nd-gen card) ||
    card_sn (16). 32 bytes is a whole number of blocks for both 3DES (8) and SM4 (16), so no
    padding question arises before the MAC algorithm's own padding. The card is already bound
    by its diversified key; card_sn in the input binds the MAC to the card a second time.

    >>> sn = bytes.fromhex("310000D1560000050123456789ABCDEF")
    >>> data = legacy_auth_input(bytes.fromhex("0102030405060708"), sn)
    >>> len(data), data[:8], data[8:16].hex().upper(), data[16:] == sn
    (32, b'SSC-LGCY', '0102030405060708', True)
    """
    if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_LEN_GEN2:
        raise CardDataError(f"must be {CHALLENGE_LEN_GEN2} bytes", field="challenge")
    result = LEGACY_DOMAIN_TAG + challenge + _as_card_sn(card_sn).raw
    assert len(result) == 32
    return result
