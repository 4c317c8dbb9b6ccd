"""The counters that guard the gateway, shared by every worker and replica (gateway.limits.store).

:class:`TerminalLimits` (every signed request; the hot path)
    Each worker keeps its in-memory token bucket per terminal (gateway.rate_limit) and answers
    from it with no round trip. Every ``limits_sync_s`` it spends what it admitted since the
    last sync from the terminal's *shared* bucket, in one statement (or one Redis pipeline) for
    all terminals it saw, and learns each balance: a terminal whose shared bucket is empty is
    refused by this worker until the bucket has refilled enough to pay its debt. So over any
    stretch of time a terminal gets ``terminal_burst + terminal_rate_per_s × t`` requests
    across all workers and replicas, give or take what the workers admit before they compare
    notes: at most ``workers × (terminal_burst + terminal_rate_per_s × limits_sync_s)`` once,
    which the debt then makes up for. The trade-off: no per-request round trip (the figure in
    docs/operations.md), for a bounded overshoot of one sync interval.
:class:`WrongTokenGuard` (the ops token's brute-force guard; rare requests)
    Every ops request asks the shared bucket first (one round trip: ops requests are a few a
    minute) and a wrong token spends from it at once, so ``ops_wrong_tokens_allowed`` wrong
    tokens in total, from any worker or replica, lock the address (see gateway.ops.access).

When the store fails (database or Redis away), each guard falls back to what this worker alone
knows (its local buckets) and logs it, rather than refusing every request: a guard bounds
damage, it must not cause an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web

from gateway.limits.store import BucketSpec, BucketStore, RedisBucketStore, SqlBucketStore
from gateway.logs import fields
from gateway.ops.guard import WrongTokenGuard as LocalWrongTokenGuard
from gateway.rate_limit import TokenBuckets
from gateway.settings import Settings

__all__ = [
    "LIMIT_STORE",
    "OPS_WRONG_TOKENS",
    "TERMINAL_SCOPE",
    "WRONG_TOKEN_SCOPE",
    "TerminalLimits",
    "WrongTokenGuard",
    "limits_context",
    "make_store",
]

log = logging.getLogger("gateway.limits")

TERMINAL_SCOPE: Final = "terminal"
WRONG_TOKEN_SCOPE: Final = "ops-wrong"  # noqa: S105 - a bucket scope, not a secret
# Stale buckets forgotten per sweep (every SWEEP_EVERY syncs), so the table stays small.
SWEEP_LIMIT: Final = 5000
SWEEP_EVERY: Final = 60


class TerminalLimits:
    """Per-terminal rate limit: local answer, shared count (module docstring). Event loop only."""

    def __init__(self, settings: Settings) -> None:
        self.spec = BucketSpec(
            TERMINAL_SCOPE, settings.terminal_burst, settings.terminal_rate_per_s
        )
        self._max_keys = settings.terminal_cache_max_entries
        self._local = TokenBuckets(
            rate_per_s=settings.terminal_rate_per_s,
            burst=settings.terminal_burst,
            max_keys=self._max_keys,
        )
        # Admitted since the last sync, per terminal (bounded: max_keys terminals).
        self._admitted: dict[str, int] = {}
        # Terminals whose shared bucket was empty at the last sync -> refused until (unix s).
        self._blocked: OrderedDict[str, float] = OrderedDict()
        self.store: BucketStore | None = None

    def take(self, key: str, now_s: float) -> float | None:
        """None if ``key`` may send a request now, else seconds until it may."""
        until_s = self._blocked.get(key)
        if until_s is not None:
            if now_s < until_s:
                return until_s - now_s
            del self._blocked[key]
        wait_s = self._local.take(key, now_s)
        if wait_s is None and (key in self._admitted or len(self._admitted) < self._max_keys):
            self._admitted[key] = self._admitted.get(key, 0) + 1
        return wait_s

    async def sync(self, now_s: float) -> None:
        """Spend what was admitted from the shared buckets; block the terminals in debt."""
        if self.store is None or not (self._admitted or self._blocked):
            return
        admitted, self._admitted = self._admitted, {}
        # The terminals this worker refuses are read again too (cost 0): another worker may
        # have deepened their debt, or the refill paid it.
        items = list(admitted.items()) + [(k, 0) for k in self._blocked if k not in admitted]
        balances = await self.store.spend(
            self.spec, [(key, float(count)) for key, count in items], int(now_s * 1000)
        )
        for (key, _), balance in zip(items, balances, strict=True):
            if balance < 1.0:
                self._blocked[key] = now_s + (1.0 - balance) / self.spec.refill_per_s
                self._blocked.move_to_end(key)
            else:
                self._blocked.pop(key, None)
        while len(self._blocked) > self._max_keys:
            self._blocked.popitem(last=False)


class WrongTokenGuard:
    """The ops token's lock-out, counted in the shared store (gateway.ops.access calls it).

    Falls back to a per-worker count (gateway.ops.guard) when the store fails.
    """

    def __init__(self, settings: Settings, store: BucketStore) -> None:
        self.spec = BucketSpec(
            WRONG_TOKEN_SCOPE,
            settings.ops_wrong_tokens_allowed,
            1.0 / settings.ops_wrong_token_refill_s,
        )
        self.allowed = settings.ops_wrong_tokens_allowed
        self._store = store
        self._local = LocalWrongTokenGuard(
            allowed=settings.ops_wrong_tokens_allowed,
            refill_s=settings.ops_wrong_token_refill_s,
        )

    async def wait_s(self, key: str, now_s: float) -> float | None:
        """None if ``key`` may present a token now, else seconds until it may."""
        try:
            (balance,) = await self._store.spend(self.spec, [(key, 0.0)], int(now_s * 1000))
        except Exception:
            log.exception("shared ops guard unavailable: this worker's own count decides")
            return self._local.wait_s(key, now_s)
        if balance >= 1.0:
            return None
        return (1.0 - balance) / self.spec.refill_per_s

    async def wrong(self, key: str, now_s: float) -> bool:
        """Record a wrong token from ``key``; True when that used up its allowance."""
        self._local.wrong(key, now_s)
        try:
            (balance,) = await self._store.spend(self.spec, [(key, 1.0)], int(now_s * 1000))
        except Exception:
            log.exception("shared ops guard unavailable: this worker's own count decides")
            return self._local.wait_s(key, now_s) is not None
        return balance < 1.0


def make_store(settings: Settings, db: object) -> BucketStore:
    """Redis when ``redis_url`` is set, else the database the worker uses."""
    if settings.redis_url:
        return RedisBucketStore(settings.redis_url, prefix=settings.redis_key_prefix)
    from gateway.db import Database

    assert isinstance(db, Database)
    return SqlBucketStore(db)


LIMIT_STORE: Final = web.AppKey("limit_store", BucketStore)
OPS_WRONG_TOKENS: Final = web.AppKey("ops_wrong_tokens", WrongTokenGuard)


async def limits_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the database, before ops): the shared store, and this worker's sync
    task for the terminal limits."""
    from gateway.state import CLOCK, DATABASE, RATE_LIMITS, SETTINGS

    settings = app[SETTINGS]
    store = make_store(settings, app[DATABASE])
    if isinstance(store, RedisBucketStore):
        # Refuse to start rather than guard nothing: a wrong redis_url is a configuration error.
        try:
            await store.ping()
        except Exception as exc:
            await store.close()
            raise RuntimeError(f"redis_url: Redis does not answer: {exc}") from None
    app[LIMIT_STORE] = store
    guard = WrongTokenGuard(settings, store)
    app[OPS_WRONG_TOKENS] = guard
    limits = app[RATE_LIMITS]
    limits.store = store
    task = asyncio.create_task(
        _sync_forever(limits, (limits.spec, guard.spec), store, app[CLOCK], settings.limits_sync_s),
        name="limits-sync",
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(Exception):
        await limits.sync(app[CLOCK]())  # what this worker admitted last still counts
    await store.close()


async def _sync_forever(
    limits: TerminalLimits,
    specs: tuple[BucketSpec, ...],
    store: BucketStore,
    clock: Callable[[], float],
    every_s: float,
) -> None:
    rounds = 0
    while True:
        await asyncio.sleep(every_s)
        rounds += 1
        try:
            await limits.sync(clock())
            if rounds % SWEEP_EVERY == 0:
                now_ms = int(clock() * 1000)
                for spec in specs:
                    await store.sweep(spec, now_ms, SWEEP_LIMIT)
        except Exception:  # the local buckets keep guarding; the next round retries
            log.exception("shared limits sync failed", extra=fields(every_s=every_s))
