"""The in-process bounds: terminal directory cache (TTL, LRU, single flight) and token buckets."""

from __future__ import annotations

import asyncio
import threading
from functools import partial

import pytest
from gateway_testkit import OFF_TERMINAL, OK_TERMINAL
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.errors import ERRORS, ErrorCode, GatewayError
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


# --- the bounded process caches and the writer queue -------------------------------------------


def test_process_caches_keyed_by_a_setting_are_bounded_lru():
    """Keyed by a setting (one entry in a serving process), bounded for processes that build
    many apps: the least recently used entry goes, and a hit keeps its entry."""
    from gateway import front_door

    cache = front_door._page_with_docs
    cache.cache_clear()
    pages = [front_door.front_page(f"https://docs.example/{i}", "http://gw") for i in range(20)]
    assert b"https://docs.example/19" in pages[-1]
    info = cache.cache_info()
    assert (info.currsize, info.maxsize) == (front_door._PAGES_MAX, front_door._PAGES_MAX)
    front_door.front_page("https://docs.example/19", "http://gw")
    assert cache.cache_info().hits == info.hits + 1
    front_door.front_page("https://docs.example/0", "http://gw")  # evicted: built again
    assert cache.cache_info().misses == info.misses + 1
    cache.cache_clear()


def test_programme_files_are_cached_per_path_and_bounded(tmp_path):
    from gateway.issuance_api import calls
    from issuance.programme import DEFAULT_PROGRAMME_FILE

    calls._programme_file.cache_clear()
    paths = []
    for i in range(calls._PROGRAMME_FILES_MAX + 3):
        path = tmp_path / f"programme-{i}.toml"
        path.write_bytes(DEFAULT_PROGRAMME_FILE.read_bytes())
        paths.append(path)
        calls._programme_file(path)
    assert calls._programme_file(paths[-1]) is calls._programme_file(paths[-1])
    assert calls._programme_file.cache_info().currsize == calls._PROGRAMME_FILES_MAX
    calls._programme_file.cache_clear()


def test_demo_issuing_ca_is_bounded_per_seed():
    from issuance import production

    production.demo_issuing_ca.cache_clear()
    first = production.demo_issuing_ca("bound-test-0")
    assert production.demo_issuing_ca("bound-test-0") is first
    assert production.demo_issuing_ca.cache_info().maxsize == production._DEMO_CAS_MAX
    production.demo_issuing_ca.cache_clear()


class _Gate:
    """A unit that holds the writer until released (in a pool thread)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, session: Session) -> str:
        self.entered.set()
        assert self.release.wait(10)
        return "held"


async def test_a_full_writer_queue_refuses_at_once_with_503_and_runs_nothing(engine: Engine):
    database = Database(engine, threads=2, write_queue_max=2, inline_writes=False)
    try:
        gate = _Gate()
        ran: list[str] = []

        def note(name: str, session: Session) -> str:
            ran.append(name)
            return name

        holding = asyncio.ensure_future(database.write(gate))
        await asyncio.to_thread(gate.entered.wait, 10)  # taken off the queue, running
        queued = [asyncio.ensure_future(database.write(partial(note, f"q{i}"))) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(GatewayError) as refused:
            await database.write(partial(note, "refused"))
        assert refused.value.code == ErrorCode.OVERLOADED
        spec = ERRORS[refused.value.code]
        assert (spec.status, spec.retry_after_s) == (503, 2)
        gate.release.set()
        assert await holding == "held"
        assert [await q for q in queued] == ["q1", "q2"]
        assert ran == ["q1", "q2"]  # the refused unit never ran
        assert await database.write(partial(note, "after")) == "after"  # room again
    finally:
        gate.release.set()
        database.close()


def test_the_writer_queue_bound_is_a_setting_with_the_same_default():
    from gateway.db import DEFAULT_WRITE_QUEUE_MAX
    from gateway.settings import Settings

    assert Settings().db_write_queue_max == DEFAULT_WRITE_QUEUE_MAX
    assert Database.__init__.__kwdefaults__["write_queue_max"] == DEFAULT_WRITE_QUEUE_MAX
