"""How the gateway's database connections are made: the engine, its pool and its pragmas.

:func:`make_engine` builds the one engine of a worker process; :class:`gateway.db.Database`
runs units of work on it (its thread pool, its writer queue, group commit). The pool has one
connection per ``db_threads`` thread and no overflow (plus, on SQLite, the one connection the
inline writer keeps), so a thread never waits for a connection.

SQLite (the embedded default)
    * ``journal_mode=WAL``: readers and the one writer do not block each other, which is what
      lets several worker processes share one file.
    * ``busy_timeout``: a writer waits (up to ``sqlite_busy_timeout_ms``) for another process's
      write lock instead of failing at once with "database is locked".
    * ``synchronous=FULL`` by default: in WAL mode this fsyncs the log at every commit, so a
      committed nonce, ledger entry or settlement survives a power cut. NORMAL is ~7× faster
      (~24,000 vs ~3,400 commits/s measured on the target machine) but may lose the last
      commits on power loss, which for money and one-time nonces means "processed twice".
      So commits are batched instead (group commit, gateway.db; settles included): one fsync per
      batch, every unit of it durable before any is answered.
    * SQLAlchemy, not the sqlite3 module, emits BEGIN, because the module's legacy mode skips
      BEGIN before SELECT. Write units use ``BEGIN IMMEDIATE`` to take the write lock up
      front: a deferred transaction that reads and then writes can fail with SQLITE_BUSY
      that busy_timeout cannot resolve.

PostgreSQL: ``postgresql+psycopg://`` with the same pool bound, and a ping on checkout of a
connection that sat idle in the pool for :data:`_PG_PING_AFTER_IDLE_S` or more (a connection
dropped by a failover or an idle timeout is replaced instead of failing one request; a failed
ping retires every older connection of the pool with it). Not on every checkout, as
``pool_pre_ping`` would: that is one more round trip for every unit of work, and a connection
used a moment ago is as likely to be broken as the next statement is.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError

from gateway.settings import Settings

__all__ = ["for_writes", "make_engine", "sqlite_file_path", "sqlite_synchronous"]

_BEGIN_OPTION: Final = "gateway_sqlite_begin"
_WAL_RETRY_S: Final = 0.01
# Where a pooled SQLite connection remembers its configured and current synchronous level.
_SYNC_CONFIGURED_KEY: Final = "gateway_sqlite_synchronous"
_SYNC_CURRENT_KEY: Final = "gateway_sqlite_synchronous_now"
_SQLITE_CACHE_KIB: Final = 32 * 1024
# Recycle PostgreSQL connections before typical server/proxy idle limits cut them.
_PG_POOL_RECYCLE_S: Final = 1800
# A pooled PostgreSQL connection idle this long is pinged before use (module docstring).
_PG_PING_AFTER_IDLE_S: Final = 5.0
_CHECKED_IN_AT_KEY: Final = "gateway_checked_in_at"


def sqlite_file_path(url: str) -> Path | None:
    """The file behind a sqlite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


# A failed statement's message would otherwise quote its bound parameters (a citizen id, a
# name) into the exception, and so into the "unhandled exception" log line's traceback.
_HIDE_PARAMETERS: Final = True


def make_engine(settings: Settings, url: str | None = None) -> Engine:
    """An engine for ``url`` (default: settings.database_url) with the pragmas described above."""
    url = url or settings.database_url
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, settings)
    if backend == "postgresql":
        engine = create_engine(
            url,
            hide_parameters=_HIDE_PARAMETERS,
            pool_size=settings.db_threads,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout_s,
            pool_recycle=_PG_POOL_RECYCLE_S,
        )
        event.listen(engine, "checkout", _ping_if_idle)
        event.listen(engine, "checkin", _note_checkin)
        return engine
    raise ValueError(f"unsupported database backend {backend!r}")


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN_AT_KEY] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """SQLAlchemy's pessimistic disconnect handling, for idle connections only.

    A connection never checked in (just made: connecting proved the server there) is not
    pinged. Besides saving the round trip, that matters when the ping of an idle connection
    failed: the pool reconnects and runs this hook again on the new connection, and a second
    failure there would end in SQLAlchemy's InvalidRequestError (a 500), not an
    OperationalError (503 DB_UNAVAILABLE).

    A failed ping raises InvalidatePoolError: the pool discards this connection, connects
    afresh, and marks every connection it made before now as stale (replaced when next
    drawn, with no ping). After a failover or a server restart all of them point at a server
    that is gone, and each would otherwise cost a ping, or fail a request if it was hot.
    """
    checked_in_at = record.info.get(_CHECKED_IN_AT_KEY)
    if checked_in_at is None or time.monotonic() - checked_in_at < _PG_PING_AFTER_IDLE_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()  # leave it as the pool hands it out: no transaction open
    except Exception as exc:
        raise InvalidatePoolError("idle connection failed its ping") from exc


def _sqlite_engine(url: str, settings: Settings) -> Engine:
    path = sqlite_file_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        hide_parameters=_HIDE_PARAMETERS,
        # One connection per pool thread, plus the one the inline writer keeps (Database).
        pool_size=settings.db_threads + 1,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout_s,
    )
    busy_timeout_ms = settings.sqlite_busy_timeout_ms
    synchronous = settings.sqlite_synchronous
    assert synchronous in ("FULL", "NORMAL")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Take transaction control away from the sqlite3 module (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _ensure_wal(cursor, busy_timeout_ms)
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            # Page cache per connection (SQLite's default is 2 MiB): with a large ledger, the
            # inner pages of its indexes then stay in memory, so an insert into a random
            # place of an index costs no read syscalls; memory is only taken as pages are used.
            cursor.execute(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
            record.info[_SYNC_CONFIGURED_KEY] = synchronous
            record.info[_SYNC_CURRENT_KEY] = synchronous
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


def sqlite_synchronous(connection: Connection, level: str | None) -> None:
    """Set this pooled connection's synchronous level for its next transaction, outside any
    transaction (on the driver connection, so SQLAlchemy does not BEGIN for it). None means
    the configured level (``sqlite_synchronous``, remembered by the connect hook)."""
    info = connection.connection.info
    configured = info.get(_SYNC_CONFIGURED_KEY, "FULL")
    wanted = configured if level is None else level
    if info.get(_SYNC_CURRENT_KEY, configured) != wanted:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute(f"PRAGMA synchronous = {wanted}")
        info[_SYNC_CURRENT_KEY] = wanted
