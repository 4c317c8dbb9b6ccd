"""The card's own view of a command APDU, and the status words it answers with.

The software card parses APDUs itself instead of using :mod:`sscard.apdu`: the reader side
builds commands with that module, and a shared parser would hide a bug that both sides make
the same way. Only short APDUs (ISO/IEC 7816-3 §12.1, cases 1..4) are accepted, as on the
cards themselves; an extended-length APDU is answered with 6700.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Status words (ISO/IEC 7816-4 §5.1.3; DOMAIN §2), as 2-byte values.
SW_OK: Final = 0x9000
SW_WRONG_LENGTH: Final = 0x6700
SW_INCOMPATIBLE_FILE: Final = 0x6981  # READ RECORD on a transparent EF, and vice versa
SW_SECURITY_NOT_SATISFIED: Final = 0x6982
SW_PIN_BLOCKED: Final = 0x6983
SW_CONDITIONS_NOT_SATISFIED: Final = 0x6985
SW_NO_CURRENT_EF: Final = 0x6986
SW_WRONG_DATA: Final = 0x6A80
SW_FILE_NOT_FOUND: Final = 0x6A82
SW_RECORD_NOT_FOUND: Final = 0x6A83
SW_WRONG_P1P2: Final = 0x6A86
SW_REFERENCE_NOT_FOUND: Final = 0x6A88
SW_WRONG_OFFSET: Final = 0x6B00
SW_INS_NOT_SUPPORTED: Final = 0x6D00
SW_CLA_NOT_SUPPORTED: Final = 0x6E00
SW_APP_LOCKED: Final = 0x9303  # application permanently locked (Chinese COS convention)
SW_MORE_DATA_BASE: Final = 0x6100  # 61xx: xx more bytes wait for GET RESPONSE (00 = 256)
SW_WRONG_LE_BASE: Final = 0x6C00  # 6Cxx: resend with Le = xx (00 = 256)
SW_PIN_WRONG_BASE: Final = 0x63C0  # 63Cx: PIN wrong, x tries left

#: Bytes of a short APDU header (CLA INS P1 P2).
HEADER_LEN: Final = 4
#: A short Le of 00 asks for up to 256 bytes.
MAX_SHORT_LE: Final = 256


class CardStatus(Exception):
    """Raised inside a command handler to answer with a status word and no data."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed short command APDU. ``le`` is None when absent, 1..256 when present."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None

    def __repr__(self) -> str:
        # Command data can hold a PIN: never show it.
        return (
            f"Command(cla={self.cla:02X}, ins={self.ins:02X}, p1={self.p1:02X},"
            f" p2={self.p2:02X}, lc={len(self.data)}, le={self.le})"
        )


def parse_command(apdu: bytes) -> Command:
    """Parse a short APDU (cases 1..4); raise :class:`CardStatus` (6700) otherwise.

    >>> parse_command(bytes.fromhex("00B2010400")).le
    256
    >>> parse_command(bytes.fromhex("0020000003123456")).data.hex()
    '123456'
    """
    if len(apdu) < HEADER_LEN:
        raise CardStatus(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[:HEADER_LEN]
    body = apdu[HEADER_LEN:]
    if not body:  # case 1
        return Command(cla, ins, p1, p2, b"", None)
    if len(body) == 1:  # case 2: Le only
        return Command(cla, ins, p1, p2, b"", body[0] or MAX_SHORT_LE)
    lc = body[0]
    if lc == 0:  # 00 followed by more bytes: an extended-length APDU
        raise CardStatus(SW_WRONG_LENGTH)
    if len(body) == 1 + lc:  # case 3
        return Command(cla, ins, p1, p2, bytes(body[1:]), None)
    if len(body) == 2 + lc:  # case 4
        return Command(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), body[-1] or MAX_SHORT_LE)
    raise CardStatus(SW_WRONG_LENGTH)


def sw_bytes(sw: int) -> bytes:
    """A status word as the 2 bytes SW1 SW2."""
    return sw.to_bytes(2, "big")


def length_byte(length: int) -> int:
    """The xx of 61xx / 6Cxx for ``length`` bytes: 256 is written 00."""
    assert 0 < length <= MAX_SHORT_LE
    return length & 0xFF
