"""How a pre-settle reaches the database, on SQLite and (mark ``postgres``) PostgreSQL: ONE unit
holding the request nonce and the counter read (no separate nonce transaction, no read
transaction), marked non-durable, group-committed on SQLite; the engine runs after it. What it
answers is what the read-only path computes; a replay stops at the nonce; nothing but the nonce
is written."""

from __future__ import annotations

import datetime as dt
import json
from functools import partial
from typing import Any

import pytest
from aiohttp import web
from card_auth_testkit import NEW_ACTIVE
from gateway_testkit import HOSPITAL, Signer, assert_problem, nonce_count
from settlement_api_testkit import Till, load_insured_world, outpatient, snapshot
from sqlalchemy import Engine

from gateway.card_auth.service import CARD_AUTH
from gateway.settlement_api.views import estimate_view
from gateway.state import CLOCK, DATABASE, TERMINALS
from issuance.registry import require_usable
from settlement.counter import settle as at_counter
from settlement.counter.outcomes import claim_lines
from settlement.counter.ports import AtCounter, Counter

PRE_SETTLE = "/v1/settlements/pre-settle"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}


@pytest.fixture
def world(engine: Engine) -> Engine:
    load_insured_world(engine)
    return engine


@pytest.fixture
async def till(signer: Signer, world: Engine) -> Till:
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)
    return till


async def test_a_pre_settle_is_one_non_durable_unit_with_its_nonce(
    till: Till, app: web.Application, world: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = app[DATABASE]
    seen: list[dict[str, Any]] = []
    reads: list[Any] = []
    write, read = database.write, database.read

    async def spy_write(unit: Any, **options: Any) -> Any:
        seen.append(options)
        return await write(unit, **options)

    async def spy_read(unit: Any) -> Any:
        reads.append(unit)
        return await read(unit)

    monkeypatch.setattr(database, "write", spy_write)
    monkeypatch.setattr(database, "read", spy_read)
    nonces, batches, before = nonce_count(world), database.batches, snapshot(world)
    response = await till.post(PRE_SETTLE, outpatient())
    assert response.status == 200, await response.text()
    assert seen == [{"durable": False, "grouped": True, "concurrent": True}]
    assert reads == []
    assert nonce_count(world) == nonces + 1
    serial = database.writes_are_serial
    assert database.batches == batches + (1 if serial else 0)
    assert snapshot(world) == before  # nothing but the nonce


async def test_the_estimate_equals_a_read_then_the_engine(
    till: Till, app: web.Application, signer: Signer
) -> None:
    body = outpatient()
    response = await till.post(PRE_SETTLE, body)
    assert response.status == 200, await response.text()
    answered = await response.json()
    assert till.card_session is not None
    session = app[CARD_AUTH].require_card_session(till.card_session, signer.terminal_id)
    terminal = await app[TERMINALS].get(signer.terminal_id)
    assert terminal is not None
    at = AtCounter(
        Counter(HOSPITAL, terminal.institution_kind, terminal.institution_level),
        session.holder_id,
        partial(_card_usable, card_sn=session.card_sn),
    )
    read = await app[DATABASE].read(
        partial(
            at_counter.counter_read,
            nonce=None,
            at=at,
            visit_type=body["visit_type"],
            visit_date=dt.date.fromisoformat(body["visit_date"]),
            now=dt.datetime.fromtimestamp(app[CLOCK](), dt.UTC),
        )
    )
    lines = [(line["code"], line["quantity"], line["unit_price_fen"]) for line in body["lines"]]
    expected = estimate_view(at_counter.estimate(read, claim_lines(lines)))
    assert answered == json.loads(expected.model_dump_json())
    assert answered["medfee_sumamt"] > 0


def _card_usable(session: Any, today: dt.date, *, card_sn: str) -> None:
    require_usable(session, card_sn, today=today, legacy_accepted_until=None)


async def test_a_replayed_pre_settle_stops_at_its_nonce(till: Till, world: Engine) -> None:
    assert till.card_session is not None
    body = json.dumps(outpatient()).encode()
    headers = {
        **till.signer.headers(
            "POST",
            PRE_SETTLE,
            body,
            nonce="pre-settle-nonce-0001",
            card_session=till.card_session,
        ),
        "Content-Type": "application/json",
    }
    first = await till.signer.client.post(PRE_SETTLE, data=body, headers=headers)
    assert first.status == 200, await first.text()
    nonces = nonce_count(world)
    again = await till.signer.client.post(PRE_SETTLE, data=body, headers=headers)
    await assert_problem(again, 401, "REQUEST_REPLAYED")
    assert nonce_count(world) == nonces
