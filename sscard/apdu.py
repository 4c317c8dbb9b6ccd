"""ISO/IEC 7816-4 command and response APDUs, status words, and the commands the card uses.

Pure: no reader, no I/O. A transport (pyscard, vpcd, an in-memory software card) moves the
bytes; this module builds, parses and judges them.

Command APDU byte layout (ISO 7816-3 §12.1; ``Nc`` = len(data), ``Ne`` = le)::

    case  form      bytes after CLA INS P1 P2
    1               (none)
    2     short     Le                          Le = Ne, 256 encoded as 00
    2     extended  00 Le1 Le2                  Ne 1..65536, 65536 encoded as 0000
    3     short     Lc data                     Nc 1..255
    3     extended  00 Lc1 Lc2 data             Nc 1..65535
    4     short     Lc data Le
    4     extended  00 Lc1 Lc2 data Le1 Le2     (no second 00 before Le)

:meth:`CommandApdu.to_bytes` picks the short form whenever both Nc <= 255 and Ne <= 256, unless
``extended=True`` forces the extended form. :meth:`CommandApdu.from_bytes` accepts both and is
strict: every byte must be accounted for.

Response APDU byte layout: ``data (0..65536 bytes) || SW1 || SW2``.

Status words. 9000 is success. 61xx ("xx more bytes: send GET RESPONSE 00C0 with Le=xx") and
6Cxx ("wrong Le: resend with Le=xx") are not errors: they are instructions to the transport,
exposed as :attr:`ResponseApdu.more_data_available` / :attr:`ResponseApdu.wrong_le_exact`, and
:func:`check_sw` lets them pass. pyscard does not act on them, so a transport must resolve them
before it hands a response to anything that calls :func:`check_sw`. Every other status word is
an error (including the ISO "warning" words 62xx/63xx other than 63Cx).

Exceptions::

    ValueError
     └── ApduDecodeError            malformed APDU bytes; .offset = byte offset of the problem
    Exception
     └── CardStatusError            any non-success status word; .sw, .code
          ├── WrongPin              63Cx; .tries_left = x
          ├── PinBlocked            6983
          ├── FileNotFound          6A82
          ├── RecordNotFound        6A83
          ├── ApplicationLocked     9303
          ├── SecurityNotSatisfied  6982
          ├── ConditionsNotSatisfied 6985
          ├── WrongParameters       6A86, 6B00
          ├── WrongLength           6700
          ├── InsNotSupported       6D00
          └── ClaNotSupported       6E00

Builders raise plain ``ValueError`` for out-of-range arguments.

>>> select_aid(bytes.fromhex("D15600000500")).to_bytes().hex().upper()
'00A4040006D15600000500'
>>> read_record(0x07).to_bytes().hex().upper()
'00B2070400'
>>> check_sw(0x63C2)
Traceback (most recent call last):
...
sscard.apdu.WrongPin: card status 63C2: wrong PIN, 2 tries left
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

__all__ = [
    "INS_EXTERNAL_AUTHENTICATE",
    "INS_GET_CHALLENGE",
    "INS_GET_RESPONSE",
    "INS_INTERNAL_AUTHENTICATE",
    "INS_READ_BINARY",
    "INS_READ_RECORD",
    "INS_SELECT",
    "INS_VERIFY",
    "SW_APPLICATION_LOCKED",
    "SW_CLA_NOT_SUPPORTED",
    "SW_CONDITIONS_NOT_SATISFIED",
    "SW_FILE_NOT_FOUND",
    "SW_INCORRECT_P1P2",
    "SW_INS_NOT_SUPPORTED",
    "SW_OK",
    "SW_PIN_BLOCKED",
    "SW_RECORD_NOT_FOUND",
    "SW_SECURITY_NOT_SATISFIED",
    "SW_WRONG_DATA_PARAMETERS",
    "SW_WRONG_LENGTH",
    "ApduDecodeError",
    "ApplicationLocked",
    "CardStatusError",
    "ClaNotSupported",
    "CommandApdu",
    "ConditionsNotSatisfied",
    "FileNotFound",
    "InsNotSupported",
    "PinBlocked",
    "RecordNotFound",
    "ResponseApdu",
    "SecurityNotSatisfied",
    "WrongLength",
    "WrongParameters",
    "WrongPin",
    "check_sw",
    "decode_pin",
    "encode_pin",
    "error_for_sw",
    "external_authenticate",
    "get_challenge",
    "get_response",
    "internal_authenticate",
    "read_binary",
    "read_record",
    "select_aid",
    "select_file",
    "verify_pin",
]

# -- instruction bytes (ISO 7816-4 §11) ---------------------------------------------------------
INS_VERIFY = 0x20
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_GET_CHALLENGE = 0x84
INS_INTERNAL_AUTHENTICATE = 0x88
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_READ_RECORD = 0xB2
INS_GET_RESPONSE = 0xC0

# Commands whose data field is a PIN or other reference data: never shown in a repr or a trace.
# 0x24 CHANGE REFERENCE DATA and 0x2C RESET RETRY COUNTER carry PINs too.
_SECRET_DATA_INS = frozenset({INS_VERIFY, 0x24, 0x2C})

# -- status words --------------------------------------------------------------------------------
SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_PIN_BLOCKED = 0x6983
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_INCORRECT_P1P2 = 0x6A86
SW_WRONG_DATA_PARAMETERS = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_APPLICATION_LOCKED = 0x9303

MAX_SHORT_NC = 255
MAX_SHORT_NE = 256
MAX_NC = 65_535
MAX_NE = 65_536
#: The longest command APDU: header, 00 Lc1 Lc2, 65,535 data bytes, Le1 Le2.
MAX_COMMAND_BYTES = 4 + 3 + MAX_NC + 2
MIN_PIN_DIGITS = 4
MAX_PIN_DIGITS = 12


class ApduDecodeError(ValueError):
    """Malformed APDU bytes. ``offset`` is the byte offset of the problem in the input."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte offset {offset})")
        self.message = message
        self.offset = offset

    def __reduce__(self) -> tuple[type[ApduDecodeError], tuple[str, int]]:
        return (type(self), (self.message, self.offset))


# -- status word errors --------------------------------------------------------------------------


class CardStatusError(Exception):
    """The card answered with a status word that is not success.

    ``sw`` is the 16-bit status word; ``code`` a stable name for metrics and API errors.
    """

    code: ClassVar[str] = "CARD_STATUS"
    meaning: ClassVar[str] = "the card refused the command"

    def __init__(self, sw: int, detail: str | None = None) -> None:
        self.sw = sw
        self.detail = detail or self._describe()
        # The status word is always in the message: it is what a card vendor's support asks for.
        super().__init__(f"card status {sw:04X}: {self.detail}")

    def _describe(self) -> str:
        return self.meaning

    def __reduce__(self) -> tuple[type[CardStatusError], tuple[int, str]]:
        # Picklable despite the custom signature (multiprocessing, logging queues).
        return (type(self), (self.sw, self.detail))


class WrongPin(CardStatusError):
    """63Cx: the PIN was wrong; ``tries_left`` = x (0 means the next lookup finds it blocked)."""

    code = "CARD_WRONG_PIN"

    def __init__(self, sw: int, detail: str | None = None) -> None:
        self.tries_left = sw & 0x0F
        super().__init__(sw, detail)

    def _describe(self) -> str:
        if self.tries_left == 0:
            return "wrong PIN, no tries left: the PIN is now blocked"
        plural = "try" if self.tries_left == 1 else "tries"
        return f"wrong PIN, {self.tries_left} {plural} left"


class PinBlocked(CardStatusError):
    code = "CARD_PIN_BLOCKED"
    meaning = "the PIN is blocked (too many wrong tries)"


class FileNotFound(CardStatusError):
    code = "CARD_FILE_NOT_FOUND"
    meaning = "file or application not found"


class RecordNotFound(CardStatusError):
    code = "CARD_RECORD_NOT_FOUND"
    meaning = "record not found"


class ApplicationLocked(CardStatusError):
    code = "CARD_APPLICATION_LOCKED"
    meaning = "the application is permanently locked"


class SecurityNotSatisfied(CardStatusError):
    code = "CARD_SECURITY_NOT_SATISFIED"
    meaning = "security status not satisfied (PIN or authentication required first)"


class ConditionsNotSatisfied(CardStatusError):
    code = "CARD_CONDITIONS_NOT_SATISFIED"
    meaning = "conditions of use not satisfied"


class WrongParameters(CardStatusError):
    code = "CARD_WRONG_PARAMETERS"
    meaning = "wrong parameters P1-P2"


class WrongLength(CardStatusError):
    code = "CARD_WRONG_LENGTH"
    meaning = "wrong length (Lc or Le)"


class InsNotSupported(CardStatusError):
    code = "CARD_INS_NOT_SUPPORTED"
    meaning = "instruction not supported"


class ClaNotSupported(CardStatusError):
    code = "CARD_CLA_NOT_SUPPORTED"
    meaning = "class byte not supported"


_ERROR_BY_SW: dict[int, type[CardStatusError]] = {
    SW_PIN_BLOCKED: PinBlocked,
    SW_FILE_NOT_FOUND: FileNotFound,
    SW_RECORD_NOT_FOUND: RecordNotFound,
    SW_APPLICATION_LOCKED: ApplicationLocked,
    SW_SECURITY_NOT_SATISFIED: SecurityNotSatisfied,
    SW_CONDITIONS_NOT_SATISFIED: ConditionsNotSatisfied,
    SW_INCORRECT_P1P2: WrongParameters,
    SW_WRONG_DATA_PARAMETERS: WrongParameters,
    SW_WRONG_LENGTH: WrongLength,
    SW_INS_NOT_SUPPORTED: InsNotSupported,
    SW_CLA_NOT_SUPPORTED: ClaNotSupported,
}


def _check_sw_range(sw: int) -> None:
    if isinstance(sw, bool) or not isinstance(sw, int):
        raise TypeError(f"status word must be an int, not {type(sw).__name__}")
    if not 0 <= sw <= 0xFFFF:
        raise ValueError(f"status word must be 0x0000..0xFFFF, got {sw:#x}")


def error_for_sw(sw: int) -> CardStatusError | None:
    """The typed error for ``sw``, or None for 9000 / 61xx / 6Cxx (not errors; see module doc).

    >>> error_for_sw(0x6A82)
    FileNotFound('card status 6A82: file or application not found')
    >>> error_for_sw(0x6110) is None
    True
    """
    _check_sw_range(sw)
    sw1 = sw >> 8
    if sw == SW_OK or sw1 in (0x61, 0x6C):
        return None
    if sw & 0xFFF0 == 0x63C0:
        return WrongPin(sw)
    return _ERROR_BY_SW.get(sw, CardStatusError)(sw)


def check_sw(sw: int) -> None:
    """Raise the typed :class:`CardStatusError` for ``sw``; return for 9000, 61xx and 6Cxx."""
    error = error_for_sw(sw)
    if error is not None:
        raise error


# -- command APDU --------------------------------------------------------------------------------


def _check_byte(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be one byte (0..255), got {value}")


@dataclass(frozen=True, slots=True, repr=False)
class CommandApdu:
    """A command APDU. ``le`` is Ne, the most response bytes expected: None (no Le field) or
    1..65536. The wire value 00 of a short Le means 256, so write ``le=256`` for it.

    ``extended=True`` forces the extended length form even when the short one would do (some
    terminals always send it); it is normalised to False when the lengths need the extended
    form anyway. :meth:`from_bytes` sets it when the input used the extended form, so
    ``from_bytes(x).to_bytes() == x`` for every valid ``x``.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(name, getattr(self, name))
        if not isinstance(self.data, bytes):
            raise TypeError(f"data must be bytes, not {type(self.data).__name__}")
        if len(self.data) > MAX_NC:
            raise ValueError(f"command data is {len(self.data)} bytes; the maximum is {MAX_NC}")
        if self.le is not None:
            if isinstance(self.le, bool) or not isinstance(self.le, int):
                raise TypeError(f"le must be an int or None, not {type(self.le).__name__}")
            if not 1 <= self.le <= MAX_NE:
                raise ValueError(
                    f"le (Ne) must be 1..{MAX_NE} or None, got {self.le};"
                    " use 256 for the short Le byte 00"
                )
        if self.extended and not self.data and self.le is None:
            raise ValueError("a case 1 APDU (no data, no Le) has no extended form")
        if self.extended and self._needs_extended():
            # Forcing what the lengths need anyway is no choice: normalise it away so that two
            # APDUs with the same bytes on the wire compare equal.
            object.__setattr__(self, "extended", False)

    def _needs_extended(self) -> bool:
        return len(self.data) > MAX_SHORT_NC or (self.le is not None and self.le > MAX_SHORT_NE)

    @property
    def case(self) -> int:
        """ISO 7816-3 case: 1 (no data, no Le), 2 (Le only), 3 (data only), 4 (both)."""
        if self.data:
            return 4 if self.le is not None else 3
        return 2 if self.le is not None else 1

    @property
    def is_extended(self) -> bool:
        """True when :meth:`to_bytes` uses the extended length form."""
        return self.extended or self._needs_extended()

    def with_le(self, le: int | None) -> CommandApdu:
        """The same command with another Ne, e.g. to resend after 6Cxx."""
        return replace(self, le=le)

    def to_bytes(self) -> bytes:
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.case == 1:
            return header
        if not self.is_extended:
            lc = bytes([len(self.data)]) + self.data if self.data else b""
            # Ne 256 wraps to the byte 00, as ISO 7816-3 specifies.
            le = bytes([self.le & 0xFF]) if self.le is not None else b""
            return header + lc + le
        lc = len(self.data).to_bytes(2, "big") + self.data if self.data else b""
        le = (self.le & 0xFFFF).to_bytes(2, "big") if self.le is not None else b""
        return header + b"\x00" + lc + le

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandApdu:
        """Strict parser: ApduDecodeError unless ``raw`` is exactly one well-formed command.

        >>> CommandApdu.from_bytes(bytes.fromhex("00B2070400"))
        CommandApdu(cla=0x00, ins=0xB2, p1=0x07, p2=0x04, le=256)
        """
        raw = bytes(raw)
        if len(raw) < 4:
            raise ApduDecodeError(f"command APDU needs a 4-byte header, got {len(raw)} bytes", 0)
        if len(raw) > MAX_COMMAND_BYTES:
            raise ApduDecodeError(
                f"command APDU of {len(raw)} bytes exceeds {MAX_COMMAND_BYTES}", MAX_COMMAND_BYTES
            )
        cla, ins, p1, p2 = raw[:4]
        data, le, used_extended = _parse_body(raw)
        return cls(cla, ins, p1, p2, data, le, extended=used_extended)

    def __repr__(self) -> str:
        parts = [
            f"cla=0x{self.cla:02X}, ins=0x{self.ins:02X}, p1=0x{self.p1:02X}, p2=0x{self.p2:02X}"
        ]
        if self.data:
            if self.ins in _SECRET_DATA_INS:
                # PINs never reach a log line, a trace or a test failure message.
                parts.append(f"data=<{len(self.data)} bytes redacted>")
            else:
                parts.append(f"data=bytes.fromhex({self.data.hex().upper()!r})")
        if self.le is not None:
            parts.append(f"le={self.le}")
        if self.extended:
            parts.append("extended=True")
        return f"CommandApdu({', '.join(parts)})"


def _parse_body(raw: bytes) -> tuple[bytes, int | None, bool]:
    """(data, Ne, extended form used) of the body after the header (ISO 7816-3 §12.1.3)."""
    body_len = len(raw) - 4
    if body_len == 0:  # case 1
        return b"", None, False
    if body_len == 1:  # case 2 short; Le 00 means 256
        return b"", raw[4] or MAX_SHORT_NE, False
    if raw[4] != 0:  # a non-zero first body byte is a short Lc
        data, le = _parse_short_body(raw, body_len)
        return data, le, False
    data, le = _parse_extended_body(raw, body_len)
    return data, le, True


def _parse_short_body(raw: bytes, body_len: int) -> tuple[bytes, int | None]:
    lc = raw[4]
    if body_len == 1 + lc:  # case 3 short
        return raw[5:], None
    if body_len == 2 + lc:  # case 4 short
        return raw[5:-1], raw[-1] or MAX_SHORT_NE
    raise ApduDecodeError(
        f"short Lc={lc} does not match the {body_len - 1} bytes that follow it", 4
    )


def _parse_extended_body(raw: bytes, body_len: int) -> tuple[bytes, int | None]:
    if body_len == 2:
        raise ApduDecodeError("2-byte body starting with 00 is neither short nor extended", 4)
    word = int.from_bytes(raw[5:7], "big")
    if body_len == 3:  # case 2 extended; Le 0000 means 65536
        return b"", word or MAX_NE
    if word == 0:
        raise ApduDecodeError("extended Lc of 0 is not allowed", 5)
    if body_len == 3 + word:  # case 3 extended
        return raw[7:], None
    if body_len == 5 + word:  # case 4 extended
        return raw[7:-2], int.from_bytes(raw[-2:], "big") or MAX_NE
    raise ApduDecodeError(
        f"extended Lc={word} does not match the {body_len - 3} bytes that follow it", 5
    )


# -- response APDU -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class ResponseApdu:
    """A response APDU: ``data`` then the status bytes ``sw1``, ``sw2``."""

    data: bytes
    sw1: int
    sw2: int

    def __post_init__(self) -> None:
        _check_byte("sw1", self.sw1)
        _check_byte("sw2", self.sw2)
        if not isinstance(self.data, bytes):
            raise TypeError(f"data must be bytes, not {type(self.data).__name__}")
        if len(self.data) > MAX_NE:
            raise ValueError(f"response data is {len(self.data)} bytes; the maximum is {MAX_NE}")

    @classmethod
    def from_sw(cls, sw: int, data: bytes = b"") -> ResponseApdu:
        _check_sw_range(sw)
        return cls(data, sw >> 8, sw & 0xFF)

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    @property
    def is_ok(self) -> bool:
        return self.sw == SW_OK

    @property
    def more_data_available(self) -> bool:
        """61xx: the card holds more response data; fetch it with ``get_response(sw2)``."""
        return self.sw1 == 0x61

    @property
    def available_length(self) -> int | None:
        """With 61xx, how many bytes to ask GET RESPONSE for (SW2, 00 meaning 256)."""
        return (self.sw2 or MAX_SHORT_NE) if self.sw1 == 0x61 else None

    @property
    def wrong_le_exact(self) -> int | None:
        """With 6Cxx, the exact Ne to resend the same command with (SW2, 00 meaning 256)."""
        return (self.sw2 or MAX_SHORT_NE) if self.sw1 == 0x6C else None

    def to_bytes(self) -> bytes:
        return self.data + bytes([self.sw1, self.sw2])

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseApdu:
        """Parse ``data || SW1 || SW2``.

        >>> ResponseApdu.from_bytes(bytes.fromhex("0304332E30309000"))
        ResponseApdu(sw=9000, data=<6 bytes>)
        """
        raw = bytes(raw)
        if len(raw) < 2:
            raise ApduDecodeError(
                f"response APDU needs the 2 status bytes, got {len(raw)} bytes", len(raw)
            )
        if len(raw) > MAX_NE + 2:
            raise ApduDecodeError(f"response data of {len(raw) - 2} bytes exceeds {MAX_NE}", MAX_NE)
        return cls(raw[:-2], raw[-2], raw[-1])

    def __repr__(self) -> str:
        # Response data can hold a name or a citizen id: show its size, never its content.
        return f"ResponseApdu(sw={self.sw:04X}, data=<{len(self.data)} bytes>)"


# -- builders ------------------------------------------------------------------------------------


def _check_int(name: str, value: int, low: int, high: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}..{high}, got {value}{hint}")


def _check_bytes(name: str, value: bytes, low: int, high: int) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if not low <= len(value) <= high:
        raise ValueError(f"{name} must be {low}..{high} bytes long, got {len(value)}")


def _le_or_256(name: str, le: int, high: int) -> int:
    """Builders take the wire convention: 0 means 256 (the short Le byte 00)."""
    _check_int(name, le, 0, high, " (0 means 256, as the short Le byte 00)")
    return le or MAX_SHORT_NE


def select_aid(aid: bytes) -> CommandApdu:
    """SELECT by DF name (AID, 5..16 bytes): ``00 A4 04 00 Lc AID``.

    No Le, as the readers in the field send it; a T=0 card may answer 61xx with the FCI.
    """
    _check_bytes("AID", aid, 5, 16)
    return CommandApdu(0x00, INS_SELECT, 0x04, 0x00, aid)


def select_file(fid: bytes) -> CommandApdu:
    """SELECT by 2-byte file identifier: ``00 A4 00 00 02 FID``.

    >>> select_file(bytes.fromhex("EF05")).to_bytes().hex().upper()
    '00A4000002EF05'
    """
    _check_bytes("file id", fid, 2, 2)
    if fid in (b"\xff\xff", b"\x3f\xff"):
        raise ValueError(f"file id {fid.hex().upper()} is reserved by ISO 7816-4")
    return CommandApdu(0x00, INS_SELECT, 0x00, 0x00, fid)


def read_record(
    record_no: int, sfi: int | None = None, *, by_identifier: bool = False
) -> CommandApdu:
    """READ RECORD: ``00 B2 P1 P2 00`` (Le 00: up to 256 bytes).

    P1 is the record number (01..FE). P2 is ``(sfi << 3) | 4`` ("record number in P1"), with
    sfi 0 meaning the current EF. With ``by_identifier=True`` P2's low bits are 000 instead:
    "first record whose tag (record identifier) is P1", which finds a data element by its tag
    whatever its position (see :mod:`sscard.layout` on EF06).

    >>> read_record(0x08, by_identifier=True).to_bytes().hex().upper()
    '00B2080000'
    >>> read_record(0x01, sfi=5).to_bytes().hex().upper()
    '00B2012C00'
    """
    _check_int("record number", record_no, 1, 0xFE)
    sfi_bits = 0
    if sfi is not None:
        _check_int("SFI", sfi, 1, 30)
        sfi_bits = sfi << 3
    p2 = sfi_bits | (0b000 if by_identifier else 0b100)
    return CommandApdu(0x00, INS_READ_RECORD, record_no, p2, le=MAX_SHORT_NE)


def read_binary(offset: int = 0, le: int = 0, sfi: int | None = None) -> CommandApdu:
    """READ BINARY: ``00 B0 P1 P2 Le``.

    Without an SFI, P1-P2 is a 15-bit offset (0..32767). With one, P1 = ``0x80 | sfi`` and P2 is
    an offset of 0..255. ``le`` is Ne, 0 meaning 256 (the short Le byte 00); above 256 the
    command goes out in extended form.

    >>> read_binary(0x0102, 0x20).to_bytes().hex().upper()
    '00B0010220'
    """
    ne = _le_or_256("le", le, MAX_NE)
    if sfi is None:
        _check_int("offset", offset, 0, 0x7FFF)
        return CommandApdu(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, le=ne)
    _check_int("SFI", sfi, 1, 30)
    _check_int("offset with an SFI", offset, 0, 0xFF)
    return CommandApdu(0x00, INS_READ_BINARY, 0x80 | sfi, offset, le=ne)


def encode_pin(pin: str) -> bytes:
    """A PIN as packed BCD, padded with F to whole bytes (4..12 digits).

    >>> encode_pin("12345").hex().upper()
    '12345F'
    """
    if not isinstance(pin, str):
        raise TypeError(f"PIN must be a str of digits, not {type(pin).__name__}")
    # The PIN itself never goes into a message: it could end up in a log.
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        raise ValueError(f"PIN must be {MIN_PIN_DIGITS}..{MAX_PIN_DIGITS} digits, got {len(pin)}")
    if any(ch not in "0123456789" for ch in pin):
        raise ValueError("PIN must contain only the ASCII digits 0-9")
    padded = pin + "F" * (len(pin) % 2)
    return bytes.fromhex(padded)


def decode_pin(data: bytes) -> str:
    """Inverse of :func:`encode_pin`, for software cards; ApduDecodeError if malformed.

    >>> decode_pin(bytes.fromhex("12345F"))
    '12345'
    """
    data = bytes(data)
    digits = data.hex().upper()
    if digits.endswith("F"):
        digits = digits[:-1]
    for index, ch in enumerate(digits):
        if ch not in "0123456789":
            raise ApduDecodeError(
                "PIN block holds a nibble that is not a decimal digit", index // 2
            )
    if not MIN_PIN_DIGITS <= len(digits) <= MAX_PIN_DIGITS:
        raise ApduDecodeError(
            f"PIN block holds {len(digits)} digits, expected {MIN_PIN_DIGITS}..{MAX_PIN_DIGITS}", 0
        )
    return digits


def verify_pin(pin: str, *, reference: int = 0x00) -> CommandApdu:
    """VERIFY: ``00 20 00 P2 Lc PIN`` with the PIN as packed BCD padded with F.

    ``reference`` (P2) selects the PIN; 00 is what the social security cards use. The APDU's
    repr redacts the PIN.

    >>> verify_pin("123456").to_bytes().hex().upper()
    '0020000003123456'
    >>> verify_pin("123456")
    CommandApdu(cla=0x00, ins=0x20, p1=0x00, p2=0x00, data=<3 bytes redacted>)
    """
    _check_int("PIN reference", reference, 0, 0xFF)
    return CommandApdu(0x00, INS_VERIFY, 0x00, reference, encode_pin(pin))


def get_challenge(length: int) -> CommandApdu:
    """GET CHALLENGE: ``00 84 00 00 Le``; 8 bytes on 2nd-generation cards, 16 on 3rd.

    >>> get_challenge(16).to_bytes().hex().upper()
    '0084000010'
    """
    _check_int("challenge length", length, 1, MAX_SHORT_NE)
    return CommandApdu(0x00, INS_GET_CHALLENGE, 0x00, 0x00, le=length)


def internal_authenticate(data: bytes, p1: int = 0, p2: int = 0) -> CommandApdu:
    """INTERNAL AUTHENTICATE: ``00 88 P1 P2 Lc data 00`` (case 4; extended above 255 bytes).

    >>> internal_authenticate(bytes(8)).to_bytes().hex().upper()
    '0088000008000000000000000000'
    """
    _check_bytes("authentication data", data, 1, MAX_NC)
    _check_int("P1", p1, 0, 0xFF)
    _check_int("P2", p2, 0, 0xFF)
    return CommandApdu(0x00, INS_INTERNAL_AUTHENTICATE, p1, p2, data, le=MAX_SHORT_NE)


def external_authenticate(data: bytes) -> CommandApdu:
    """EXTERNAL AUTHENTICATE: ``00 82 00 00 Lc data`` (case 3)."""
    _check_bytes("authentication data", data, 1, MAX_NC)
    return CommandApdu(0x00, INS_EXTERNAL_AUTHENTICATE, 0x00, 0x00, data)


def get_response(le: int) -> CommandApdu:
    """GET RESPONSE after 61xx: ``00 C0 00 00 Le``; pass SW2 as is (0 means 256).

    >>> get_response(0x00).to_bytes().hex().upper()
    '00C0000000'
    """
    ne = _le_or_256("le", le, MAX_SHORT_NE)
    return CommandApdu(0x00, INS_GET_RESPONSE, 0x00, 0x00, le=ne)
