"""A per-worker circuit breaker for the hub (熔断).

closed ──``failure_threshold`` consecutive connection failures──► open
open ──``open_s`` elapsed──► half-open: ONE trial call is let through
half-open ──trial answered──► closed;  ──trial failed──► open again

Only failures that say "the hub is not there" count (connection refused, timeouts, 5xx); an
answer of any kind, even a refusal, closes it. A response dropped after the hub committed is
not counted: it proves the hub is up. The clock is injected (monotonic seconds).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable

__all__ = ["Breaker", "BreakerState"]


class BreakerState(enum.IntEnum):
    # Ints, so the state can be a gauge: 0 closed, 1 half-open, 2 open.
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    def __init__(
        self,
        *,
        failure_threshold: int,
        open_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert failure_threshold >= 1
        assert open_s > 0
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.open_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_after_s(self) -> int:
        """Whole seconds until a trial call is allowed (at least 1)."""
        if self._opened_at is None:
            return 1
        left = self.open_s - (self._clock() - self._opened_at)
        return max(1, math.ceil(left))

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._trial_running:
            return False
        self._trial_running = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._trial_running = False

    def record_neutral(self) -> None:
        """An attempt that says nothing about reachability (e.g. a dropped response)."""
        self._trial_running = False
