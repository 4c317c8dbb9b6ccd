"""Metrics of the hub client and the reversal queue (see gateway.metrics for multiprocess
mode; imported only by worker code, never by the supervisor).

Labels are bounded: ``infno`` is one of the contract's codes, ``outcome`` one of
ok | refused | not_sent | unknown; a cancel resolution's ``outcome`` one of
cancelled | not_cancelled | retry.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

__all__ = [
    "BREAKER_STATE",
    "CANCEL_RESOLUTIONS",
    "HUB_CALLS",
    "REVERSALS",
    "REVERSAL_QUEUE_DEPTH",
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
