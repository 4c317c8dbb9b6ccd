"""gateway.db's write queue: grouped units share one transaction (one commit), each in its own
savepoint, so one failing unit rolls back alone; ungrouped units keep a transaction of their
own; durable=False batches commit with synchronous=NORMAL and the connection goes back to the
configured level afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import partial

import pytest
from gateway_testkit import OK_TERMINAL, nonce_count
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import store
from gateway.db import Database


@pytest.fixture
def db(engine: Engine) -> Iterator[Database]:
    database = Database(engine, threads=2)
    yield database
    database.close()


def _insert(nonce: str, session: Session) -> str:
    store.consume_nonce(session, OK_TERMINAL, nonce, 1)
    return nonce


async def test_grouped_units_share_one_commit_and_fail_alone(db: Database, engine: Engine) -> None:
    await db.write(partial(_insert, "already-used-nonce-01"), grouped=True)
    before = db.batches
    names = [f"grouped-nonce-{i:08d}" for i in range(10)]
    # Queued in one go: they all go into the next transaction, the duplicate among them too.
    results = await asyncio.gather(
        *(db.write(partial(_insert, name), grouped=True) for name in names[:5]),
        db.write(partial(_insert, "already-used-nonce-01"), grouped=True),
        *(db.write(partial(_insert, name), grouped=True) for name in names[5:]),
        return_exceptions=True,
    )
    assert results[:5] == names[:5]
    assert isinstance(results[5], IntegrityError)
    assert results[6:] == names[5:]
    assert db.batches == before + 1
    assert nonce_count(engine) == 11


async def test_ungrouped_units_keep_their_own_transaction(db: Database, engine: Engine) -> None:
    before = db.batches
    await asyncio.gather(
        *(db.write(partial(_insert, f"own-transaction-{i:06d}")) for i in range(4))
    )
    assert db.batches == before + 4
    assert nonce_count(engine) == 4


async def test_a_failing_grouped_unit_leaves_no_orm_state_behind(
    db: Database, engine: Engine
) -> None:
    def add_then_fail(session: Session) -> None:
        session.add(
            store.RequestNonce(terminal_id=OK_TERMINAL, nonce="orm-pending-0001", expires_at_s=1)
        )
        raise ValueError("changed my mind")

    results = await asyncio.gather(
        db.write(add_then_fail, grouped=True),
        db.write(partial(_insert, "after-the-failure-01"), grouped=True),
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError)
    assert results[1] == "after-the-failure-01"
    assert nonce_count(engine) == 1


async def test_ephemeral_batches_commit_without_fsync_then_restore(
    db: Database, engine: Engine
) -> None:
    # Each unit reports the durability its own transaction commits with: SQLite's
    # synchronous level (2 = FULL, 1 = NORMAL) or PostgreSQL's synchronous_commit.
    if engine.dialect.name == "sqlite":
        query, relaxed, durable = "PRAGMA synchronous", "1", "2"
    else:
        query, relaxed, durable = "SHOW synchronous_commit", "off", "on"

    def level(session: Session) -> str:
        return str(session.execute(text(query)).scalar_one())

    assert await db.write(level, durable=False, grouped=True) == relaxed
    assert await db.write(level, grouped=True) == durable
    assert await db.write(level) == durable
