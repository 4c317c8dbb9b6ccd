"""Token buckets per terminal, in one worker's memory: a guard against one runaway client
starving the others.

This is the local half of the per-terminal limit: gateway.limits.guards.TerminalLimits answers
from these buckets with no round trip and settles with the buckets every worker and replica
share (gateway.limits.store) every ``limits_sync_s``. The number of buckets is bounded (LRU): a
forgotten bucket restarts full, which only ever errs towards letting a request through.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["TokenBuckets"]


class TokenBuckets:
    def __init__(self, *, rate_per_s: float, burst: int, max_keys: int) -> None:
        assert rate_per_s > 0
        assert burst >= 1
        assert max_keys >= 1
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._max_keys = max_keys
        # key -> (tokens, time of last refill in monotonic seconds)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now_s: float) -> float | None:
        """Take one token for ``key``. None if granted, else seconds until one is available."""
        tokens, last_s = self._buckets.get(key, (self._burst, now_s))
        tokens = min(self._burst, tokens + max(0.0, now_s - last_s) * self._rate_per_s)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now_s)
            return None
        self._store(key, tokens, now_s)
        return (1.0 - tokens) / self._rate_per_s

    def _store(self, key: str, tokens: float, now_s: float) -> None:
        self._buckets[key] = (tokens, now_s)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
