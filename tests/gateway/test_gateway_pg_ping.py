"""PostgreSQL connections are pinged on checkout only after sitting idle (gateway.db_engine): a hot
connection costs no extra round trip, and an idle one that the server dropped is replaced
instead of failing the request that drew it; a failed ping retires the pool's older
connections with it, and a connection just made is not pinged."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import InvalidatePoolError, OperationalError
from sqlalchemy.pool import NullPool

from gateway import db_engine as gateway_db

on_postgresql = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        pid: int = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        connection.rollback()
    return pid


def _kill(engine: Engine, pid: int) -> None:
    """The server ends that backend (as a failover or an idle timeout would)."""
    killer = create_engine(engine.url, poolclass=NullPool)  # not from the pool under test
    try:
        with killer.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
            other.commit()
    finally:
        killer.dispose()


def _age_every_pooled_connection(engine: Engine, seconds: float) -> None:
    """Pretend each pooled connection was checked in ``seconds`` ago."""
    for record in list(engine.pool._pool.queue):  # type: ignore[attr-defined]
        record.info[gateway_db._CHECKED_IN_AT_KEY] = time.monotonic() - seconds


@on_postgresql
def test_an_idle_connection_the_server_dropped_is_replaced(migrated_engine: Engine) -> None:
    engine = migrated_engine
    engine.pool.dispose()
    pid = _backend_pid(engine)  # one pooled connection, now checked in
    _kill(engine, pid)
    _age_every_pooled_connection(engine, gateway_db._PG_PING_AFTER_IDLE_S + 1)
    # Drawn again: the ping fails, the pool discards it and connects afresh.
    assert _backend_pid(engine) != pid


@on_postgresql
def test_a_hot_connection_the_server_dropped_fails_its_request(migrated_engine: Engine) -> None:
    engine = migrated_engine
    engine.pool.dispose()
    pid = _backend_pid(engine)
    _kill(engine, pid)
    # Used a moment ago: no ping, so the request that draws it fails (and the pool then
    # invalidates it); the caller answers 503 DB_UNAVAILABLE and the retry gets a new one.
    with pytest.raises(OperationalError):
        _backend_pid(engine)
    assert _backend_pid(engine) != pid


@on_postgresql
def test_a_failed_ping_retires_the_pools_older_connections(migrated_engine: Engine) -> None:
    """As after a failover: every pooled connection points at a server that is gone. The
    first one drawn after sitting idle fails its ping; the next one drawn, although used a
    moment ago (no ping of its own), is replaced too instead of failing its request."""
    engine = migrated_engine
    engine.pool.dispose()
    with engine.connect() as first, engine.connect() as second:
        pids = [
            connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            for connection in (first, second)
        ]
        first.rollback()
        second.rollback()
    for pid in pids:
        _kill(engine, pid)
    # Only the connection drawn first (the pool hands them out in check-in order) is idle.
    records = list(engine.pool._pool.queue)  # type: ignore[attr-defined]
    records[0].info[gateway_db._CHECKED_IN_AT_KEY] = time.monotonic() - 60
    with engine.connect() as idle_one, engine.connect() as hot_one:
        now = [
            connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            for connection in (idle_one, hot_one)
        ]
        idle_one.rollback()
        hot_one.rollback()
    assert not set(now) & set(pids)


class _DeadConnection:
    """A DBAPI connection whose every use fails, as one to a server that went away."""

    def cursor(self) -> Any:
        raise OSError("server closed the connection unexpectedly")

    def rollback(self) -> None:
        raise OSError("server closed the connection unexpectedly")


class _Record:
    def __init__(self, **info: Any) -> None:
        self.info = info


def test_a_connection_just_made_is_not_pinged() -> None:
    # Never checked in: connecting proved the server there a moment ago.
    gateway_db._ping_if_idle(_DeadConnection(), _Record(), None)
    # Used a moment ago: not pinged either (its first statement will tell).
    hot = _Record(**{gateway_db._CHECKED_IN_AT_KEY: time.monotonic()})
    gateway_db._ping_if_idle(_DeadConnection(), hot, None)
    idle = _Record(
        **{gateway_db._CHECKED_IN_AT_KEY: time.monotonic() - gateway_db._PG_PING_AFTER_IDLE_S}
    )
    with pytest.raises(InvalidatePoolError):
        gateway_db._ping_if_idle(_DeadConnection(), idle, None)
