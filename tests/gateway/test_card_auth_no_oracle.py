"""Before a card has proven possession, a refusal says nothing about the registry: a terminal
that sends a card_sn (and, for a third-generation card, its public certificate) without the
card gets the same answer for a lost, superseded, unactivated, unknown or active card. Only a
card whose signature or cryptogram verified is told its registry status (docs/
card-authentication.md §5); the specific reason is in the metrics either way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from card_auth_testkit import (
    LEGACY_ACTIVE,
    LEGACY_LOST,
    LEGACY_SUPERSEDED,
    NEW_ACTIVE,
    NEW_LOST,
    NEW_NOT_ACTIVATED,
    NEW_UNKNOWN,
    CardTerminal,
    load_registry,
    soft_card,
    stored,
)
from gateway_testkit import Signer, assert_problem
from sqlalchemy import Engine

# A well-formed legacy card_sn that no registry row has.
UNREGISTERED_LEGACY_SN = "310000D15600000599999999FFFFFFFF"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}


@pytest.fixture
def registry(engine: Engine) -> Engine:
    load_registry(engine)
    return engine


@pytest.fixture
def terminal(signer: Signer, registry: Engine) -> CardTerminal:
    return CardTerminal(signer)


def _comparable(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in ("request_id", "instance")}


async def _forged_gen3(terminal: CardTerminal, m: int) -> dict[str, Any]:
    """The card's genuine (public) certificate, a signature the card never made."""
    card = soft_card(m)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted)
    signature = bytearray.fromhex(body["signature"])
    signature[7] ^= 0x01
    body["signature"] = signature.hex()
    return await assert_problem(await terminal.respond(body), 401, "CARD_SIGNATURE_INVALID")


async def _forged_gen2(terminal: CardTerminal, card_sn: str) -> dict[str, Any]:
    granted = await terminal.granted_challenge(card_sn, 2)
    body = {"challenge_id": granted["challenge_id"], "card_sn": card_sn}
    body["cryptogram"] = "00112233445566AA"
    return await assert_problem(await terminal.respond(body), 401, "CRYPTOGRAM_INVALID")


async def test_third_generation_without_the_card_learns_nothing(
    terminal: CardTerminal,
    registry: Engine,
    rejection_delta: Callable[[str], Callable[[], float]],
) -> None:
    lost = rejection_delta("CARD_LOST")
    answers = [
        await _forged_gen3(terminal, m)
        for m in (NEW_ACTIVE, NEW_LOST, NEW_NOT_ACTIVATED, NEW_UNKNOWN)
    ]
    assert len({str(_comparable(a)) for a in answers}) == 1, answers
    assert lost() == 0
    # Nothing learnt, nothing kept: each challenge burnt, no certificate stored.
    assert stored(registry) == {"challenges": 4, "used": 4, "certificates": 0}


async def test_legacy_without_the_card_learns_nothing(
    terminal: CardTerminal, registry: Engine
) -> None:
    card_sns = [soft_card(m).card_sn.hex for m in (LEGACY_ACTIVE, LEGACY_LOST, LEGACY_SUPERSEDED)]
    answers = [await _forged_gen2(terminal, sn) for sn in [*card_sns, UNREGISTERED_LEGACY_SN]]
    assert len({str(_comparable(a)) for a in answers}) == 1, answers


@pytest.mark.parametrize(
    ("m", "code"),
    [(NEW_LOST, "CARD_LOST"), (LEGACY_LOST, "CARD_LOST"), (NEW_UNKNOWN, "CARD_UNKNOWN")],
)
async def test_the_specific_reason_once_the_card_proved_itself(
    terminal: CardTerminal, registry: Engine, m: int, code: str
) -> None:
    await assert_problem(await terminal.authenticate(m), 403, code)
    # A card refused by the registry is not remembered as one that authenticated.
    assert stored(registry)["certificates"] == 0
