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

Writes: one queue per process, one write transaction at a time, hot-path units group-committed
    (several units, one commit; see :class:`Database`), which is what lets SQLite with
    synchronous=FULL keep up with card authentication.

Why SQLite's grouped writes run ON the event loop thread, not in the pool
    With SQLite every write transaction of every worker process is serial: the writer that
    holds the write lock is the one resource all settlements and card authentications queue
    for. In a pool thread that writer competed for the GIL with its own process's event loop:
    the sqlite3 module releases the GIL around every statement, and getting it back waited for
    the loop thread to let go (up to the switch interval), so under load the lock was held
    ~1.6x as long as the work inside it took (0.78 ms held vs 0.50 ms of CPU per unit,
    measured). A batch of grouped units is short, bounded (:data:`_INLINE_MAX_BATCH` units)
    and waits for nothing while the process holds the lock, so it runs inline on the loop
    thread, on one persistent connection of its own (no pool checkout, no new Connection per
    batch); only waiting for another process's lock happens in a thread. If another program
    (not a gateway worker) holds SQLite's write lock, the batch is not waited for on the loop:
    it runs in a pool thread as before, which waits with busy_timeout.

How connections are made (SQLite's pragmas, BEGIN IMMEDIATE for writes, PostgreSQL's pool
and its ping of idle connections) is gateway.db_engine's; this module re-exports its
make_engine, for_writes and sqlite_file_path.

Failover (docs/scale-out.md): the URL may name several hosts with
``target_session_attrs=read-write`` (libpq connects to the one that takes writes). Whatever
breaks while the primary changes (a connection ended by its shutdown, a refused connect, a
standby still read-only) surfaces as an OperationalError, which becomes DB_UNAVAILABLE (503,
Retry-After) below; SQLAlchemy then retires the pool's connections to the old server. A unit
of work is one transaction, so it is committed whole or not at all; a COMMIT whose answer
was lost is found by the terminal's retry with the same Idempotency-Key.
Settles skip the writer queue there (``write(concurrent=True)``): concurrent transactions
ordered by row locks, their commits flushed together by the server (``synchronous_commit``
stays at the server default, ``on``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from gateway.db_engine import for_writes, make_engine, sqlite_file_path, sqlite_synchronous
from gateway.errors import ErrorCode, GatewayError

__all__ = [
    "DEFAULT_WRITE_QUEUE_MAX",
    "Database",
    "for_writes",
    "make_engine",
    "sqlite_file_path",
]

T = TypeVar("T")

# At most this many units share one write transaction (bounds how long the lock is held).
_MAX_BATCH: Final = 256
# Inline batches (SQLite, on the loop thread) hold the loop for their duration: at ~0.2-0.4 ms
# a unit, 32 units keep one pause near 10 ms while still sharing one commit among many.
_INLINE_MAX_BATCH: Final = 32
# The writer queue's own bound (units waiting for the writer, not counting the batch being
# written): the setting ``db_write_queue_max``. Requests alone cannot reach it with the
# defaults (one write at a time per request, max_inflight_requests of them), so it is the
# backstop for everything else that writes (sweepers, the reversal worker, a burst of
# background work); see Database.write for what happens when it is full.
DEFAULT_WRITE_QUEUE_MAX: Final = 1024
_LOCK_SUFFIX: Final = "-gwlock"
_SAVEPOINT: Final = "gw_unit"
_SAVEPOINT_SQL: Final = f"SAVEPOINT {_SAVEPOINT}"
_ROLLBACK_TO_SQL: Final = f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}"
_RELEASE_SQL: Final = f"RELEASE SAVEPOINT {_SAVEPOINT}"


@dataclass(slots=True)
class _PendingWrite:
    unit: Callable[[Session], Any]
    durable: bool
    grouped: bool
    future: asyncio.Future[Any]


class Database:
    """Runs units of work on a bounded thread pool, one transaction per thread hop.

    ``read(unit)`` runs ``unit(session)`` inside its own transaction on the pool.

    ``write(unit)`` runs ``unit(session)`` inside a transaction that commits when ``unit``
    returns and rolls back when it raises; its effects are committed before ``write`` returns.
    Writes go through ONE writer queue per process and run one transaction at a time, in
    queue order. Units written with ``grouped=True`` are GROUP-COMMITTED: the grouped units
    queued while one write transaction runs go together into the next one, each between
    SAVEPOINT and RELEASE (so one unit that raises rolls back alone, exactly as if it had its
    own transaction), followed by ONE commit; they see each other's effects as if committed in
    that order. A grouped unit must not rely on ORM flush errors (a failed flush rolls back the
    whole transaction: the batch then fails as a whole) and must have no effect outside the
    session; the hot-path units of request nonces and card challenges are such units. Other
    units (the default) get a transaction of their own, as before.

    Why: on SQLite every transaction takes the one write lock, and with synchronous=FULL every
    commit is an fsync; one writer per process, batching, turns N lock acquisitions and fsyncs
    into one, and no two threads of a process ever wait on each other for the lock (SQLite's
    busy handler sleeps 1, 2, 5, 10 … ms between retries, which is what made writes slow under
    load). Across worker processes, SQLite writers also take an exclusive ``flock`` on
    ``<database>-gwlock`` around each write transaction, so a waiting process is woken by the
    kernel the moment the lock is free instead of polling in the busy handler (other programs
    that write without it are still covered by busy_timeout).

    ``concurrent=True`` (units that read, decide and update under row locks, such as a
    settlement: its own rows plus one person's account): where writers can run side by side
    (PostgreSQL, :attr:`writes_are_serial` False), the unit skips the queue and runs in a
    transaction of its own on the pool, like a read; row locks and unique keys order it
    against other writers, and concurrent commits share the server's WAL flush. Where writes
    are serial (SQLite) the flag is ignored and ``grouped`` applies: one writer at a time means
    a batch of such units cannot deadlock, and it turns N fsyncs into one.

    ``durable=False`` marks a unit whose loss in a power cut is harmless (a freshly issued
    challenge and the nonce of the request that asked for it; the nonce of a pre-settle, which
    changes nothing else). A batch of only such units
    commits with SQLite ``synchronous=NORMAL`` (no fsync: survives a crash of the process, may
    be lost on power loss or an OS crash; it can never corrupt the database, and any later
    FULL commit makes it durable too, since the WAL is synced in order) or, on PostgreSQL,
    ``SET LOCAL synchronous_commit = off`` (survives a crash of the server process too; may
    lose the last ~3 × wal_writer_delay of commits on power loss). Any batch holding a durable
    unit commits with the full setting, so money, consumed challenges and the nonces of
    requests that change anything are never weakened. A ``durable=False`` unit that runs
    ``concurrent`` on PostgreSQL commits with the server's setting (durably, by default).

    The exception a unit raised propagates unchanged (an IntegrityError stays an
    IntegrityError), except that connectivity failures become GatewayError(DB_UNAVAILABLE), a
    503 with Retry-After. A failure of the batch itself (BEGIN, COMMIT) fails every unit in it.

    The writer queue holds at most ``write_queue_max`` units waiting for the writer. A
    ``write`` that finds it full raises GatewayError(OVERLOADED) at once, a 503 with
    Retry-After, and its unit never runs: like the in-flight bound in front of the handlers,
    and unlike waiting, it keeps the queue's memory and its latency bounded, and a caller
    cannot tell it from DB_UNAVAILABLE (nothing done, try again), which every writer already
    handles. ``concurrent`` units on PostgreSQL do not queue and are bounded by the pool.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        threads: int,
        inline_writes: bool | None = None,
        write_queue_max: int = DEFAULT_WRITE_QUEUE_MAX,
    ) -> None:
        assert threads >= 1
        assert write_queue_max >= 1
        self.write_queue_max = write_queue_max
        self.engine = engine
        self._write_engine = for_writes(engine)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")
        self._pending: list[_PendingWrite] = []
        self._writer: asyncio.Task[None] | None = None
        path = sqlite_file_path(str(engine.url))
        self._lock_path = None if path is None else path.with_name(path.name + _LOCK_SUFFIX)
        self._lock_fd: int | None = None
        self.batches = 0  # write transactions committed or attempted (tests, diagnostics)
        # SQLite: one write transaction at a time across every process, so units that read
        # and then lock rows (a settlement) can share a batch without ever deadlocking; on
        # PostgreSQL two batches could take two persons' rows in opposite orders, and its own
        # WAL flush already groups concurrent commits, so such units run alone there.
        self.writes_are_serial = engine.dialect.name == "sqlite"
        # Grouped units run inline on the loop thread (module docstring): SQLite files only,
        # where the cross-process lock file exists, and only if the pool has a connection to
        # spare for the inline writer to keep (make_engine's pools do). None: decide so.
        spare = isinstance(engine.pool, QueuePool) and engine.pool.size() > threads
        self.inline_writes = (
            self.writes_are_serial and self._lock_path is not None and spare
            if inline_writes is None
            else inline_writes
        )
        assert not self.inline_writes or self._lock_path is not None, "inline needs a file"
        self._inline_writer: Connection | None = None
        # Held while an inline batch runs or the writer connection is closed (close() runs in
        # another thread than the loop).
        self._inline_guard = threading.Lock()
        self._closing = False
        self._lock_waiter = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-lock")
            if self.inline_writes
            else None
        )
        self.inline_batches = 0  # batches run on the loop thread (tests, diagnostics)

    async def write(
        self,
        unit: Callable[[Session], T],
        *,
        durable: bool = True,
        grouped: bool = False,
        concurrent: bool = False,
    ) -> T:
        if concurrent and not self.writes_are_serial:
            # PostgreSQL: its own transaction on the pool, beside the writer queue, so writes
            # of different persons overlap and the server's WAL flush groups their commits.
            # durable=False is not honoured here: SET LOCAL synchronous_commit would cost a
            # round trip of its own (measured: more CPU than the WAL flush it saves), and the
            # server already groups concurrent commits' flushes.
            return await self._run(self._write_engine, unit)
        if len(self._pending) >= self.write_queue_max:
            raise GatewayError(ErrorCode.OVERLOADED, "the database writer queue is full")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # Retrieved even if the caller has gone away, so no "never retrieved" warning.
        future.add_done_callback(_retrieve)
        self._pending.append(_PendingWrite(unit, durable, grouped, future))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_batches(), name="db-writer")
        try:
            # Shielded: a caller that goes away (client closed) must not cancel a unit that
            # may already be committed for everyone else in its batch.
            return await asyncio.shield(future)
        except (OperationalError, PoolTimeoutError) as exc:
            raise GatewayError(ErrorCode.DB_UNAVAILABLE, type(exc).__name__) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise GatewayError(ErrorCode.DB_UNAVAILABLE, type(exc).__name__) from exc
            raise

    async def _write_batches(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                if self.inline_writes and self._pending[0].grouped and not self._closing:
                    await self._write_inline(loop)
                    continue
                batch = _take_batch(self._pending)
                try:
                    outcomes = await loop.run_in_executor(
                        self._executor, functools.partial(self._run_batch, batch)
                    )
                except BaseException as exc:  # the batch as a whole failed
                    _fail(batch, exc)
                    continue
                _deliver(batch, outcomes)
        finally:
            for pending in self._pending:  # only when cancelled: never leave a caller hanging
                if not pending.future.done():
                    pending.future.set_exception(
                        GatewayError(ErrorCode.DB_UNAVAILABLE, "database closing")
                    )
            self._pending.clear()

    async def _write_inline(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the process lock, then run the leading grouped units as one batch on this (the
        loop's) thread; see the module docstring."""
        await self._lock_process(loop)
        try:
            # Taken only now: what queued while the lock was awaited joins this batch.
            batch = _take_batch(self._pending, _INLINE_MAX_BATCH)
            try:
                try:
                    outcomes = self._run_batch_inline(batch)
                except _WriterBusy:
                    # Another program holds SQLite's write lock: wait for it in a pool thread.
                    outcomes = await loop.run_in_executor(
                        self._executor, functools.partial(self._run_batch_locked, batch)
                    )
            except BaseException as exc:  # the batch as a whole failed
                _fail(batch, exc)
                return
        finally:
            self._unlock_process()
        _deliver(batch, outcomes)
        # Let the loop run before this process asks for the lock again: another process's
        # waiter, woken by the unlock, then gets its turn instead of losing every race to us;
        # and what the loop queues meanwhile makes the next batch bigger.
        await asyncio.sleep(0)

    async def _lock_process(self, loop: asyncio.AbstractEventLoop) -> None:
        """The cross-process write lock: taken at once if free, else awaited in a thread."""
        fd = self._lock_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        assert self._lock_waiter is not None
        waiting = loop.run_in_executor(self._lock_waiter, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread will still get the lock: give it straight back when it does, or no
            # process could ever write again.
            waiting.add_done_callback(self._unlock_unless_cancelled)
            raise

    def _unlock_unless_cancelled(self, waiting: asyncio.Future[None]) -> None:
        if not waiting.cancelled():
            self._unlock_process()

    def _unlock_process(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _lock_file(self) -> int:
        assert self._lock_path is not None
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock_fd

    def _run_batch_inline(self, batch: list[_PendingWrite]) -> list[tuple[bool, Any]]:
        """On the loop thread, the process lock held: the batch on the persistent connection.
        Raises _WriterBusy, having done nothing, if SQLite's write lock is taken."""
        with self._inline_guard:
            if self._closing:
                raise GatewayError(ErrorCode.DB_UNAVAILABLE, "database closing")
            connection = self._inline_connection()
            self.batches += 1
            self.inline_batches += 1
            try:
                return self._batch_on(connection, batch, begin_or_busy=True)
            except _WriterBusy:
                raise
            except BaseException as exc:
                # A unit's own error (a batch of one) leaves the connection rolled back and
                # fine; after a failure of the connection itself, or anything that left a
                # transaction open, the next batch starts on a new one.
                if (
                    not isinstance(exc, Exception)
                    or _batch_broken(exc)
                    or connection.in_transaction()
                ):
                    self._drop_inline_connection(invalidate=True)
                raise

    def _inline_connection(self) -> Connection:
        connection = self._inline_writer
        if connection is None or connection.closed or connection.invalidated:
            # Kept checked out for the life of the Database: the pool was sized with one
            # connection more than there are threads, so the threads never wait for it.
            connection = self._write_engine.connect()
            driver = connection.connection.driver_connection
            assert driver is not None
            # Never wait on the loop thread: a busy lock means another program, handled by
            # falling back to a pool thread (which waits with busy_timeout).
            driver.execute("PRAGMA busy_timeout = 0")
            self._inline_writer = connection
        return connection

    def _drop_inline_connection(self, *, invalidate: bool = False) -> None:
        """Give the kept connection back (``invalidate``: close the DBAPI connection too)."""
        connection, self._inline_writer = self._inline_writer, None
        if connection is not None:
            with contextlib.suppress(Exception):
                if invalidate:
                    connection.invalidate()
                connection.close()

    def _run_batch(self, batch: list[_PendingWrite]) -> list[tuple[bool, Any]]:
        """In a pool thread: one transaction, one SAVEPOINT per unit (when there are several)."""
        if self._lock_path is None:
            return self._run_batch_locked(batch)
        with self._process_lock():
            return self._run_batch_locked(batch)

    def _run_batch_locked(self, batch: list[_PendingWrite]) -> list[tuple[bool, Any]]:
        """In a pool thread, the process lock (if any) held by the caller."""
        self.batches += 1
        with self._write_engine.connect() as connection:
            return self._batch_on(connection, batch)

    def _batch_on(
        self, connection: Connection, batch: list[_PendingWrite], *, begin_or_busy: bool = False
    ) -> list[tuple[bool, Any]]:
        """One transaction on ``connection``: the units, then COMMIT. ``begin_or_busy``: BEGIN
        first, and raise _WriterBusy (nothing done) if SQLite's write lock is taken."""
        durable = any(pending.durable for pending in batch)
        outcomes: list[tuple[bool, Any]] = []
        if connection.dialect.name == "sqlite":
            sqlite_synchronous(connection, None if durable else "NORMAL")
        with Session(bind=connection, expire_on_commit=False) as session, session.begin():
            if begin_or_busy:
                try:
                    session.connection()  # BEGIN IMMEDIATE: takes SQLite's write lock
                except OperationalError as exc:
                    if _is_busy(exc):
                        raise _WriterBusy from exc
                    raise
            if not durable and connection.dialect.name == "postgresql":
                session.execute(text("SET LOCAL synchronous_commit = off"))
            if len(batch) == 1:
                # No savepoint needed: the transaction is the unit's own.
                outcomes.append((True, batch[0].unit(session)))
            else:
                outcomes.extend(_run_in_savepoints(session, batch))
        return outcomes

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        if self._lock_path is None:
            yield
            return
        fd = self._lock_file()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

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
        self._closing = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._lock_waiter is not None:
            self._lock_waiter.shutdown(wait=True, cancel_futures=True)
        with self._inline_guard:
            self._drop_inline_connection()
        self.engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _fail(batch: list[_PendingWrite], exc: BaseException) -> None:
    """The batch as a whole failed: every unit gets the exception (re-raised if it stops us)."""
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        raise exc


def _deliver(batch: list[_PendingWrite], outcomes: list[tuple[bool, Any]]) -> None:
    for pending, (ok, value) in zip(batch, outcomes, strict=True):
        if pending.future.done():
            continue
        if ok:
            pending.future.set_result(value)
        else:
            pending.future.set_exception(value)


class _WriterBusy(Exception):
    """SQLite's write lock is held by another program: the inline batch did nothing."""


def _is_busy(exc: OperationalError) -> bool:
    orig = exc.orig
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


def _take_batch(pending: list[_PendingWrite], limit: int = _MAX_BATCH) -> list[_PendingWrite]:
    """The next transaction's units: the leading run of grouped units (at most ``limit``),
    or one ungrouped unit alone. Queue order is kept."""
    size = 1
    if pending[0].grouped:
        while size < min(len(pending), limit) and pending[size].grouped:
            size += 1
    batch = pending[:size]
    del pending[:size]
    return batch


def _run_in_savepoints(session: Session, batch: list[_PendingWrite]) -> list[tuple[bool, Any]]:
    """Each unit between SAVEPOINT and RELEASE, in order; a unit that raises is rolled back to
    its savepoint alone. Plain SQL rather than Session.begin_nested(), which costs ~0.4 ms a
    unit here; the session is flushed inside the savepoint, and emptied after a rollback, so
    no ORM state of a rolled-back unit can leak into the next unit or the commit."""
    # On the driver connection (a few µs each, not SQLAlchemy's per-statement work); SQLAlchemy
    # never learns of these savepoints, as it did not with exec_driver_sql either.
    driver = session.connection().connection.driver_connection
    assert driver is not None
    outcomes: list[tuple[bool, Any]] = []
    for pending in batch:
        driver.execute(_SAVEPOINT_SQL)
        try:
            value = pending.unit(session)
            session.flush()
        except Exception as exc:
            if _batch_broken(exc) or not session.is_active:
                # The connection is gone, or a failed ORM flush rolled back the whole
                # transaction: the batch fails as a whole (never reported as committed).
                raise
            driver.execute(_ROLLBACK_TO_SQL)
            driver.execute(_RELEASE_SQL)
            session.expunge_all()
            outcomes.append((False, exc))
        else:
            driver.execute(_RELEASE_SQL)
            outcomes.append((True, value))
    return outcomes


def _batch_broken(exc: Exception) -> bool:
    """After this exception the transaction cannot go on (the connection is gone)."""
    return isinstance(exc, OperationalError | PoolTimeoutError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _in_transaction(engine: Engine, unit: Callable[[Session], T]) -> T:
    # expire_on_commit=False: results are read after COMMIT, in this same thread, without
    # another round trip; units return plain values, not live ORM objects, anyway.
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return unit(session)


def _select_one(session: Session) -> None:
    session.execute(text("SELECT 1")).scalar_one()
