"""The in-process bounds: terminal directory cache (TTL, LRU, single flight) and token buckets."""

from __future__ import annotations

import asyncio

import pytest
from gateway_testkit import OFF_TERMINAL, OK_TERMINAL
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.rate_limit import TokenBuckets
from gateway.store import Terminal
from gateway.terminals import TerminalDirectory


class Ticks:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class CountingDatabase(Database):
    reads = 0

    async def read(self, unit):  # type: ignore[no-untyped-def,override]
        self.reads += 1
        await asyncio.sleep(0.01)  # let concurrent callers pile up
        return await super().read(unit)


@pytest.fixture
def db(engine: Engine):
    database = CountingDatabase(engine, threads=2)
    yield database
    database.close()


async def test_cache_serves_within_ttl_then_reloads(db: CountingDatabase, engine: Engine):
    ticks = Ticks()
    directory = TerminalDirectory(db, ttl_s=10, max_entries=100, monotonic=ticks)
    first = await directory.get(OK_TERMINAL)
    assert first is not None
    assert first.enabled
    with Session(engine) as session, session.begin():
        session.execute(
            update(Terminal).where(Terminal.terminal_id == OK_TERMINAL).values(enabled=False)
        )
    ticks.now_s = 9.9
    assert (await directory.get(OK_TERMINAL)) == first  # still cached: bounded staleness
    ticks.now_s = 10.1
    reloaded = await directory.get(OK_TERMINAL)
    assert reloaded is not None
    assert not reloaded.enabled
    assert db.reads == 2


async def test_unknown_ids_are_cached_too(db: CountingDatabase):
    directory = TerminalDirectory(db, ttl_s=10, max_entries=100, monotonic=Ticks())
    assert await directory.get("NOPE") is None
    assert await directory.get("NOPE") is None
    assert db.reads == 1


async def test_cache_is_bounded_lru(db: CountingDatabase):
    directory = TerminalDirectory(db, ttl_s=10, max_entries=2, monotonic=Ticks())
    for terminal_id in ("A-1", "A-2", "A-3", OK_TERMINAL, OFF_TERMINAL):
        await directory.get(terminal_id)
    assert len(directory) == 2


async def test_concurrent_misses_share_one_query(db: CountingDatabase):
    directory = TerminalDirectory(db, ttl_s=10, max_entries=100, monotonic=Ticks())
    results = await asyncio.gather(*(directory.get(OK_TERMINAL) for _ in range(10)))
    assert len({id(r) for r in results}) == 1
    assert db.reads == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(db: CountingDatabase):
    directory = TerminalDirectory(db, ttl_s=10, max_entries=100, monotonic=Ticks())
    first = asyncio.ensure_future(directory.get(OK_TERMINAL))
    second = asyncio.ensure_future(directory.get(OK_TERMINAL))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second) is not None
    assert db.reads == 1


def test_token_bucket_burst_then_rate():
    buckets = TokenBuckets(rate_per_s=2, burst=3, max_keys=10)
    assert [buckets.take("t", 0.0) for _ in range(3)] == [None, None, None]
    assert buckets.take("t", 0.0) == pytest.approx(0.5)
    assert buckets.take("t", 0.5) is None  # one token back after 1/rate seconds
    assert buckets.take("other", 0.5) is None  # buckets are per key


def test_token_buckets_are_bounded_and_forget_towards_allowing():
    buckets = TokenBuckets(rate_per_s=1, burst=1, max_keys=2)
    assert buckets.take("a", 0.0) is None
    assert buckets.take("a", 0.0) is not None
    buckets.take("b", 0.0)
    buckets.take("c", 0.0)  # evicts "a"
    assert buckets.take("a", 0.0) is None


def test_clock_going_backwards_never_mints_tokens():
    buckets = TokenBuckets(rate_per_s=1, burst=1, max_keys=2)
    assert buckets.take("a", 100.0) is None
    assert buckets.take("a", 50.0) is not None
