"""PostgreSQL connections are pinged on checkout only after sitting idle (gateway.db): a hot
connection costs no extra round trip, and an idle one that the server dropped is replaced
instead of failing the request that drew it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from gateway import db as gateway_db

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


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


def test_an_idle_connection_the_server_dropped_is_replaced(migrated_engine: Engine) -> None:
    engine = migrated_engine
    engine.pool.dispose()
    pid = _backend_pid(engine)  # one pooled connection, now checked in
    _kill(engine, pid)
    _age_every_pooled_connection(engine, gateway_db._PG_PING_AFTER_IDLE_S + 1)
    # Drawn again: the ping fails, the pool discards it and connects afresh.
    assert _backend_pid(engine) != pid


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
