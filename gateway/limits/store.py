"""Token buckets every worker and every replica share: in the database (PostgreSQL, or the
embedded SQLite file), or in Redis where ``redis_url`` is set.

A bucket is (scope, key) → tokens, last update. It holds at most ``capacity`` tokens and
gains ``refill_per_s`` a second; spending may take it below zero, down to ``-capacity`` (a
debt: a client that overshot while the workers had not yet compared notes waits it off, for at
most ``2 × capacity / refill_per_s``). Every operation is one atomic statement (SQL: INSERT …
ON CONFLICT DO UPDATE … RETURNING, on both databases; Redis: one Lua script per bucket, all of
a batch in one pipeline), so two workers spending at once never both see the same balance.

:class:`BucketStore` is the interface; :class:`SqlBucketStore` and :class:`RedisBucketStore`
are the two stores. Times are the caller's clock in milliseconds (replicas' clocks differ by a
few ms under NTP; a negative elapsed time counts as zero).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Protocol

from sqlalchemy import BigInteger, Double, String, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.db import Database
from gateway.store import GatewayBase

__all__ = [
    "BucketSpec",
    "BucketStore",
    "GuardBucket",
    "RedisBucketStore",
    "SqlBucketStore",
    "refill",
]

# Most buckets one spend() call touches (one statement's VALUES list, one pipeline).
MAX_BATCH: Final = 1000
# Redis keys live this long past the moment the bucket would be full again (then it is the
# same as no key). Keys start with the setting redis_key_prefix, this by default, so that
# gateways sharing one Redis can be told apart.
REDIS_PREFIX: Final = "ssc-gateway:limit:"


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """A kind of bucket: ``scope`` names it in the store; the allowance and refill are settings."""

    scope: str
    capacity: float
    refill_per_s: float

    def __post_init__(self) -> None:
        assert self.capacity >= 1
        assert self.refill_per_s > 0
        assert 1 <= len(self.scope) <= 16

    @property
    def full_after_ms(self) -> int:
        """From the deepest debt to full: after this long untouched, a bucket is as if new."""
        return int(2 * self.capacity / self.refill_per_s * 1000) + 1


def refill(spec: BucketSpec, tokens: float, updated_ms: int, now_ms: int) -> float:
    """The balance at ``now_ms`` of a bucket that held ``tokens`` at ``updated_ms``."""
    elapsed_ms = max(0, now_ms - updated_ms)
    return min(spec.capacity, tokens + elapsed_ms * spec.refill_per_s / 1000)


class BucketStore(Protocol):
    async def spend(
        self, spec: BucketSpec, costs: Sequence[tuple[str, float]], now_ms: int
    ) -> list[float]:
        """Spend ``cost`` from each ``key`` (unconditionally; a cost of 0 only reads) and
        return the balances after, in order."""
        ...

    async def sweep(self, spec: BucketSpec, now_ms: int, limit: int) -> int:
        """Forget up to ``limit`` buckets untouched long enough to be full again."""
        ...

    async def close(self) -> None: ...


class GuardBucket(GatewayBase):
    __tablename__ = "guard_buckets"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    updated_ms: Mapped[int] = mapped_column(BigInteger, index=True)


def _spend_unit(
    session: Session, spec: BucketSpec, costs: Sequence[tuple[str, float]], now_ms: int
) -> list[float]:
    """A write unit: one INSERT … ON CONFLICT DO UPDATE … RETURNING, executed for the whole
    batch at once (SQLAlchemy's insertmanyvalues: one statement, compiled once per spec)."""
    assert 1 <= len(costs) <= MAX_BATCH
    stmt = _spend_statement(session.get_bind().dialect.name, spec)
    floor = -spec.capacity
    rows = [
        {
            "scope": spec.scope,
            "key": key,
            "tokens": max(floor, spec.capacity - cost),
            "updated_ms": now_ms,
        }
        for key, cost in costs
    ]
    # RETURNING's row order is not promised: match the balances back by key.
    balances = {key: float(tokens) for key, tokens in session.execute(stmt, rows).all()}
    return [balances[key] for key, _ in costs]


@functools.lru_cache(maxsize=16)
def _spend_statement(dialect: str, spec: BucketSpec) -> Any:
    table = GuardBucket.__table__
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    old, new = table.c, stmt.excluded
    cap, floor, rate_per_ms = spec.capacity, -spec.capacity, spec.refill_per_s / 1000
    # The inserted row carries now (updated_ms) and cap - cost (tokens): the existing row is
    # refilled up to now, capped, then charged the cost, and floored at -capacity.
    elapsed = _case(old.updated_ms < new.updated_ms, new.updated_ms - old.updated_ms, 0)
    refilled = old.tokens + elapsed * rate_per_ms
    capped = _case(refilled > cap, cap, refilled)
    spent = capped - (cap - new.tokens)
    return stmt.on_conflict_do_update(
        index_elements=[old.scope, old.key],
        set_={"tokens": _case(spent < floor, floor, spent), "updated_ms": new.updated_ms},
    ).returning(old.key, old.tokens)


def _case(condition: Any, then: Any, otherwise: Any) -> Any:
    # CASE rather than LEAST/GREATEST: SQLite has neither (its MIN/MAX of several arguments
    # are not PostgreSQL's aggregates of the same names).
    return case((condition, then), else_=otherwise)


def _sweep_unit(session: Session, spec: BucketSpec, before_ms: int, limit: int) -> int:
    stale = (
        select(GuardBucket.key)
        .where(GuardBucket.scope == spec.scope, GuardBucket.updated_ms < before_ms)
        .limit(limit)
    )
    result = session.execute(
        delete(GuardBucket).where(GuardBucket.scope == spec.scope, GuardBucket.key.in_(stale))
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted


class SqlBucketStore:
    """Buckets in the ``guard_buckets`` table, through the worker's Database (one write unit a
    call: on SQLite it joins the writer's group commit; durable=False, because losing the last
    spends in a power cut only hands an attacker back a few tries)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def spend(
        self, spec: BucketSpec, costs: Sequence[tuple[str, float]], now_ms: int
    ) -> list[float]:
        out: list[float] = []
        for start in range(0, len(costs), MAX_BATCH):
            batch = list(costs[start : start + MAX_BATCH])
            out += await self._db.write(
                partial(_spend_unit, spec=spec, costs=batch, now_ms=now_ms),
                durable=False,
                grouped=True,
            )
        return out

    async def sweep(self, spec: BucketSpec, now_ms: int, limit: int) -> int:
        before_ms = now_ms - spec.full_after_ms
        deleted: int = await self._db.write(
            partial(_sweep_unit, spec=spec, before_ms=before_ms, limit=limit), durable=False
        )
        return deleted

    async def close(self) -> None:
        return None


# The same arithmetic as _spend_unit, atomically in Redis. KEYS[1] the bucket; ARGV: cost,
# capacity, refill per ms, now ms, TTL ms. Returns the balance after, as a string (Lua numbers
# would be truncated to integers on the way back).
_SPEND_LUA: Final = """
local cost = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = cap
if state[1] then
  local elapsed = now - tonumber(state[2])
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(cap, tonumber(state[1]) + elapsed * rate)
end
tokens = math.max(-cap, tokens - cost)
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'u', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return tostring(tokens)
"""


class RedisBucketStore:
    """Buckets as Redis hashes ``<prefix><scope>:<key>`` (``prefix``: the setting
    ``redis_key_prefix``, ``ssc-gateway:limit:`` by default) that expire once full again (so
    nothing needs sweeping). One pipeline round trip per spend() call."""

    def __init__(self, url: str, *, prefix: str = REDIS_PREFIX) -> None:
        import redis.asyncio as redis_asyncio

        assert prefix, "an empty prefix would share the keyspace with anything in that Redis"
        self.prefix = prefix

        # Short timeouts: a guard must not hang a request when Redis is away; the caller
        # decides what a failure means (gateway.limits.guards: fail open, logged).
        self._redis: Any = redis_asyncio.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True
        )
        self._script: Any = self._redis.register_script(_SPEND_LUA)

    async def ping(self) -> None:
        await self._redis.ping()

    async def spend(
        self, spec: BucketSpec, costs: Sequence[tuple[str, float]], now_ms: int
    ) -> list[float]:
        out: list[float] = []
        rate_per_ms = spec.refill_per_s / 1000
        for start in range(0, len(costs), MAX_BATCH):
            batch = costs[start : start + MAX_BATCH]
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, cost in batch:
                    await self._script(
                        keys=[f"{self.prefix}{spec.scope}:{key}"],
                        args=[cost, spec.capacity, rate_per_ms, now_ms, spec.full_after_ms],
                        client=pipe,
                    )
                results = await pipe.execute()
            out += [float(value) for value in results]
        return out

    async def sweep(self, spec: BucketSpec, now_ms: int, limit: int) -> int:
        return 0  # keys expire by themselves

    async def close(self) -> None:
        await self._redis.aclose()
