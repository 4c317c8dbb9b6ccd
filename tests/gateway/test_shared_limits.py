"""Shared limits (gateway.limits): token buckets in the database or Redis that two workers
spend from together, the terminal limit's local answer and periodic sync, the ops lock-out
behind trusted proxies, and the settings refused at start.

The database stores run on SQLite and (mark ``postgres``) PostgreSQL; the Redis store on the
Redis at 127.0.0.1:6379 (mark ``redis``), each test under keys of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gateway_testkit import Client, FakeClock, assert_problem
from sqlalchemy import Engine

from gateway.db import Database
from gateway.limits.guards import TerminalLimits, make_store
from gateway.limits.proxies import TrustedProxies, parse_trusted_proxies
from gateway.limits.store import (
    REDIS_PREFIX,
    BucketSpec,
    BucketStore,
    RedisBucketStore,
    SqlBucketStore,
)
from gateway.settings import Settings, SettingsError, load_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "ops-test-token-" + "x" * 32
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer " + "w" * 40}


# --- the stores -----------------------------------------------------------------------------


@pytest.fixture(params=["db", pytest.param("redis", marks=pytest.mark.redis)])
async def two_stores(
    request: pytest.FixtureRequest, migrated_engine: Engine
) -> AsyncIterator[tuple[BucketStore, BucketStore]]:
    """Two stores over one shared place, as two workers (or replicas) have."""
    if request.param == "db":
        first, second = Database(migrated_engine, threads=2), Database(migrated_engine, threads=2)
        try:
            yield SqlBucketStore(first), SqlBucketStore(second)
        finally:
            first.close()
            second.close()
        return
    stores = RedisBucketStore(REDIS_URL), RedisBucketStore(REDIS_URL)
    try:
        await stores[0].ping()
    except Exception:
        pytest.fail("Redis is not running at 127.0.0.1:6379 (README: servers the tests need)")
    yield stores
    for store in stores:
        await store.close()


def spec(capacity: float = 3, refill_per_s: float = 1.0) -> BucketSpec:
    # A scope of its own per test: a shared Redis keeps other tests' buckets apart.
    return BucketSpec("t" + secrets.token_hex(6), capacity, refill_per_s)


async def test_two_workers_spend_from_one_bucket(two_stores: tuple[BucketStore, BucketStore]):
    a, b = two_stores
    s = spec(capacity=3, refill_per_s=0.5)
    t = 1_000_000
    assert await a.spend(s, [("k", 1.0)], t) == [2.0]
    assert await b.spend(s, [("k", 1.0)], t) == [1.0]
    assert await a.spend(s, [("k", 1.0)], t) == [0.0]
    # Reading (cost 0) from either worker sees the same balance; another key is untouched.
    assert await b.spend(s, [("k", 0.0), ("other", 0.0)], t) == [0.0, 3.0]
    # 0.5 token a second: 2 s later one token is back, and a spend takes it.
    assert await b.spend(s, [("k", 1.0)], t + 2000) == [0.0]
    assert await a.spend(s, [("k", 0.0)], t + 4000) == [1.0]


async def test_spending_beyond_empty_is_a_bounded_debt(
    two_stores: tuple[BucketStore, BucketStore],
):
    a, b = two_stores
    s = spec(capacity=3, refill_per_s=1.0)
    t = 5_000_000
    assert await a.spend(s, [("k", 5.0)], t) == [-2.0]
    assert await b.spend(s, [("k", 10.0)], t) == [-3.0]  # floored at -capacity
    assert await a.spend(s, [("k", 0.0)], t + 4000) == [1.0]
    # Never above capacity however long it rests; a clock running behind counts no refill.
    assert await b.spend(s, [("k", 0.0)], t + 3_600_000) == [3.0]
    assert await a.spend(s, [("k", 1.0)], t) == [2.0]


async def test_a_batch_spends_each_key_and_answers_in_order(
    two_stores: tuple[BucketStore, BucketStore],
):
    a, _ = two_stores
    s = spec(capacity=10)
    costs = [(f"key-{n}", float(n)) for n in range(8)]
    assert await a.spend(s, costs, 1000) == [10.0 - n for n in range(8)]
    assert await a.spend(s, list(reversed(costs)), 1000) == [10.0 - 2 * n for n in range(7, -1, -1)]


async def test_full_buckets_are_swept_from_the_database(migrated_engine: Engine):
    db = Database(migrated_engine, threads=2)
    try:
        store = SqlBucketStore(db)
        s = spec(capacity=2, refill_per_s=1.0)
        await store.spend(s, [("old", 1.0), ("new", 1.0)], 1000)
        await store.spend(s, [("new", 1.0)], 5000)
        # "old" has rested longer than 2 × capacity / refill (4 s): it is as if new.
        assert await store.sweep(s, 1000 + s.full_after_ms + 1, 100) == 1
        assert await store.sweep(s, 1000 + s.full_after_ms + 1, 100) == 0  # "new" stays
        assert await store.spend(s, [("new", 0.0)], 5000) == [1.0]
    finally:
        db.close()


@pytest.mark.redis
async def test_redis_buckets_expire_once_full_again():
    store = RedisBucketStore(REDIS_URL)
    try:
        s = spec(capacity=2, refill_per_s=1.0)
        await store.spend(s, [("k", 1.0)], 1000)
        ttl_ms = await store._redis.pttl(f"{REDIS_PREFIX}{s.scope}:k")
        assert 0 < ttl_ms <= s.full_after_ms
    finally:
        await store.close()


@pytest.mark.redis
async def test_two_gateways_with_their_own_key_prefixes_do_not_share_counts(tmp_path: Any):
    """Staging and production (or two tenants) on one Redis: same scope, same terminal id, but
    each gateway's redis_key_prefix keeps its buckets apart."""
    tag = secrets.token_hex(4)
    prefixes = (f"staging-{tag}:limit:", f"production-{tag}:limit:")
    stores = [
        make_store(
            load_settings(
                environ={},
                overrides={"data_dir": tmp_path, "redis_url": REDIS_URL, "redis_key_prefix": p},
            ),
            None,
        )
        for p in prefixes
    ]
    staging, production = stores
    assert isinstance(staging, RedisBucketStore)
    assert isinstance(production, RedisBucketStore)
    try:
        try:
            await staging.ping()
        except Exception:
            pytest.fail("Redis is not running at 127.0.0.1:6379 (README: servers the tests need)")
        s = spec(capacity=3, refill_per_s=0.001)
        assert await staging.spend(s, [("T1", 3.0)], 1000) == [0.0]  # staging: spent
        assert await production.spend(s, [("T1", 1.0)], 1000) == [2.0]  # production: full
        assert await staging.spend(s, [("T1", 0.0)], 1000) == [0.0]
        for prefix in prefixes:
            assert await staging._redis.exists(f"{prefix}{s.scope}:T1") == 1
        assert await staging._redis.exists(f"{REDIS_PREFIX}{s.scope}:T1") == 0
    finally:
        for store in stores:
            await store.close()


def test_the_key_prefix_keeps_todays_keys_by_default_and_is_validated(tmp_path: Any):
    assert load_settings(environ={}, overrides={"data_dir": tmp_path}).redis_key_prefix == (
        REDIS_PREFIX
    )
    for bad in ("", "has space:", "x" * 65, "tenant*:", "ünï:"):
        with pytest.raises(SettingsError, match="GATEWAY_REDIS_KEY_PREFIX"):
            load_settings(environ={"GATEWAY_REDIS_KEY_PREFIX": bad}, overrides={})
    prefix = "ssc-gw.staging:limit:"
    good = load_settings(environ={"GATEWAY_REDIS_KEY_PREFIX": prefix}, overrides={})
    assert good.redis_key_prefix == prefix


# --- the terminal limit: local answer, shared count -----------------------------------------


def terminal_settings(tmp_path: Any, **extra: Any) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "data_dir": tmp_path,
            "terminal_burst": 3,
            "terminal_rate_per_s": 1.0,
            **extra,
        },
    )


async def test_terminal_limit_is_shared_after_a_sync(
    two_stores: tuple[BucketStore, BucketStore], tmp_path: Any
):
    settings = terminal_settings(tmp_path)
    workers = TerminalLimits(settings), TerminalLimits(settings)
    for worker, store in zip(workers, two_stores, strict=True):
        worker.spec = spec(capacity=3, refill_per_s=1.0)  # a scope of this test's own
        worker.store = store
    workers[1].spec = workers[0].spec
    now = 100.0
    # Before they compare notes each worker answers from its own bucket: 3 + 3 admitted.
    assert [w.take("T1", now) for w in workers for _ in range(3)] == [None] * 6
    await workers[0].sync(now)
    assert workers[0].take("T1", now) == pytest.approx(1.0)  # empty: one token's wait
    await workers[1].sync(now)
    await workers[0].sync(now)  # re-reads the terminals it refuses: the debt deepened
    # The shared bucket is 3 in debt: both refuse T1, for as long as the debt takes to refill.
    for worker in workers:
        assert worker.take("T1", now) == pytest.approx(4.0)
        assert worker.take("T2", now) is None  # another terminal is not concerned
    assert workers[0].take("T1", now + 4.0) is None
    await workers[0].sync(now + 4.0)
    assert workers[0].take("T1", now + 4.0) == pytest.approx(1.0)  # that one spent it again


async def test_terminal_limit_without_a_store_is_the_local_bucket(tmp_path: Any):
    limits = TerminalLimits(terminal_settings(tmp_path))
    assert [limits.take("T", 0.0) for _ in range(4)][-1] == pytest.approx(1.0)
    await limits.sync(0.0)  # nothing to settle with: no error


# --- trusted proxies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.5", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # left of it: the client's
        ("10.0.0.5", ["198.51.100.1, 10.0.0.7"], "198.51.100.1"),  # two proxies
        ("10.0.0.5", ["198.51.100.1", "10.0.0.7"], "198.51.100.1"),  # two headers
        ("10.0.0.5", ["garbage, 10.0.0.7"], "10.0.0.7"),  # stop at the last trusted hop
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["10.0.0.9"], "10.0.0.9"),  # proxies only: the leftmost
        ("::ffff:10.0.0.5", ["2001:db8::1"], "2001:db8::1"),
    ],
)
def test_the_client_behind_trusted_proxies(peer: str, forwarded: list[str], client: str):
    proxies = TrustedProxies.from_setting("10.0.0.0/8, ::1/128")
    assert proxies.client(peer, forwarded) == client


def test_no_trusted_proxies_believes_no_header():
    assert TrustedProxies.from_setting("").client("10.0.0.5", ["198.51.100.1"]) == "10.0.0.5"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is not a CIDR"),
        ("10.0.0.1/8", "has host bits set"),
        ("proxy.example", "'proxy.example' is not a CIDR"),
    ],
)
def test_malformed_trusted_proxies_are_refused_at_start(tmp_path: Any, value: str, needle: str):
    with pytest.raises(SettingsError, match=needle) as refused:
        load_settings(environ={"GATEWAY_TRUSTED_PROXIES": value}, overrides={"data_dir": tmp_path})
    assert "GATEWAY_TRUSTED_PROXIES" in str(refused.value)
    assert parse_trusted_proxies("10.0.0.0/8,,  2001:db8::/32 ")[1].prefixlen == 32


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("http://127.0.0.1:6379", "must start with redis://"),
        ("redis://user:hunter2@:6379/0", "names no host"),
        ("redis://127.0.0.1:notaport/0", "is not a URL"),
        ("redis://127.0.0.1:6379/zero", "database number"),
        ("unix://", "no socket path"),
    ],
)
def test_bad_redis_urls_are_refused_at_start(tmp_path: Any, value: str, needle: str):
    with pytest.raises(SettingsError, match=needle) as refused:
        load_settings(environ={"GATEWAY_REDIS_URL": value}, overrides={"data_dir": tmp_path})
    assert "GATEWAY_REDIS_URL" in str(refused.value)
    assert "(got" not in str(refused.value)  # a URL may carry a password: never echoed


def test_good_redis_urls_and_limits_settings_load(tmp_path: Any):
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.example:6380", "unix:///r.sock"):
        assert load_settings(environ={}, overrides={"data_dir": tmp_path, "redis_url": url})
    with pytest.raises(SettingsError, match="GATEWAY_OPS_WRONG_TOKENS_ALLOWED"):
        load_settings(environ={"GATEWAY_OPS_WRONG_TOKENS_ALLOWED": "0"}, overrides={})


# --- the ops lock-out over HTTP, behind a trusted proxy -------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The test client connects from 127.0.0.1: here that is "the proxy".
    return {
        "ops_token": TOKEN,
        "trusted_proxies": "127.0.0.0/8",
        "ops_wrong_tokens_allowed": 3,
        "ops_wrong_token_refill_s": 30.0,
    }


async def _summary(client: Client, forwarded_for: str | None, **headers: str) -> Any:
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return await client.get("/v1/ops/summary", headers=headers)


async def test_behind_a_trusted_proxy_one_client_is_locked_out_not_everyone(
    client: Client, clock: FakeClock
):
    for _ in range(3):
        await assert_problem(
            await _summary(client, "198.51.100.7", **WRONG), 401, "OPS_UNAUTHORIZED"
        )
    locked = await _summary(client, "198.51.100.7", **BEARER)
    await assert_problem(locked, 429, "OPS_TOO_MANY_WRONG_TOKENS")
    assert locked.headers["Retry-After"] == "30"
    # Another client behind the same proxy, and the proxy's own address, are not locked.
    assert (await _summary(client, "198.51.100.8", **BEARER)).status == 200
    assert (await _summary(client, None, **BEARER)).status == 200
    # A forged header left of the real client changes nothing for the locked one.
    forged = await _summary(client, "1.2.3.4, 198.51.100.7", **BEARER)
    await assert_problem(forged, 429, "OPS_TOO_MANY_WRONG_TOKENS")
    clock.now_s += 30
    assert (await _summary(client, "198.51.100.7", **BEARER)).status == 200


# --- the terminal limit through the signed-request path, two workers on one database --------


@pytest.mark.parametrize(
    "settings_overrides",
    [{"terminal_burst": 2, "terminal_rate_per_s": 0.5, "limits_sync_s": 60.0}],
)
async def test_two_workers_share_a_terminals_rate_limit(
    app: Any, settings: Settings, clock: FakeClock, client: Client
):
    from aiohttp.test_utils import TestClient, TestServer
    from gateway_testkit import Signer

    from gateway.app import create_app
    from gateway.state import RATE_LIMITS

    async with TestClient(TestServer(create_app(settings, clock=clock))) as second:
        workers = (client, second)
        signers = [Signer(w, clock) for w in workers]
        # Each worker answers from its own bucket until they compare notes: 2 + 2.
        for signer in signers:
            assert [(await signer.post()).status for _ in range(2)] == [200, 200]
        for worker in (*workers, client):  # the first re-reads what the second added
            await worker.app[RATE_LIMITS].sync(clock())
        # The shared bucket is 2 in debt: both workers refuse, with the wait the debt takes.
        for signer in signers:
            refused = await signer.post()
            await assert_problem(refused, 429, "RATE_LIMITED")
            assert refused.headers["Retry-After"] == "6"  # (1 - (-2)) / 0.5 tokens a second
        clock.now_s += 6
        assert (await signers[1].post()).status == 200
