"""What one Locust process keeps for a run: its tally, its money requests in flight, keys.

One :class:`RunState` per process (master, worker or the single process of a local run),
made afresh at every test start (:func:`begin`). Users of the process share it; gevent runs
one greenlet at a time and nothing here yields, so it needs no lock.

A money request (settle, discharge, cancel) is written down as :class:`MoneyCall` *before*
it is sent and crossed off when a final answer comes back (DESIGN §5: unknown is written down
before the call). One that is still written down at the end (its user was stopped mid-call,
or the retries never got an answer) is sent again with the same Idempotency-Key by
:func:`loadtest.locust._visits.resolve_pending`, as a terminal does after a crash; only what
that cannot settle counts as in doubt.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from loadtest.locust._books import Tally
from loadtest.locust._cards import Wallet
from loadtest.locust._world import Patients, Terminal

__all__ = ["MoneyCall", "RunState", "begin", "current"]

#: Settles, discharges and cancels in flight per process, at most: a bound on memory, far
#: above what users of one process can have open (one visit each).
MAX_PENDING: Final = 100_000


@dataclass(frozen=True, slots=True)
class MoneyCall:
    """A request that moves money, as it will be sent (and sent again if need be)."""

    kind: str  # "settle" | "discharge" | "cancel"
    terminal: Terminal
    path: str
    payload: Mapping[str, Any]
    key: str  # Idempotency-Key
    name: str  # Locust's name for it
    card: int | None = None  # read again (a new card session) before sending it again
    setl_id: str | None = None  # what a cancel cancels
    again: bool = False  # sent before without a final answer: it may have been applied

    @property
    def ok_status(self) -> int:
        return 200 if self.kind == "cancel" else 201


@dataclass
class RunState:
    seed: str
    wallet: Wallet
    patients: Patients
    tally: Tally = field(default_factory=Tally)
    pending: dict[int, MoneyCall] = field(default_factory=dict)
    closing: bool = False
    inflight: int = 0
    cover_mix: bool = False
    hospitals: int = 400  # users draw from the first N demo hospitals (--ssc-hospitals)
    pharmacies: int = 800
    _prefix: str = field(default_factory=lambda: secrets.token_hex(6))
    _keys: itertools.count[int] = field(default_factory=itertools.count)
    _tickets: itertools.count[int] = field(default_factory=itertools.count)

    def new_key(self, what: str) -> str:
        """A fresh Idempotency-Key, unique across processes and runs (random prefix)."""
        return f"lt-{self._prefix}-{what}-{next(self._keys)}"

    def write_down(self, call: MoneyCall) -> int:
        if len(self.pending) >= MAX_PENDING:
            raise RuntimeError("too many money requests in flight: the gateway is not answering")
        if call.kind != "cancel":
            self.tally.touched.add(call.terminal.institution_code)
        ticket = next(self._tickets)
        self.pending[ticket] = call
        return ticket

    def cross_off(self, ticket: int) -> None:
        self.pending.pop(ticket, None)


class _Current:
    """The run of this process (a holder, so that begin() replaces it in one place)."""

    run: RunState | None = None


def begin(
    seed: str,
    *,
    cover_mix: bool = False,
    hospitals: int = 400,
    pharmacies: int = 800,
    wallet: Wallet | None = None,
) -> RunState:
    """A new run in this process (the wallet, and so the card certificates the gateway has
    seen, carries over when the seed is the same)."""
    previous = _Current.run
    if wallet is None:
        wallet = previous.wallet if previous is not None and previous.seed == seed else Wallet(seed)
    patients = previous.patients if previous is not None else Patients()
    _Current.run = RunState(
        seed=seed,
        wallet=wallet,
        patients=patients,
        cover_mix=cover_mix,
        hospitals=hospitals,
        pharmacies=pharmacies,
    )
    return _Current.run


def current() -> RunState:
    if _Current.run is None:
        raise RuntimeError("no run has begun in this process")
    return _Current.run
