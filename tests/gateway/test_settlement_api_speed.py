"""How a settle reaches the database (the shape the settle benchmark depends on), on SQLite and
(mark ``postgres``) PostgreSQL: one transaction holding the request nonce, group-committed on
SQLite and run beside the writer queue on PostgreSQL, a bounded number of statements (nearly
all on the driver's cursor), and a replayed request that stops at its nonce and writes
nothing."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from aiohttp import web
from card_auth_testkit import NEW_ACTIVE
from gateway_testkit import Signer, assert_problem, nonce_count
from settlement_api_testkit import (
    Till,
    assert_ledger_balanced,
    load_insured_world,
    outpatient,
    snapshot,
)
from sqlalchemy import Connection, Engine, event

from gateway.state import DATABASE

SETTLE = "/v1/settlements"
# Statements one settle runs through SQLAlchemy: SQLite's BEGIN IMMEDIATE, nothing on
# PostgreSQL (psycopg begins implicitly). Everything else (the unit's savepoint, the request
# nonce, the advisory lock, the counter read, the key lookup, the settlement and its lines,
# account, year totals, ledger and its read-back sum, the stored answer) runs on the driver's
# cursor (gateway.db, dbkit.DriverSQL and
# DriverInsert), unseen by SQLAlchemy's events. Before the rewrite a settle ran ~22
# statements, all through the ORM.
SQLALCHEMY_STATEMENTS = {"sqlite": 1, "postgresql": 0}
# Everything the database is asked to run in a settle's transaction, driver statements
# included. SQLite counts each row of an executemany (three fee lines, three ledger
# entries); psycopg counts calls. PostgreSQL writes the settlement, its lines, the account
# debit, the year's totals and the ledger transaction with its entries and their sum in one
# statement, and locks account and totals in one once the year's totals exist: 9 for a
# person's first settlement of the year, then 7 (12 and 10 while the ledger's transaction,
# entries and read-back sum were three statements of their own).
MAX_DRIVER_STATEMENTS = {"sqlite": 15, "postgresql": 9}
MAX_DRIVER_STATEMENTS_AGAIN = {"sqlite": 15, "postgresql": 7}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}


@pytest.fixture
def world(engine: Engine) -> Iterator[Engine]:
    load_insured_world(engine)
    yield engine
    assert_ledger_balanced(engine)


@pytest.fixture
async def till(signer: Signer, world: Engine) -> Till:
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)
    return till


async def test_a_settle_is_one_transaction_with_its_nonce(till: Till, world: Engine) -> None:
    assert till.card_session is not None
    body = json.dumps(outpatient()).encode()
    headers = {
        **till.signer.headers(
            "POST",
            SETTLE,
            body,
            nonce="settle-speed-nonce-0001",
            card_session=till.card_session,
            idempotency_key="speed-1",
        ),
        "Content-Type": "application/json",
    }
    nonces = nonce_count(world)
    first = await till.signer.client.post(SETTLE, data=body, headers=headers)
    assert first.status == 201, await first.text()
    assert nonce_count(world) == nonces + 1  # claimed by the settle's own transaction
    before = snapshot(world)
    # The same signed request again: refused at its nonce, before the key is even looked at.
    again = await till.signer.client.post(SETTLE, data=body, headers=headers)
    await assert_problem(again, 401, "REQUEST_REPLAYED")
    assert snapshot(world) == before
    assert nonce_count(world) == nonces + 1


async def test_settles_are_grouped_on_sqlite_and_concurrent_on_postgresql(
    till: Till, app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = app[DATABASE]
    seen: list[dict[str, Any]] = []
    write = database.write

    async def spy(unit: Any, **options: Any) -> Any:
        seen.append(options)
        return await write(unit, **options)

    monkeypatch.setattr(database, "write", spy)
    batches = database.batches
    await till.settled(outpatient())
    # One write (the nonce went inside it), marked for both ways of going fast, and durable
    # (a settlement is never in a batch whose commit may be weakened).
    assert len(seen) == 1
    assert {**{"durable": True}, **seen[0]} == {
        "grouped": True,
        "concurrent": True,
        "durable": True,
    }
    serial = database.engine.dialect.name == "sqlite"
    assert database.writes_are_serial is serial
    # SQLite: through the writer queue (one batch); PostgreSQL: beside it, on the pool.
    assert database.batches == batches + (1 if serial else 0)


async def test_a_settle_sends_a_bounded_number_of_statements(
    till: Till, app: web.Application
) -> None:
    engine = app[DATABASE].engine
    through_sqlalchemy: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        through_sqlalchemy.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with driver_statements(engine) as statements:
            await till.settled(outpatient())
    finally:
        event.remove(engine, "before_cursor_execute", count)
    dialect = engine.dialect.name
    assert len(through_sqlalchemy) == SQLALCHEMY_STATEMENTS[dialect], through_sqlalchemy
    assert 0 < len(statements) <= MAX_DRIVER_STATEMENTS[dialect], statements
    # What the settle ran, on the driver's cursor as well: the settlement row and the ledger
    # once each, and nothing reads the ledger back beyond the one aggregate on the new
    # transaction (the cost must not grow with the ledger).
    assert len(_containing(statements, "INSERT INTO settlements ")) == 1, statements
    assert len(_containing(statements, "INSERT INTO ledger_transactions ")) == 1, statements
    if dialect == "sqlite":
        ledger_reads = _matching(statements, "SELECT", "ledger_entries")
        assert len(ledger_reads) == 1, ledger_reads
        assert "SUM(" in ledger_reads[0]
    else:
        # One statement writes the settlement and its ledger transaction; the sum is taken
        # over what its entries' INSERT returned, and nothing else reads the ledger.
        (write,) = _containing(statements, "INSERT INTO settlements ")
        assert "INSERT INTO ledger_entries" in write
        assert "SUM(" in write
        assert "FROM le)" in write
        assert not _containing(statements, "FROM ledger_entries"), statements


async def test_the_same_persons_next_settle_sends_fewer_statements(
    till: Till, app: web.Application
) -> None:
    engine = app[DATABASE].engine
    await till.settled(outpatient())  # the year's totals row now exists
    with driver_statements(engine) as statements:
        await till.settled(outpatient())
    dialect = engine.dialect.name
    assert 0 < len(statements) <= MAX_DRIVER_STATEMENTS_AGAIN[dialect], statements
    if dialect == "postgresql":
        # Account and totals locked by one statement; settlement, lines, debit, totals and
        # the ledger written by one.
        locks = _matching(statements, "SELECT", "FOR UPDATE")
        assert len(locks) == 1, locks
        assert "year_to_date_totals" in locks[0]
        writes = _containing(statements, "INSERT INTO settlements ")
        assert len(writes) == 1
        for table in (
            "settlement_lines",
            "UPDATE personal_accounts",
            "ledger_transactions",
            "ledger_entries",
        ):
            assert table in writes[0], table


def _containing(statements: list[str], *contained: str) -> list[str]:
    return [statement for statement in statements if all(w in statement for w in contained)]


def _matching(statements: list[str], start: str, *contained: str) -> list[str]:
    return [
        statement
        for statement in statements
        if statement.lstrip().startswith(start) and all(word in statement for word in contained)
    ]


@contextlib.contextmanager
def driver_statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement the database runs in the transactions begun meanwhile, driver-cursor
    ones included: sqlite3's trace callback, or on psycopg a counting cursor class, set on the
    transaction's connection when it begins and taken off when it ends."""
    seen: list[str] = []

    class CountingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
            seen.append(str(query))
            super().executemany(query, *args, **kwargs)

    def watch(conn: Connection) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            driver.set_trace_callback(seen.append)
        else:
            assert isinstance(driver, psycopg.Connection)
            driver.cursor_factory = CountingCursor

    def unwatch(conn: Connection) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            driver.set_trace_callback(None)
        else:
            assert isinstance(driver, psycopg.Connection)
            driver.cursor_factory = psycopg.Cursor

    events = (("begin", watch), ("commit", unwatch), ("rollback", unwatch))
    for name, listener in events:
        event.listen(engine, name, listener)
    try:
        yield seen
    finally:
        for name, listener in events:
            event.remove(engine, name, listener)
