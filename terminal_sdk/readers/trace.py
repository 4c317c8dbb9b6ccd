"""An APDU trace that a support engineer can read and a data-protection officer can accept.

Every exchange on the wire goes to the logger ``terminal_sdk.apdu`` (DEBUG) and into an
in-memory ring buffer (:class:`ApduTrace`), so "what did the card say?" has an answer after the
fact without switching on logging first.

What is masked, and why it is an allow-list:

* **Command data** of VERIFY (and CHANGE REFERENCE DATA, RESET RETRY COUNTER): the PIN. Shown
  as ``<3 bytes redacted>``, as :class:`sscard.apdu.CommandApdu`'s repr does.
* **Response data** is shown only for commands whose answers carry nothing personal: SELECT
  (FCI), GET CHALLENGE, INTERNAL AUTHENTICATE, and READ RECORD from EF05 (issuer data). All
  else shows its length only. EF06 holds the citizen id and the name, and a certificate's
  subject may hold the name too; a deny-by-default rule cannot be defeated by a file selected
  some way the tracker did not follow.
* **The card number** (EF05 07, 卡号) is the one personal field of EF05: its record is shown
  as ``0709 <card_no A******78>`` (:func:`sscard.masking.mask_card_no`). An EF05 answer that
  is not one whole record (a chunk of a chained answer) shows its length only.

GET RESPONSE and a 6Cxx resend belong to the command that caused them and are masked like it
(on a T=0 card the EF06 record arrives in the GET RESPONSE, not in the READ RECORD).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Final

from sscard.apdu import (
    INS_GET_CHALLENGE,
    INS_INTERNAL_AUTHENTICATE,
    INS_READ_RECORD,
    INS_SELECT,
    CommandApdu,
    ResponseApdu,
)
from sscard.layout import EF05_FID
from sscard.masking import mask_card_no

__all__ = ["DEFAULT_TRACE_SIZE", "ApduMasker", "ApduTrace", "TraceEntry"]

_log = logging.getLogger("terminal_sdk.apdu")

DEFAULT_TRACE_SIZE: Final = 256
# INS whose command data is a PIN: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER.
_SECRET_COMMAND_INS: Final = frozenset({0x20, 0x24, 0x2C})
_PUBLIC_RESPONSE_INS: Final = frozenset({INS_SELECT, INS_GET_CHALLENGE, INS_INTERNAL_AUTHENTICATE})
_EF05_SFI: Final = 5
_CARD_NO_TAG: Final = 0x07  # EF05 07, 卡号 (sscard.layout: EF05 records are tag, length, value)


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One exchange on the wire, already masked: nothing here needs protecting."""

    at: float  # time.time() when the command went out
    command: str  # hex, data masked where needed
    response: str  # hex data (or "<n bytes>") then SW, or the error that ended the exchange
    sw: int | None  # None when the exchange failed (card removed, no answer)
    elapsed_ms: float

    def __str__(self) -> str:
        stamp = (
            time.strftime("%H:%M:%S", time.localtime(self.at))
            + f".{int(self.at * 1000) % 1000:03d}"
        )
        return f"{stamp} > {self.command}  < {self.response}  ({self.elapsed_ms:.1f} ms)"


class ApduMasker:
    """Decides what of an exchange may be shown; follows SELECT to know when EF05 is current."""

    __slots__ = ("_ef05_current",)

    def __init__(self) -> None:
        self._ef05_current = False

    @staticmethod
    def command_text(command: CommandApdu) -> str:
        header = bytes([command.cla, command.ins, command.p1, command.p2]).hex().upper()
        parts = [header]
        if command.data:
            if command.ins in _SECRET_COMMAND_INS:
                parts.append(f"<{len(command.data)} bytes redacted>")
            else:
                parts.append(command.data.hex().upper())
        if command.le is not None:
            parts.append(f"Le={command.le}")
        return " ".join(parts)

    def response_is_public(self, origin: CommandApdu) -> bool:
        """May the response data of ``origin`` (and of its GET RESPONSEs) be shown?"""
        if origin.ins in _PUBLIC_RESPONSE_INS:
            return True
        if origin.ins == INS_READ_RECORD:
            sfi = origin.p2 >> 3
            return sfi == _EF05_SFI or (sfi == 0 and self._ef05_current)
        return False

    @staticmethod
    def response_text(
        response: ResponseApdu, *, public: bool, origin: CommandApdu | None = None
    ) -> str:
        """The response as the trace shows it. ``origin``: the command that caused it (for a
        GET RESPONSE, the command it continues), so that an EF05 record is shown as a record."""
        sw = f"{response.sw:04X}"
        if not response.data:
            return sw
        if not public:
            return f"<{len(response.data)} bytes> {sw}"
        if origin is not None and origin.ins == INS_READ_RECORD:
            return f"{_issuer_record_text(response.data)} {sw}"
        return f"{response.data.hex().upper()} {sw}"

    def observe(self, command: CommandApdu, response: ResponseApdu) -> None:
        """Follow the current EF after a completed command (only what changes it)."""
        if command.ins == INS_SELECT and response.is_ok:
            # Any SELECT moves the current EF; only SELECT EF05 by FID makes it EF05.
            self._ef05_current = command.p1 in (0x00, 0x02) and command.data == EF05_FID
        elif command.ins == INS_READ_RECORD and response.is_ok and command.p2 >> 3:
            # READ RECORD with an SFI makes that EF current.
            self._ef05_current = command.p2 >> 3 == _EF05_SFI

    def reset(self) -> None:
        self._ef05_current = False


def _issuer_record_text(data: bytes) -> str:
    """An EF05 record (one TLV: tag, length < 128, value) in hex, its card number masked."""
    if len(data) < 2 or data[1] >= 0x80 or len(data) != 2 + data[1]:
        return f"<{len(data)} bytes>"
    if data[0] == _CARD_NO_TAG:
        card_no = data[2:].decode("ascii", errors="replace")
        return f"{data[:2].hex().upper()} <card_no {mask_card_no(card_no)}>"
    return data.hex().upper()


class ApduTrace:
    """A thread-safe ring buffer of the last ``size`` exchanges, also logged at DEBUG."""

    def __init__(self, size: int = DEFAULT_TRACE_SIZE, *, logger: logging.Logger | None = None):
        if size < 1:
            raise ValueError("trace size must be at least 1")
        self._entries: collections.deque[TraceEntry] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self._logger = logger or _log

    def record(self, entry: TraceEntry) -> None:
        with self._lock:
            self._entries.append(entry)
        self._logger.debug("%s", entry)

    def entries(self) -> list[TraceEntry]:
        with self._lock:
            return list(self._entries)

    def dump(self) -> str:
        """The buffer as text, one exchange per line: what to attach to a support ticket."""
        return "\n".join(str(entry) for entry in self.entries())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
