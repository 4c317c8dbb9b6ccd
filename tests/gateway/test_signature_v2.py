"""Request signature version 2 at the gateway: the card session, the Idempotency-Key and the
terminal id are inside the signed string, so a request whose card session or key was swapped
after signing is refused, and writes nothing; version 1 only inside its transition window."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from card_auth_testkit import LEGACY_ACTIVE, NEW_ACTIVE
from gateway_testkit import Signer, assert_problem
from settlement_api_testkit import Till, assert_ledger_balanced, load_insured_world, outpatient
from settlement_api_testkit import snapshot as written
from sqlalchemy import Engine

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
async def two_sessions(signer: Signer, world: Engine) -> tuple[str, str]:
    """Two card sessions issued to the same terminal: holder 0's and holder 5's."""
    till = Till(signer)
    return await till.read_card(NEW_ACTIVE), await till.read_card(LEGACY_ACTIVE)


async def _send(signer: Signer, signed: dict[str, str], sent: dict[str, str]) -> Any:
    """Sign with the headers in ``signed``, then send with those in ``sent`` instead."""
    body = json.dumps(outpatient()).encode()
    headers = signer.headers(
        "POST",
        SETTLE,
        body,
        card_session=signed.get("X-Card-Session"),
        idempotency_key=signed.get("Idempotency-Key"),
    )
    for name in ("X-Card-Session", "Idempotency-Key"):
        headers.pop(name, None)
    headers.update(sent)
    headers["Content-Type"] = "application/json"
    return await signer.client.post(SETTLE, data=body, headers=headers)


async def test_a_card_session_swapped_after_signing_is_refused(
    signer: Signer, world: Engine, two_sessions: tuple[str, str]
):
    mine, other = two_sessions
    before = written(world)
    signed = {"X-Card-Session": mine, "Idempotency-Key": "v2-swap-session"}
    response = await _send(signer, signed, {**signed, "X-Card-Session": other})
    await assert_problem(response, 401, "SIGNATURE_INVALID")
    assert written(world) == before
    # The same request as signed goes through: the refusal was the swap's.
    response = await _send(signer, signed, signed)
    assert response.status == 201, await response.text()


async def test_an_idempotency_key_swapped_after_signing_is_refused(
    signer: Signer, world: Engine, two_sessions: tuple[str, str]
):
    mine, _ = two_sessions
    before = written(world)
    signed = {"X-Card-Session": mine, "Idempotency-Key": "v2-key-a"}
    for sent in (
        {**signed, "Idempotency-Key": "v2-key-b"},
        {"X-Card-Session": mine},  # the key dropped
    ):
        response = await _send(signer, signed, sent)
        await assert_problem(response, 401, "SIGNATURE_INVALID")
    # A key added to a request signed without one.
    response = await _send(signer, {"X-Card-Session": mine}, signed)
    await assert_problem(response, 401, "SIGNATURE_INVALID")
    assert written(world) == before


async def test_a_signed_header_sent_twice_is_refused(
    signer: Signer, world: Engine, two_sessions: tuple[str, str]
):
    mine, other = two_sessions
    body = json.dumps(outpatient()).encode()
    headers = signer.headers("POST", SETTLE, body, card_session=mine, idempotency_key="v2-twice")
    pairs = [*headers.items(), ("X-Card-Session", other), ("Content-Type", "application/json")]
    before = written(world)
    response = await signer.client.post(SETTLE, data=body, headers=pairs)
    await assert_problem(response, 401, "SIGNATURE_INVALID")
    assert written(world) == before


async def test_version_1_is_refused_with_its_own_code(signer: Signer):
    body = json.dumps({"message": "hello"}).encode()
    headers = {**signer.headers("POST", "/v1/echo", body, version=1)}
    headers["Content-Type"] = "application/json"
    response = await signer.client.post("/v1/echo", data=body, headers=headers)
    problem = await assert_problem(response, 401, "SIGNATURE_VERSION_UNSUPPORTED")
    assert "X-Signature-Version" in problem["detail"]
    headers = {**signer.headers("POST", "/v1/echo", body), "X-Signature-Version": "3"}
    headers["Content-Type"] = "application/json"
    response = await signer.client.post("/v1/echo", data=body, headers=headers)
    await assert_problem(response, 401, "SIGNATURE_VERSION_UNSUPPORTED")


class TestTransitionWindow:
    """``terminal_signature_v1_until``: version 1 still accepted through that Beijing day."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        # The fake clock's day is 2027-01-15.
        return {"demo_world": "on", "terminal_signature_v1_until": dt.date(2027, 1, 15)}

    async def test_version_1_accepted_inside_the_window(self, signer: Signer):
        body = json.dumps({"message": "hello"}).encode()
        headers = signer.headers("POST", "/v1/echo", body, version=1)
        headers["Content-Type"] = "application/json"
        response = await signer.client.post("/v1/echo", data=body, headers=headers)
        assert response.status == 200, await response.text()

    async def test_version_1_refused_the_day_after(self, signer: Signer):
        signer.clock.now_s += 86_400
        body = json.dumps({"message": "hello"}).encode()
        headers = signer.headers("POST", "/v1/echo", body, version=1)
        headers["Content-Type"] = "application/json"
        response = await signer.client.post("/v1/echo", data=body, headers=headers)
        await assert_problem(response, 401, "SIGNATURE_VERSION_UNSUPPORTED")
