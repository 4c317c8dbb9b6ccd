"""The card-authentication routes insert the request nonce in their own write unit
(``nonce_in_handler``): a replayed request is still refused with REQUEST_REPLAYED, and stores
nothing: no challenge issued, no challenge consumed."""

from __future__ import annotations

from typing import Any

import pytest
from card_auth_testkit import NEW_ACTIVE, CardTerminal, load_registry, soft_card, stored
from gateway_testkit import Signer, assert_problem, nonce_count
from sqlalchemy import Engine

NONCE = "replayed-nonce-0123456789"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}


@pytest.fixture
def terminal(signer: Signer, engine: Engine) -> CardTerminal:
    load_registry(engine)
    return CardTerminal(signer)


async def test_replayed_challenge_request_issues_nothing(
    terminal: CardTerminal, engine: Engine
) -> None:
    body = {"card_sn": soft_card(NEW_ACTIVE).card_sn.hex, "generation": 3}
    first = await terminal.signer.post("/v1/card-auth/challenge", body, nonce=NONCE)
    assert first.status == 200
    again = await terminal.signer.post("/v1/card-auth/challenge", body, nonce=NONCE)
    await assert_problem(again, 401, "REQUEST_REPLAYED")
    assert stored(engine)["challenges"] == 1
    assert nonce_count(engine) == 1


async def test_replayed_response_consumes_nothing(terminal: CardTerminal, engine: Engine) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    answer = terminal.answer(card, granted)
    first = await terminal.signer.post("/v1/card-auth/response", answer, nonce=NONCE)
    assert first.status == 200, await first.text()
    # A second, genuine answer to a fresh challenge, sent with the used nonce: refused before
    # the challenge is touched, so the challenge is still there to be answered properly.
    fresh = await terminal.granted_challenge(card.card_sn.hex, 3)
    second = terminal.answer(card, fresh)
    replayed = await terminal.signer.post("/v1/card-auth/response", second, nonce=NONCE)
    await assert_problem(replayed, 401, "REQUEST_REPLAYED")
    assert stored(engine) == {"challenges": 2, "used": 1, "certificates": 1}
    assert (await terminal.respond(second)).status == 200
    assert stored(engine)["used"] == 2
