"""A signed request refused for the state of things spends its nonce, wherever it was refused
(before the handler's unit, or inside it, whose rollback took the nonce with it): a captured
refused request sent again is REQUEST_REPLAYED, even once the cause of the refusal has gone.
A challenge whose answer was refused cannot be answered again. Bad input (schema) still
writes nothing: its signed bytes can only ever be refused the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from card_auth_testkit import NEW_ACTIVE, SEED, CardTerminal, soft_card
from gateway_testkit import Signer, assert_problem, nonce_count
from settlement_api_testkit import Till, assert_ledger_balanced, load_insured_world, outpatient
from settlement_api_testkit import snapshot as written
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from issuance.store import Card, CardState
from sscard import demo as sd

SETTLE = "/v1/settlements"


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


def _set_state(engine: Engine, state: CardState) -> None:
    with Session(engine) as session, session.begin():
        card = session.get(Card, sd.demo_card(SEED, NEW_ACTIVE).card_sn)
        assert card is not None
        card.state = state


async def test_a_settle_refused_inside_its_unit_cannot_be_replayed(till: Till, world: Engine):
    assert till.card_session is not None
    body = json.dumps(outpatient()).encode()
    headers = till.signer.headers(
        "POST",
        SETTLE,
        body,
        nonce="refused-settle-nonce-01",
        card_session=till.card_session,
        idempotency_key="burn-1",
    )
    headers["Content-Type"] = "application/json"
    _set_state(world, CardState.LOST)
    before = written(world)
    first = await till.signer.client.post(SETTLE, data=body, headers=headers)
    await assert_problem(first, 403, "CARD_LOST")
    assert written(world) == before
    # The card is found again; the captured request, sent as it was, must not settle now.
    _set_state(world, CardState.ACTIVE)
    replay = await till.signer.client.post(SETTLE, data=body, headers=headers)
    await assert_problem(replay, 401, "REQUEST_REPLAYED")
    assert written(world) == before
    # The terminal itself signs afresh and settles.
    assert (await till.post(SETTLE, outpatient(), key="burn-1")).status == 201


async def test_a_settle_refused_before_its_unit_cannot_be_replayed(signer: Signer, world: Engine):
    # The handler refuses a settle without an Idempotency-Key before its unit begins.
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)
    assert till.card_session is not None
    body = json.dumps(outpatient()).encode()
    headers = signer.headers(
        "POST", SETTLE, body, nonce="no-key-nonce-000001", card_session=till.card_session
    )
    headers["Content-Type"] = "application/json"
    nonces = nonce_count(world)
    first = await signer.client.post(SETTLE, data=body, headers=headers)
    await assert_problem(first, 400, "IDEMPOTENCY_KEY_MISSING")
    assert nonce_count(world) == nonces + 1
    replay = await signer.client.post(SETTLE, data=body, headers=headers)
    await assert_problem(replay, 401, "REQUEST_REPLAYED")


async def test_a_refused_card_answer_cannot_be_answered_again(signer: Signer, world: Engine):
    terminal = CardTerminal(signer)
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    genuine = terminal.answer(card, granted)
    forged = dict(genuine)
    signature = bytearray.fromhex(forged["signature"])
    signature[3] ^= 0x01
    forged["signature"] = signature.hex()
    refused_raw = json.dumps(forged).encode()
    refused_headers = signer.headers("POST", "/v1/card-auth/response", refused_raw)
    refused_headers["Content-Type"] = "application/json"
    first = await signer.client.post(
        "/v1/card-auth/response", data=refused_raw, headers=refused_headers
    )
    await assert_problem(first, 401, "CARD_SIGNATURE_INVALID")
    # The card's genuine answer to the same challenge comes too late: the challenge is spent.
    await assert_problem(await terminal.respond(genuine), 409, "CHALLENGE_REUSED")
    # And the refused request itself cannot be sent again.
    replay = await signer.client.post(
        "/v1/card-auth/response", data=refused_raw, headers=refused_headers
    )
    await assert_problem(replay, 401, "REQUEST_REPLAYED")


async def test_bad_input_still_writes_nothing(signer: Signer, world: Engine):
    nonces = nonce_count(world)
    response = await signer.post("/v1/card-auth/challenge", {"card_sn": "nope", "generation": 3})
    await assert_problem(response, 422, "VALIDATION_FAILED")
    assert nonce_count(world) == nonces
