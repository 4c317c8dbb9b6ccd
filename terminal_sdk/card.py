"""The social security card as a terminal uses it: read, verify the PIN, authenticate.

:class:`SocialSecurityCard` speaks APDUs (built by :mod:`sscard.apdu`, decoded by
:mod:`sscard.layout`) through an :class:`~terminal_sdk.readers.transport.ApduTransport`, and
raises :mod:`terminal_sdk.errors` only: a card status word becomes WrongPin, PinBlocked,
CardLocked, UnsupportedCard or CardRefused; undecodable card data CardDataInvalid.

Each operation selects what it needs itself (SSSE, or PKI then SS.CERT.ADF1): a few extra
SELECTs cost less than an operation that fails because another one left the card elsewhere.

The basic information (:class:`BasicInfo`) follows the national card-reader interface's
``iReadCardBas``: eleven fields, each followed by ``|`` (so the string ends with ``|``)::

    #   field                       from
    1   发卡地区行政区划代码 area_code   卡识别码's first 6 digits (EF05 01)
    2   社会保障号码 citizen_id         EF06 08
    3   卡号 card_no                  EF05 07
    4   卡识别码 card_sn              EF05 01, 32 upper-case hex digits
    5   姓名 name                     EF06 09
    6   卡复位信息 atr                the ATR, upper-case hex
    7   规范版本 spec_version          EF05 03, e.g. 3.00
    8   发卡日期 issue_date            EF05 05, yyyymmdd
    9   卡有效期 expiry_date           EF05 06, yyyymmdd
    10  终端机编号 terminal_no          the terminal's configuration (PSAM terminal number)
    11  终端设备号 device_no            the terminal's configuration (device serial number)

e.g. ``310000|11010519491231002X|A12345678|310000D1560000050123456789ABCDEF|张三|3B8C...|3.00|
20190115|20290115|000000000001|POS-01|``. The string holds personal data: it is for the HIS
that asked for it, never for a log. :class:`BasicInfo`'s repr is masked (:mod:`sscard.masking`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import ClassVar, Final

from sscard import apdu
from sscard.apdu import CardStatusError
from sscard.layout import (
    CERT_ADF_AID,
    CHALLENGE_LEN_GEN2,
    EF05_FID,
    EF05_TAGS,
    EF06_FID,
    EF06_TAGS,
    EF_SIGN_CERT_FID,
    PKI_AID,
    SIGNATURE_LEN,
    SSSE_AID,
    CardDataError,
    CardIdentity,
    CardSn,
    IssuerData,
    card_auth_message,
    decode_ef05,
    decode_ef06,
    spec_generation,
)
from sscard.masking import mask_card_no, mask_citizen_id, mask_name
from sscard.tlv import decode_record
from terminal_sdk.errors import (
    CardDataInvalid,
    CardError,
    CardLocked,
    CardRefused,
    NoCard,
    PinBlocked,
    UnsupportedCard,
    WrongPin,
)
from terminal_sdk.readers.base import CardInfo, Reader
from terminal_sdk.readers.trace import ApduTrace
from terminal_sdk.readers.transport import ApduTransport

__all__ = ["BASIC_INFO_SEPARATOR", "BasicInfo", "CardGeneration", "SocialSecurityCard"]

BASIC_INFO_SEPARATOR: Final = "|"
_SPEC_VERSION_TAG: Final = 0x03
_LEGACY_CRYPTOGRAM_LEN: Final = 8
_SW_END_OF_FILE: Final = 0x6282  # "end of file reached before Le bytes": data is still good
_READ_CHUNK: Final = 256
_MAX_FILE_LEN: Final = 0x8000  # READ BINARY's 15-bit offset reaches no further


@dataclass(frozen=True, slots=True)
class CardGeneration:
    """What :meth:`SocialSecurityCard.detect_generation` found.

    ``generation`` comes from the spec version (EF05 03: "3.00" → 3); ``has_pki`` says whether
    the PKI application selects. A card claiming 3.xx without PKI is refused as invalid: it
    could not do SM2 card authentication, and the gateway would ask it to.
    """

    spec_version: str
    generation: int
    has_pki: bool

    @property
    def is_third_generation(self) -> bool:
        return self.generation == 3


@dataclass(frozen=True, slots=True, repr=False)
class BasicInfo:
    """The fields of ``iReadCardBas``, in its order (see the module docstring)."""

    area_code: str
    citizen_id: str
    card_no: str
    card_sn: str
    name: str
    atr: bytes
    spec_version: str
    issue_date: dt.date
    expiry_date: dt.date
    terminal_no: str = ""
    device_no: str = ""

    #: The Chinese field names of the standard, in output order.
    FIELD_NAMES_ZH: ClassVar[tuple[str, ...]] = (
        "发卡地区行政区划代码",
        "社会保障号码",
        "卡号",
        "卡识别码",
        "姓名",
        "卡复位信息",
        "规范版本",
        "发卡日期",
        "卡有效期",
        "终端机编号",
        "终端设备号",
    )

    @classmethod
    def from_identity(
        cls, identity: CardIdentity, atr: bytes, *, terminal_no: str = "", device_no: str = ""
    ) -> BasicInfo:
        return cls(
            area_code=identity.card_sn.area_code,
            citizen_id=identity.citizen_id,
            card_no=identity.card_no,
            card_sn=identity.card_sn.hex,
            name=identity.name,
            atr=atr,
            spec_version=identity.spec_version,
            issue_date=identity.issue_date,
            expiry_date=identity.expiry_date,
            terminal_no=terminal_no,
            device_no=device_no,
        )

    def values(self) -> tuple[str, ...]:
        """The eleven fields as the strings ``iReadCardBas`` writes, in order."""
        return (
            self.area_code,
            self.citizen_id,
            self.card_no,
            self.card_sn,
            self.name,
            self.atr.hex().upper(),
            self.spec_version,
            f"{self.issue_date:%Y%m%d}",
            f"{self.expiry_date:%Y%m%d}",
            self.terminal_no,
            self.device_no,
        )

    def to_ireadcardbas(self) -> str:
        """``f1|f2|...|f11|``; ValueError if a field holds the separator (none can be split)."""
        values = self.values()
        for label, value in zip(self.FIELD_NAMES_ZH, values, strict=True):
            if BASIC_INFO_SEPARATOR in value:
                raise ValueError(f"{label} contains '{BASIC_INFO_SEPARATOR}'")
        return BASIC_INFO_SEPARATOR.join(values) + BASIC_INFO_SEPARATOR

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["citizen_id"] = mask_citizen_id(self.citizen_id)
        shown["name"] = mask_name(self.name)
        shown["card_no"] = mask_card_no(self.card_no)
        shown["atr"] = self.atr.hex().upper()
        shown["issue_date"] = self.issue_date.isoformat()
        shown["expiry_date"] = self.expiry_date.isoformat()
        return "BasicInfo(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _translate(exc: CardStatusError) -> CardError:
    if isinstance(exc, apdu.WrongPin):
        return WrongPin(exc.tries_left, sw=exc.sw)
    if isinstance(exc, apdu.PinBlocked):
        return PinBlocked(sw=exc.sw)
    if isinstance(exc, apdu.ApplicationLocked):
        return CardLocked(sw=exc.sw)
    if isinstance(exc, apdu.SecurityNotSatisfied):
        return CardRefused(
            "The card asks for the cardholder's PIN first.",
            message_zh="卡片要求先验证持卡人密码。",
            sw=exc.sw,
        )
    return CardRefused(sw=exc.sw, detail=str(exc))


@contextlib.contextmanager
def _card_errors() -> Iterator[None]:
    """Turn sscard's errors into terminal_sdk's (the SDK's callers catch one hierarchy)."""
    try:
        yield
    except CardStatusError as exc:
        raise _translate(exc) from exc
    except CardDataError as exc:
        # CardDataError messages name the field, never its content.
        raise CardDataInvalid(detail=str(exc)) from exc


def _der_length(head: bytes) -> int:
    """Total length of the DER SEQUENCE that ``head`` starts (header included)."""
    if len(head) < 2 or head[0] != 0x30:
        raise CardDataInvalid(detail="certificate file does not start with a DER SEQUENCE")
    first = head[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 2 or len(head) < 2 + count:
        raise CardDataInvalid(detail="certificate length is indefinite or too large")
    return 2 + count + int.from_bytes(head[2 : 2 + count], "big")


class SocialSecurityCard:
    """A connected social security card, second or third generation.

    Build it on a transport (``SocialSecurityCard(ApduTransport(reader))``) or let
    :meth:`connect` do both. Not thread-safe: one transaction at a time, as on the card.
    """

    def __init__(self, transport: ApduTransport) -> None:
        self.transport = transport
        self._issuer: IssuerData | None = None
        # The connection the cached issuer data was read on. Readers make a new CardInfo per
        # connect, and two cards of one batch share an ATR, so identity, not equality.
        self._issuer_for: CardInfo | None = None

    @classmethod
    def connect(
        cls, reader: Reader, reader_name: str | None = None, *, trace: ApduTrace | None = None
    ) -> SocialSecurityCard:
        """Connect ``reader`` (exclusively) and wrap the card."""
        reader.connect(reader_name)
        return cls(ApduTransport(reader, trace=trace))

    @property
    def trace(self) -> ApduTrace:
        return self.transport.trace

    @property
    def info(self) -> CardInfo:
        card = self.transport.card
        if card is None:
            raise NoCard(detail="the reader is not connected")
        return card

    # -- reading ------------------------------------------------------------------------------

    def detect_generation(self) -> CardGeneration:
        """Spec version (EF05 03) and whether the PKI application selects. 4 APDUs."""
        with _card_errors():
            self._send(apdu.select_aid(SSSE_AID))
            self._send(apdu.select_file(EF05_FID))
            record = self._send(apdu.read_record(_SPEC_VERSION_TAG))
            # Record 03 alone: the generation needs no more of EF05.
            version = _decode_spec_version(record)
            generation = spec_generation(version)
            try:
                self._send(apdu.select_aid(PKI_AID))
                has_pki = True
            except apdu.FileNotFound:
                has_pki = False
        if generation == 3 and not has_pki:
            raise CardDataInvalid(detail=f"spec version {version} but no PKI application")
        return CardGeneration(version, generation, has_pki)

    def read_issuer_data(self) -> IssuerData:
        """EF05 (发卡机构数据): nothing personal in it. Cached for this connection."""
        if self._issuer is None or self._issuer_for is not self.transport.card:
            self._issuer = None
            connection = self.transport.card
            with _card_errors():
                self._send(apdu.select_aid(SSSE_AID))
                self._send(apdu.select_file(EF05_FID))
                # In EF05 the record number is the tag (sscard.layout): read by number, as the
                # readers in the field do.
                records = {tag: self._send(apdu.read_record(tag)) for tag in EF05_TAGS}
                self._issuer = decode_ef05(records)
            self._issuer_for = connection
        return self._issuer

    def read_identity(self) -> CardIdentity:
        """EF05 and EF06: the card and its holder (repr masked)."""
        issuer = self.read_issuer_data()
        with _card_errors():
            self._send(apdu.select_aid(SSSE_AID))
            self._send(apdu.select_file(EF06_FID))
            # EF06 keeps its data elements in records 1, 2, 4, 5, 7 on real cards: read by
            # record identifier (the tag), which finds them wherever they sit.
            records = {
                tag: self._send(apdu.read_record(tag, by_identifier=True)) for tag in EF06_TAGS
            }
            holder = decode_ef06(records)
            return CardIdentity.from_parts(issuer, holder)

    def read_basic_info(self, *, terminal_no: str = "", device_no: str = "") -> BasicInfo:
        """The ``iReadCardBas`` fields; ``terminal_no`` / ``device_no`` come from the caller's
        configuration (the card does not hold them)."""
        identity = self.read_identity()
        return BasicInfo.from_identity(
            identity, self.info.atr, terminal_no=terminal_no, device_no=device_no
        )

    @property
    def card_sn(self) -> CardSn:
        return self.read_issuer_data().card_sn

    def check_present(self) -> None:
        """One SELECT: CardRemoved if the card left the reader (or was swapped) since connect.

        Flows call it before committing money: a clerk who pulled the card meant to stop.
        """
        with _card_errors():
            self._send(apdu.select_aid(SSSE_AID))

    # -- PIN ----------------------------------------------------------------------------------

    def verify_pin(self, pin: str) -> None:
        """VERIFY the cardholder's PIN; returns when right. WrongPin(.tries_left), PinBlocked.

        ValueError (before anything is sent) if ``pin`` is not 4..12 ASCII digits; no message
        ever contains the PIN.
        """
        command = apdu.verify_pin(pin)
        with _card_errors():
            self._send(apdu.select_aid(SSSE_AID))
            self._send(command)

    # -- PKI and authentication ----------------------------------------------------------------

    def read_certificate(self) -> bytes:
        """The signing certificate (EF 0018, DER), read in chunks of up to 256 bytes.

        UnsupportedCard on a card without the PKI application (second generation).
        """
        with _card_errors():
            self._select_cert_adf()
            self._send(apdu.select_file(EF_SIGN_CERT_FID))
            return self._read_der_file()

    def internal_authenticate(self, challenge: bytes, terminal_id: str) -> bytes:
        """Third generation: the card's SM2 signature (r||s, 64 bytes) over
        :func:`sscard.layout.card_auth_message` (challenge, this card's card_sn, terminal_id).

        ``challenge`` is the gateway's 16 bytes. UnsupportedCard on a second-generation card.
        """
        issuer = self.read_issuer_data()
        if issuer.generation != 3:
            raise UnsupportedCard(
                "This card has no digital signature: use the second-generation card flow.",
                message_zh="该卡不支持数字签名，请按第二代卡流程处理。",
                detail=f"spec version {issuer.spec_version}",
            )
        try:
            message = card_auth_message(challenge, issuer.card_sn, terminal_id)
        except CardDataError as exc:
            raise ValueError(str(exc)) from exc
        with _card_errors():
            self._select_cert_adf()
            signature = self._send(apdu.internal_authenticate(message))
        if len(signature) != SIGNATURE_LEN:
            raise CardDataInvalid(detail=f"signature of {len(signature)} bytes, not 64")
        return signature

    def legacy_cryptogram(self, challenge: bytes) -> bytes:
        """Second generation: the card's 8-byte cryptogram over the gateway's 8-byte challenge
        (INTERNAL AUTHENTICATE in SSSE; the card MACs
        :func:`sscard.layout.legacy_auth_input` with its diversified key).

        UnsupportedCard on a third-generation card: it authenticates with SM2 only.
        """
        if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_LEN_GEN2:
            raise ValueError(f"challenge must be {CHALLENGE_LEN_GEN2} bytes")
        issuer = self.read_issuer_data()
        if issuer.generation == 3:
            raise UnsupportedCard(
                "This is a third-generation card: use its digital signature.",
                message_zh="该卡为第三代卡，请使用数字签名认证。",
                detail=f"spec version {issuer.spec_version}",
            )
        with _card_errors():
            self._send(apdu.select_aid(SSSE_AID))
            cryptogram = self._send(apdu.internal_authenticate(challenge))
        if len(cryptogram) != _LEGACY_CRYPTOGRAM_LEN:
            raise CardDataInvalid(detail=f"cryptogram of {len(cryptogram)} bytes, not 8")
        return cryptogram

    # -- helpers ------------------------------------------------------------------------------

    def _send(self, command: apdu.CommandApdu) -> bytes:
        return self.transport.send(command)

    def _select_cert_adf(self) -> None:
        try:
            self._send(apdu.select_aid(PKI_AID))
        except apdu.FileNotFound as exc:
            raise UnsupportedCard(
                "This card has no certificate (second-generation card).",
                message_zh="该卡没有数字证书（第二代卡）。",
                sw=exc.sw,
            ) from exc
        self._send(apdu.select_aid(CERT_ADF_AID))

    def _read_chunk(self, offset: int, length: int) -> bytes:
        response = self.transport.transmit(apdu.read_binary(offset, length))
        if response.sw != _SW_END_OF_FILE:
            apdu.check_sw(response.sw)
        if not response.data:
            raise CardDataInvalid(detail=f"READ BINARY at offset {offset} returned no data")
        return response.data

    def _read_der_file(self) -> bytes:
        content = self._read_chunk(0, _READ_CHUNK)
        total = _der_length(content)
        if total > _MAX_FILE_LEN:
            raise CardDataInvalid(detail=f"certificate of {total} bytes exceeds the file size")
        # Every round adds at least one byte (else _read_chunk raised): at most `total` rounds.
        while len(content) < total:
            content += self._read_chunk(len(content), min(_READ_CHUNK, total - len(content)))
        return content[:total]


def _decode_spec_version(record: bytes) -> str:
    try:
        value = decode_record(_SPEC_VERSION_TAG, record)
        version = value.decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CardDataError("not an ASCII spec version record", field="spec_version") from exc
    spec_generation(version)
    return version
