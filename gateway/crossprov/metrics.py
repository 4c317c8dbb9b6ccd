"""Metrics of the hub client and the reversal queue (see gateway.metrics for multiprocess
mode; imported only by worker code, never by the supervisor).

Labels are bounded: ``infno`` is one of the contract's codes, ``outcome`` one of
ok | refused | not_sent | unknown; a cancel resolution's ``outcome`` one of
cancelled | not_cancelled | retry.

The queue's gauges are set by each worker's reversal task (gateway.crossprov.hub) at the end of
every round (``hub_reversal_poll_s``) from the database, so every worker reports the same
queue: ``livemax`` shows it once. The breaker's state is set by every hub call's outcome and
every round (``liveall``: one sample per worker, as each worker has its own breaker).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbkit import as_utc
from gateway.db import Database
from settlement.crossprov.breaker import Breaker
from settlement.crossprov.store import HubReversalRow, ReversalStatus

__all__ = [
    "BREAKER_STATE",
    "CANCEL_RESOLUTIONS",
    "HUB_CALLS",
    "REVERSALS",
    "REVERSAL_QUEUE_DEPTH",
    "REVERSAL_QUEUE_OLDEST_AGE",
    "count_call",
    "oldest_pending_age_s",
]

HUB_CALLS: Final = Counter(
    "ssc_hub_calls",
    "Calls to the national hub (after retries), by transaction code and outcome.",
    ["infno", "outcome"],
)
REVERSAL_QUEUE_DEPTH: Final = Gauge(
    "ssc_hub_reversal_queue_depth",
    "Reversals (2601) and cancel checks waiting for the hub's word (read from the database).",
    multiprocess_mode="livemax",
)
REVERSAL_QUEUE_OLDEST_AGE: Final = Gauge(
    "ssc_hub_reversal_queue_oldest_age_seconds",
    "How long the oldest reversal or cancel check still waiting for the hub's word has waited "
    "(0: the queue is empty; read from the database).",
    multiprocess_mode="livemax",
)
BREAKER_STATE: Final = Gauge(
    "ssc_hub_breaker_state",
    "The hub circuit breaker per worker: 0 closed, 1 half-open, 2 open.",
    multiprocess_mode="liveall",
)
REVERSALS: Final = Counter(
    "ssc_hub_reversals",
    "Reversal attempts by result (done, retry).",
    ["result"],
)
CANCEL_RESOLUTIONS: Final = Counter(
    "ssc_hub_cancel_resolutions",
    "Cancels whose outcome was unknown, resolved by the reversal task: cancelled (booked), "
    "not_cancelled (the settlement stands), retry (no answer yet).",
    ["outcome"],
)


def count_call(breaker: Breaker, infno: str, outcome: str) -> None:
    """A hub call's outcome, and the breaker's state it left behind (open after a failure)."""
    HUB_CALLS.labels(infno, outcome).inc()
    BREAKER_STATE.set(int(breaker.state))


async def oldest_pending_age_s(db: Database, now: dt.datetime) -> float:
    """Seconds the oldest pending queue row has waited at ``now`` (0.0 when none is pending).
    Called only when the queue is not empty (the round has just counted it)."""
    oldest = await db.read(_oldest_pending_created_at)
    return 0.0 if oldest is None else max(0.0, (now - as_utc(oldest)).total_seconds())


def _oldest_pending_created_at(session: Session) -> dt.datetime | None:
    # Served by ix_hub_reversals_status_next_attempt_at's leading column; the pending rows
    # are the queue, small unless the hub has been away for long.
    return session.scalar(
        select(func.min(HubReversalRow.created_at)).where(
            HubReversalRow.status == ReversalStatus.PENDING
        )
    )
