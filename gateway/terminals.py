"""The terminal directory: who a terminal is and its secret, with a short in-process cache.

Every signed request needs its terminal's secret. Reading it from the database every time would
cost one transaction per request, so each worker keeps a bounded LRU of recent lookups for
``ttl_s`` seconds. That TTL is also how long a terminal disabled in the database keeps working
in a worker: short by default (10 s). Unknown ids are cached as well (same TTL), so a client
spraying wrong ids costs one query per id per TTL; the LRU bound keeps that from growing memory.

Concurrent misses for the same id share one query (single flight).

Secrets are stored sealed (gateway.sealing): the directory opens them with the KEK ring it is
given, in the database thread, so a cached record holds them opened, in memory only. A sealed
secret it cannot open (no KEK, or not the KEK it was sealed with) is answered 503
KEK_UNAVAILABLE and not cached: the operator's fix takes effect at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from gateway import metrics
from gateway.db import Database
from gateway.errors import ErrorCode, GatewayError
from gateway.store import Opener, SecretsUnavailable, TerminalRecord, find_terminal

__all__ = ["TerminalDirectory"]


class TerminalDirectory:
    def __init__(
        self,
        db: Database,
        *,
        ttl_s: float,
        max_entries: int,
        monotonic: Callable[[], float] = time.monotonic,
        opener: Opener | None = None,
    ) -> None:
        assert ttl_s >= 0
        assert max_entries >= 1
        self._db = db
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._opener = opener
        self._entries: OrderedDict[str, tuple[float, TerminalRecord | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Task[TerminalRecord | None]] = {}

    async def get(self, terminal_id: str) -> TerminalRecord | None:
        """The terminal, or None if no terminal has this id."""
        now = self._monotonic()
        entry = self._entries.get(terminal_id)
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(terminal_id)
            metrics.TERMINAL_HITS.inc()
            return entry[1]
        metrics.TERMINAL_MISSES.inc()
        task = self._loading.get(terminal_id)
        if task is None:
            # The load runs in its own task so that a caller cancelled mid-way (client gone)
            # does not cancel it for the other callers sharing it.
            task = asyncio.create_task(self._load(terminal_id))
            self._loading[terminal_id] = task
            task.add_done_callback(partial(self._loaded, terminal_id))
        return await asyncio.shield(task)

    async def _load(self, terminal_id: str) -> TerminalRecord | None:
        try:
            record = await self._db.read(
                partial(find_terminal, terminal_id=terminal_id, opener=self._opener)
            )
        except SecretsUnavailable as exc:
            raise GatewayError(ErrorCode.KEK_UNAVAILABLE, str(exc)) from None
        self._remember(terminal_id, record)
        return record

    def _loaded(self, terminal_id: str, task: asyncio.Task[TerminalRecord | None]) -> None:
        self._loading.pop(terminal_id, None)
        if not task.cancelled():
            # Mark a failure as retrieved even if every caller has gone away meanwhile.
            task.exception()

    def forget(self, terminal_id: str) -> None:
        """Drop a cached entry (e.g. after disabling a terminal through this worker)."""
        self._entries.pop(terminal_id, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _remember(self, terminal_id: str, record: TerminalRecord | None) -> None:
        self._entries[terminal_id] = (self._monotonic() + self._ttl_s, record)
        self._entries.move_to_end(terminal_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
