"""The one place that turns a reader's raw exchange into a complete answer (T=0 rules).

pyscard hands 61xx and 6Cxx back as they are (DOMAIN §2), and so does every :class:`Reader`.
:class:`ApduTransport` resolves them, for every reader alike, before anything judges a status
word:

* **6Cxx** "wrong Le, resend with Le = xx": the same command is resent **once** with the exact
  Le. A second 6Cxx is a card fault (TransmitFailed): looping would never end on a broken card.
* **61xx** "xx more bytes": GET RESPONSE with Le = xx, repeated while the card says 61xx again,
  the data concatenated. Bounded by :data:`MAX_GET_RESPONSE` rounds and 65,536 bytes. A 6Cxx to
  a GET RESPONSE is resent with the exact Le as well.

Every wire exchange is traced (:mod:`terminal_sdk.readers.trace`), masked by the command that
started it.
"""

from __future__ import annotations

import time
from typing import Final

from sscard.apdu import (
    MAX_NE,
    ApduDecodeError,
    CommandApdu,
    ResponseApdu,
    check_sw,
    get_response,
)
from terminal_sdk.errors import ReaderError, TransmitFailed
from terminal_sdk.readers.base import CardInfo, Reader
from terminal_sdk.readers.trace import ApduMasker, ApduTrace, TraceEntry

__all__ = ["MAX_GET_RESPONSE", "ApduTransport"]

#: 256 rounds of 256 bytes is the 65,536 bytes a response can hold at most.
MAX_GET_RESPONSE: Final = 256


class ApduTransport:
    """Command APDUs in, complete response APDUs out, over a connected :class:`Reader`.

    ``transmit`` returns the final status word with all the data gathered on the way; ``send``
    also raises the typed :class:`sscard.apdu.CardStatusError` for an error status.
    """

    def __init__(self, reader: Reader, *, trace: ApduTrace | None = None) -> None:
        self.reader = reader
        self.trace = trace if trace is not None else ApduTrace()
        self._masker = ApduMasker()

    @property
    def card(self) -> CardInfo | None:
        return self.reader.card

    def transmit(self, command: CommandApdu) -> ResponseApdu:
        public = self._masker.response_is_public(command)
        response = self._exchange(command, public=public, origin=command)
        if response.wrong_le_exact is not None:
            response = self._exchange(
                command.with_le(response.wrong_le_exact), public=public, origin=command
            )
            if response.wrong_le_exact is not None:
                raise TransmitFailed(detail=f"card answered 6Cxx twice to INS {command.ins:02X}")
        data = response.data
        rounds = 0
        while response.available_length is not None:
            rounds += 1
            if rounds > MAX_GET_RESPONSE or len(data) > MAX_NE:
                raise TransmitFailed(detail=f"card chained more than {MAX_NE} bytes of response")
            request = get_response(response.available_length & 0xFF)
            response = self._exchange(request, public=public, origin=command)
            if response.wrong_le_exact is not None:
                response = self._exchange(
                    request.with_le(response.wrong_le_exact), public=public, origin=command
                )
            if response.wrong_le_exact is not None:
                raise TransmitFailed(detail="card answered 6Cxx twice to GET RESPONSE")
            data += response.data
        if len(data) > MAX_NE:
            raise TransmitFailed(detail=f"card chained more than {MAX_NE} bytes of response")
        final = ResponseApdu(data, response.sw1, response.sw2)
        self._masker.observe(command, final)
        return final

    def send(self, command: CommandApdu) -> bytes:
        """:meth:`transmit`, then raise the typed CardStatusError unless the card said 9000."""
        response = self.transmit(command)
        check_sw(response.sw)
        return response.data

    def reset_state(self) -> None:
        """Forget what is selected (after a reconnect, which resets the card)."""
        self._masker.reset()

    def _exchange(self, command: CommandApdu, *, public: bool, origin: CommandApdu) -> ResponseApdu:
        started_wall, started = time.time(), time.perf_counter()
        command_text = self._masker.command_text(command)
        try:
            raw = self.reader.transmit(command.to_bytes())
            response = ResponseApdu.from_bytes(raw)
        except ReaderError as exc:
            self._record(started_wall, started, command_text, f"failed: {exc.code}", None)
            raise
        except ApduDecodeError as exc:
            self._record(started_wall, started, command_text, "failed: malformed response", None)
            raise TransmitFailed(detail=f"malformed response APDU: {exc}") from exc
        text = self._masker.response_text(response, public=public, origin=origin)
        self._record(started_wall, started, command_text, text, response.sw)
        return response

    def _record(
        self, wall: float, started: float, command: str, response: str, sw: int | None
    ) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.trace.record(TraceEntry(wall, command, response, sw, elapsed_ms))
