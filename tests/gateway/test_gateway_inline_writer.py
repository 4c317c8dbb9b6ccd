"""gateway.db's inline writer (SQLite files): grouped units run on the event loop thread, on one
kept connection, under the cross-process lock; waiting for another process's lock, or for another
program's SQLite write lock, never blocks the loop; ungrouped units and PostgreSQL are unchanged."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from functools import partial

import pytest
from gateway_testkit import OK_TERMINAL, nonce_count
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway import store
from gateway.db import Database, sqlite_file_path
from gateway.errors import GatewayError

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def db(engine: Engine) -> Iterator[Database]:
    database = Database(engine, threads=2)
    yield database
    database.close()


def _insert(nonce: str, session: Session) -> str:
    """Insert a nonce; answer the name of the thread that ran the unit."""
    store.consume_nonce(session, OK_TERMINAL, nonce, 1)
    return threading.current_thread().name


async def _loop_runs_while_pending(task: asyncio.Future[object], ticks: int = 20) -> None:
    """Round trips the loop completes to a worker thread while ``task`` stays pending: each
    needs the loop free to run its callback, so a write that blocked the loop thread would
    hang here (and fail on the test timeout). Counted, not timed."""
    for _ in range(ticks):
        await asyncio.to_thread(lambda: None)
        assert not task.done(), "the write should still be waiting"


async def test_grouped_units_run_inline_on_the_loop_thread(db: Database, engine: Engine) -> None:
    assert db.inline_writes
    loop_thread = threading.current_thread().name
    threads = await asyncio.gather(
        *(db.write(partial(_insert, f"inline-nonce-{i:06d}"), grouped=True) for i in range(5))
    )
    assert set(threads) == {loop_thread}
    assert db.inline_batches == 1  # queued together: one batch, one commit
    # Ungrouped units keep their pool thread.
    assert await db.write(partial(_insert, "pool-nonce-000001")) != loop_thread
    assert nonce_count(engine) == 6


async def test_another_process_holding_the_lock_does_not_block_the_loop(
    db: Database, engine: Engine
) -> None:
    path = sqlite_file_path(str(engine.url))
    assert path is not None
    # Another open file description: flock conflicts with it as with another process.
    fd = os.open(path.with_name(path.name + "-gwlock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        write = asyncio.ensure_future(db.write(partial(_insert, "waits-for-lock-01"), grouped=True))
        await _loop_runs_while_pending(write)
        assert nonce_count(engine) == 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert await asyncio.wait_for(write, 5) == threading.current_thread().name
    finally:
        os.close(fd)
    assert nonce_count(engine) == 1


async def test_a_foreign_sqlite_writer_sends_the_batch_to_a_pool_thread(
    db: Database, engine: Engine
) -> None:
    await db.write(partial(_insert, "warms-the-writer-1"), grouped=True)  # connection kept
    path = sqlite_file_path(str(engine.url))
    assert path is not None
    foreign = sqlite3.connect(path, isolation_level=None)  # a program that ignores -gwlock
    try:
        foreign.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(
            db.write(partial(_insert, "after-the-foreigner"), grouped=True)
        )
        # The loop stays free while a pool thread waits (busy_timeout) for SQLite's lock.
        await _loop_runs_while_pending(write)
        foreign.execute("COMMIT")
        thread = await asyncio.wait_for(write, 5)
    finally:
        foreign.close()
    assert thread != threading.current_thread().name
    assert nonce_count(engine) == 2
    # The next batch is inline again, on the kept connection.
    assert await db.write(partial(_insert, "back-on-the-loop-1"), grouped=True) == (
        threading.current_thread().name
    )


def _driver_id(session: Session) -> int:
    return id(session.connection().connection.driver_connection)


async def test_the_writer_keeps_its_connection_until_the_connection_fails(
    db: Database,
) -> None:
    first = await db.write(_driver_id, grouped=True)
    assert await db.write(_driver_id, grouped=True) == first  # kept: no checkout per batch

    def domain_error(session: Session) -> None:
        session.connection()
        raise ValueError("a unit's own error, alone in its batch")

    with pytest.raises(ValueError, match="own error"):
        await db.write(domain_error, grouped=True)
    assert await db.write(_driver_id, grouped=True) == first  # rolled back, still fine

    def connection_error(session: Session) -> None:
        session.connection().exec_driver_sql("SELECT * FROM no_such_table")

    with pytest.raises(GatewayError) as raised:  # 503 DB_UNAVAILABLE, as for any such error
        await db.write(connection_error, grouped=True)
    assert isinstance(raised.value.__cause__, OperationalError)
    # An OperationalError may mean a broken connection: the next batch gets a new one.
    assert await db.write(_driver_id, grouped=True) != first


async def test_close_refuses_new_inline_batches(engine: Engine) -> None:
    database = Database(engine, threads=2)
    await database.write(partial(_insert, "before-closing-001"), grouped=True)
    await asyncio.to_thread(database.close)
    assert nonce_count(engine) == 1
