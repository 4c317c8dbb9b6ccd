"""How a settle reaches the database (the shape the settle benchmark depends on), on SQLite and
(mark ``postgres``) PostgreSQL: one transaction holding the request nonce, group-committed on
SQLite and run beside the writer queue on PostgreSQL, a bounded number of Core statements,
and a replayed request that stops at its nonce and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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
from sqlalchemy import Engine, event

from gateway.state import DATABASE

SETTLE = "/v1/settlements"
# Statements one settle runs through SQLAlchemy (key lookup, settlement INSERT … RETURNING,
# account, year totals, ledger sum; SQLite adds its BEGIN IMMEDIATE, PostgreSQL the advisory
# lock and the two locked re-reads). The request nonce, the counter read and the INSERTs of
# lines, ledger transaction, entries and stored answer run on the driver's cursor
# (gateway.store.DriverStatement, settlement.store.DriverInsert), unseen here. Before the
# rewrite a settle ran ~22 statements, all through the ORM.
MAX_STATEMENTS = {"sqlite": 6, "postgresql": 8}


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
        **till.signer.headers("POST", SETTLE, body, nonce="settle-speed-nonce-0001"),
        "Content-Type": "application/json",
        "X-Card-Session": till.card_session,
        "Idempotency-Key": "speed-1",
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
    # One write (the nonce went inside it), marked for both ways of going fast.
    assert seen == [{"grouped": True, "concurrent": True}]
    serial = database.engine.dialect.name == "sqlite"
    assert database.writes_are_serial is serial
    # SQLite: through the writer queue (one batch); PostgreSQL: beside it, on the pool.
    assert database.batches == batches + (1 if serial else 0)


async def test_a_settle_sends_a_bounded_number_of_statements(
    till: Till, app: web.Application
) -> None:
    engine = app[DATABASE].engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        await till.settled(outpatient())
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert 0 < len(statements) <= MAX_STATEMENTS[engine.dialect.name], statements
    # Nothing reads the ledger back beyond the one aggregate on the new transaction id.
    ledger_reads = [
        s for s in statements if s.lstrip().startswith("SELECT") and "ledger_entries" in s
    ]
    assert len(ledger_reads) == 1, ledger_reads
