"""The hub client (no I/O of its own): one call = bounded attempts with the SAME msgid, and
exactly one of three outcomes (docs/cross-province.md).

* ``ok`` / ``refused``: the hub processed the message (``infcode`` 0 / -1);
* ``not_sent``: nothing reached the hub (connection refused, or the breaker is open): a
  failure, safe to report as such;
* ``unknown``: something was sent and no processed answer came back (timeout, connection
  dropped after sending, 5xx) on the last attempt, after ``retries`` retries. The hub may have
  committed it; only a reversal (2601) or a query (5201) can tell.

Retries reuse the msgid because the hub answers a repeated msgid with its stored first result:
a retry after a dropped response turns an unknown into the real answer without settling twice.

I/O is behind :class:`HubTransport` (one method): the gateway's aiohttp transport is the real one
(gateway.crossprov.client), tests pass an in-memory fake. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from settlement.crossprov import wire
from settlement.crossprov.breaker import Breaker

__all__ = [
    "CallOutcome",
    "HubClient",
    "HubTransport",
    "MsgidSource",
    "NoAnswer",
    "NotSent",
]

_RETRY_BACKOFF_S: Final = 0.05  # before retry n: 0.05 × 2^(n-1) s, with jitter


class NotSent(Exception):
    """Nothing reached the hub (e.g. connection refused)."""


class NoAnswer(Exception):
    """Sent (or maybe sent), but no processed answer. ``hub_down`` when it says the hub is not
    serving (timeout, 5xx), so the breaker counts it; a dropped response does not."""

    def __init__(self, reason: str, *, hub_down: bool) -> None:
        super().__init__(reason)
        self.hub_down = hub_down


class HubTransport(Protocol):
    async def post(self, infno: str, envelope: Mapping[str, Any], timeout_s: float) -> Any:
        """POST the envelope; the decoded JSON answer of a processed call (HTTP 200).
        Raises NotSent, NoAnswer, or ValueError for an answer that is not the contract's."""
        ...


Outcome = Literal["ok", "refused", "not_sent", "unknown"]


@dataclass(frozen=True, slots=True)
class CallOutcome:
    outcome: Outcome
    answer: wire.HubResponse | None = None
    error: str = ""
    attempts: int = 0


class MsgidSource:
    """Message ids (wire.make_msgid): institution code + Beijing time + 4-digit sequence.

    The sequence is a per-process counter from a random start, so two workers rarely meet in
    one second; the database's unique msgid decides the rare collision (the caller draws
    again). Settles take even sequences and cancels and queries odd ones, so a cancel never
    reuses a settle's id.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._counter = itertools.count(secrets.randbelow(5_000) * 2, 2)

    def next(self, fixmedins_code: str, *, odd: bool = False) -> str:
        at = dt.datetime.fromtimestamp(self._clock(), wire.BEIJING)
        seq = (next(self._counter) + (1 if odd else 0)) % 10_000
        return wire.make_msgid(fixmedins_code, at, seq)


class HubClient:
    def __init__(
        self,
        transport: HubTransport,
        breaker: Breaker,
        *,
        timeout_ms: int,
        retries: int,
        clock: Callable[[], float],
        on_outcome: Callable[[str, Outcome], None] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        assert timeout_ms > 0
        assert retries >= 0
        self.transport = transport
        self.breaker = breaker
        self.timeout_s = timeout_ms / 1000
        self.retries = retries
        self.msgids = MsgidSource(clock)
        self._clock = clock
        self._on_outcome = on_outcome
        self._sleep = sleep

    @property
    def longest_call_s(self) -> float:
        """The longest one call may take, retries and backoff included: an intent older than
        this can have no caller waiting on it any more."""
        backoff_s = sum(_RETRY_BACKOFF_S * 2**n * 1.5 for n in range(self.retries))
        return float(self.timeout_s * (self.retries + 1) + backoff_s)

    async def call(
        self,
        *,
        infno: str,
        msgid: str,
        insuplc_admdvs: str,
        fixmedins_code: str,
        payload: Mapping[str, Any],
    ) -> CallOutcome:
        body = wire.HubRequest.build(
            infno,
            msgid=msgid,
            insuplc_admdvs=insuplc_admdvs,
            fixmedins_code=fixmedins_code,
            input=payload,
            at=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
        ).to_json()
        outcome = await self._attempts(infno, msgid, body)
        if self._on_outcome is not None:
            self._on_outcome(infno, outcome.outcome)
        return outcome

    async def _attempts(self, infno: str, msgid: str, body: Mapping[str, Any]) -> CallOutcome:
        maybe_sent = False
        error = ""
        attempt = 0
        for attempt in range(1, self.retries + 2):
            if attempt > 1:
                await self._sleep(
                    _RETRY_BACKOFF_S * 2 ** (attempt - 2) * (1 + secrets.randbelow(500) / 1000)
                )
            if not self.breaker.allow():
                error = "circuit open"
                break
            try:
                raw = await self.transport.post(infno, body, self.timeout_s)
                answer = wire.parse_response(raw, msgid=msgid)
            except NotSent as exc:
                self.breaker.record_failure()
                error = f"not sent: {exc}"
                continue
            except NoAnswer as exc:
                maybe_sent = True
                if exc.hub_down:
                    self.breaker.record_failure()
                else:
                    self.breaker.record_neutral()
                error = f"no answer: {exc}"
                continue
            except ValueError as exc:
                # Processed or not, the answer is unusable: the safe reading is "unknown".
                self.breaker.record_neutral()
                maybe_sent = True
                error = f"unreadable answer: {exc}"
                continue
            self.breaker.record_success()
            kind: Outcome = "ok" if answer.ok else "refused"
            return CallOutcome(kind, answer, attempts=attempt)
        return CallOutcome("unknown" if maybe_sent else "not_sent", error=error, attempts=attempt)
