"""The database seam: a sync SQLAlchemy engine driven from asyncio through a bounded thread pool.

Why sync, and why one thread hop per transaction
    A unit of work is a plain function ``unit(session) -> T``. :class:`Database` runs the whole
    function, BEGIN … statements … COMMIT, inside ONE call to ``loop.run_in_executor``. The
    hop costs tens of microseconds, so paying it once per transaction rather than per statement
    keeps it negligible; the connection never changes threads mid-transaction; and domain
    packages keep plain synchronous, testable store code with no asyncio in it. The executor
    has exactly as many threads as the pool has connections (``db_threads``, no overflow), so
    a thread never waits for a connection and the database never sees more than ``db_threads``
    connections from one worker process.

SQLite (the embedded default)
    * ``journal_mode=WAL``: readers and the one writer do not block each other, which is what
      lets several worker processes share one file.
    * ``busy_timeout``: a writer waits (up to ``sqlite_busy_timeout_ms``) for another process's
      write lock instead of failing at once with "database is locked".
    * ``synchronous=FULL`` by default: in WAL mode this fsyncs the log at every commit, so a
      committed nonce, ledger entry or settlement survives a power cut. NORMAL is ~7× faster
      (~24,000 vs ~3,400 commits/s measured on the target machine) but may lose the last
      commits on power loss, which for money and one-time nonces means "processed twice".
      Batch commits if the settle rate ever needs more.
    * SQLAlchemy, not the sqlite3 module, emits BEGIN, because the module's legacy mode skips
      BEGIN before SELECT. Write units use ``BEGIN IMMEDIATE`` to take the write lock up
      front: a deferred transaction that reads and then writes can fail with SQLITE_BUSY
      that busy_timeout cannot resolve.

PostgreSQL: ``postgresql+psycopg://`` with the same pool bound and pre-ping (a connection
dropped by a failover is replaced instead of failing one request).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from gateway.errors import ErrorCode, GatewayError
from gateway.settings import Settings

__all__ = ["Database", "for_writes", "make_engine", "sqlite_file_path"]

T = TypeVar("T")

_BEGIN_OPTION: Final = "gateway_sqlite_begin"
_WAL_RETRY_S: Final = 0.01
# Recycle PostgreSQL connections before typical server/proxy idle limits cut them.
_PG_POOL_RECYCLE_S: Final = 1800


def sqlite_file_path(url: str) -> Path | None:
    """The file behind a sqlite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(settings: Settings, url: str | None = None) -> Engine:
    """An engine for ``url`` (default: settings.database_url) with the pragmas described above."""
    url = url or settings.database_url
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, settings)
    if backend == "postgresql":
        return create_engine(
            url,
            pool_size=settings.db_threads,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout_s,
            pool_pre_ping=True,
            pool_recycle=_PG_POOL_RECYCLE_S,
        )
    raise ValueError(f"unsupported database backend {backend!r}")


def _sqlite_engine(url: str, settings: Settings) -> Engine:
    path = sqlite_file_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=settings.db_threads,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout_s,
    )
    busy_timeout_ms = settings.sqlite_busy_timeout_ms
    synchronous = settings.sqlite_synchronous
    assert synchronous in ("FULL", "NORMAL")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _ensure_wal(cursor, busy_timeout_ms)
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        assert mode in ("DEFERRED", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _ensure_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """Switch the file to WAL (persistent: once per database file, not per connection).

    The switch needs an exclusive lock and SQLite does not run the busy handler for it, so
    several processes opening a NEW database at once can get "database is locked" straight
    away: retry until busy_timeout_ms has passed.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline_s = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline_s:
                raise
            time.sleep(_WAL_RETRY_S)
            continue
        # An in-memory database answers "memory": WAL does not apply there.
        assert mode in ("wal", "memory"), mode
        return


def for_writes(engine: Engine) -> Engine:
    """The same engine (same pool), but its transactions start with BEGIN IMMEDIATE on SQLite
    (no effect elsewhere): for units of work that will write."""
    return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})


class Database:
    """Runs units of work on a bounded thread pool, one transaction per thread hop.

    ``write(unit)`` and ``read(unit)`` run ``unit(session)`` inside one transaction that
    commits when ``unit`` returns and rolls back when it raises. The exception then
    propagates unchanged (an IntegrityError stays an IntegrityError), except that
    connectivity failures become GatewayError(DB_UNAVAILABLE), a 503 with Retry-After.
    """

    def __init__(self, engine: Engine, *, threads: int) -> None:
        assert threads >= 1
        self.engine = engine
        self._write_engine = for_writes(engine)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")

    async def write(self, unit: Callable[[Session], T]) -> T:
        return await self._run(self._write_engine, unit)

    async def read(self, unit: Callable[[Session], T]) -> T:
        return await self._run(self.engine, unit)

    async def ping(self) -> None:
        """SELECT 1, for readiness."""
        await self.read(_select_one)

    async def _run(self, engine: Engine, unit: Callable[[Session], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(_in_transaction, engine, unit)
            )
        except (OperationalError, PoolTimeoutError) as exc:
            raise GatewayError(ErrorCode.DB_UNAVAILABLE, type(exc).__name__) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise GatewayError(ErrorCode.DB_UNAVAILABLE, type(exc).__name__) from exc
            raise

    def close(self) -> None:
        """Wait for running units, then close every pooled connection."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()


def _in_transaction(engine: Engine, unit: Callable[[Session], T]) -> T:
    # expire_on_commit=False: results are read after COMMIT, in this same thread, without
    # another round trip; units return plain values, not live ORM objects, anyway.
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return unit(session)


def _select_one(session: Session) -> None:
    session.execute(text("SELECT 1")).scalar_one()
