"""Signed requests through the whole stack: ok, unknown, disabled, bad signature, skew, replay."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
from gateway_testkit import (
    OFF_TERMINAL,
    OK_TERMINAL,
    OTHER_TERMINAL,
    SECRETS,
    Client,
    FakeClock,
    Signer,
    assert_problem,
    nonce_count,
)
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from gateway.store import Terminal

Delta = Callable[[str], Callable[[], float]]


async def test_signed_echo(signer: Signer, engine: Engine):
    response = await signer.post(body={"message": "你好 hello"})
    assert response.status == 200
    assert await response.json() == {
        "terminal_id": OK_TERMINAL,
        "institution_code": "H31000099001",
        "worker_pid": os.getpid(),
        "body": {"message": "你好 hello"},
    }
    assert "X-Request-Id" in response.headers
    assert nonce_count(engine) == 1


async def test_query_string_is_part_of_the_signature(signer: Signer):
    assert (await signer.post("/v1/echo?visit=42")).status == 200
    # Signed for /v1/echo, sent to /v1/echo?visit=42.
    headers = signer.headers("POST", "/v1/echo", b'{"message":"x"}')
    response = await signer.client.post(
        "/v1/echo?visit=42",
        data=b'{"message":"x"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    await assert_problem(response, 401, "SIGNATURE_INVALID")


async def test_unknown_terminal(
    client: Client, clock: FakeClock, engine: Engine, rejection_delta: Delta
):
    delta = rejection_delta("TERMINAL_UNKNOWN")
    response = await Signer(client, clock, "NO-SUCH-TERMINAL", b"\x11" * 32).post()
    await assert_problem(response, 401, "TERMINAL_UNKNOWN")
    assert response.headers["WWW-Authenticate"].startswith("HMAC-SM3")
    assert delta() == 1
    assert nonce_count(engine) == 0


async def test_malformed_terminal_id_is_unknown(signer: Signer, engine: Engine):
    response = await signer.post(extra_headers={"X-Terminal-Id": "../etc/passwd"})
    await assert_problem(response, 401, "TERMINAL_UNKNOWN")
    assert nonce_count(engine) == 0


async def test_disabled_terminal(
    client: Client, clock: FakeClock, engine: Engine, rejection_delta: Delta
):
    delta = rejection_delta("TERMINAL_DISABLED")
    response = await Signer(client, clock, OFF_TERMINAL, SECRETS[OFF_TERMINAL]).post()
    await assert_problem(response, 401, "TERMINAL_DISABLED")
    assert delta() == 1
    assert nonce_count(engine) == 0


async def test_wrong_secret(
    client: Client, clock: FakeClock, engine: Engine, rejection_delta: Delta
):
    delta = rejection_delta("SIGNATURE_INVALID")
    response = await Signer(client, clock, OK_TERMINAL, SECRETS[OTHER_TERMINAL]).post()
    await assert_problem(response, 401, "SIGNATURE_INVALID")
    assert delta() == 1
    assert nonce_count(engine) == 0


async def test_body_changed_after_signing(signer: Signer, engine: Engine):
    headers = signer.headers("POST", "/v1/echo", b'{"message":"pay 1"}')
    response = await signer.client.post(
        "/v1/echo",
        data=b'{"message":"pay 9"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    await assert_problem(response, 401, "SIGNATURE_INVALID")
    assert nonce_count(engine) == 0


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Signature", "not-hex"),
        ("X-Signature", "ab" * 31),
        ("X-Nonce", "too-short"),
        ("X-Nonce", "x" * 65),
        ("X-Timestamp", "1.8e9"),
        ("X-Timestamp", "-1800000000"),
    ],
)
async def test_malformed_auth_header_is_signature_invalid(
    signer: Signer, engine: Engine, header: str, value: str
):
    response = await signer.post(extra_headers={header: value})
    body = await assert_problem(response, 401, "SIGNATURE_INVALID")
    assert header in body["detail"]
    assert nonce_count(engine) == 0


@pytest.mark.parametrize("missing", ["X-Terminal-Id", "X-Timestamp", "X-Nonce", "X-Signature"])
async def test_missing_auth_header(
    signer: Signer, engine: Engine, missing: str, rejection_delta: Delta
):
    delta = rejection_delta("SIGNATURE_MISSING")
    raw = b'{"message":"x"}'
    headers = signer.headers("POST", "/v1/echo", raw)
    del headers[missing]
    response = await signer.client.post(
        "/v1/echo", data=raw, headers={**headers, "Content-Type": "application/json"}
    )
    body = await assert_problem(response, 401, "SIGNATURE_MISSING")
    assert missing in body["detail"]
    assert delta() == 1
    assert nonce_count(engine) == 0


@pytest.mark.parametrize("offset_s", [-31, 31, -3600, 10**6])
async def test_timestamp_outside_skew_window(
    signer: Signer, clock: FakeClock, engine: Engine, offset_s: int, rejection_delta: Delta
):
    delta = rejection_delta("TIMESTAMP_SKEW")
    response = await signer.post(timestamp=int(clock.now_s) + offset_s)
    body = await assert_problem(response, 401, "TIMESTAMP_SKEW")
    assert "±30 s" in body["detail"]
    assert delta() == 1
    assert nonce_count(engine) == 0


@pytest.mark.parametrize("offset_s", [-30, 30])
async def test_timestamp_at_the_edge_of_the_window_is_accepted(
    signer: Signer, clock: FakeClock, offset_s: int
):
    assert (await signer.post(timestamp=int(clock.now_s) + offset_s)).status == 200


async def test_replay_is_rejected(signer: Signer, engine: Engine, rejection_delta: Delta):
    delta = rejection_delta("REQUEST_REPLAYED")
    raw = b'{"message":"settle once"}'
    headers = {**signer.headers("POST", "/v1/echo", raw), "Content-Type": "application/json"}
    first = await signer.client.post("/v1/echo", data=raw, headers=headers)
    assert first.status == 200
    again = await signer.client.post("/v1/echo", data=raw, headers=headers)
    await assert_problem(again, 401, "REQUEST_REPLAYED")
    assert delta() == 1
    assert nonce_count(engine) == 1


async def test_nonce_reused_with_a_fresh_signature_is_still_a_replay(
    signer: Signer, clock: FakeClock
):
    nonce = "the-same-nonce-0123456789"
    assert (await signer.post(nonce=nonce)).status == 200
    clock.now_s += 5
    response = await signer.post(body={"message": "different"}, nonce=nonce)
    await assert_problem(response, 401, "REQUEST_REPLAYED")


async def test_nonces_are_per_terminal(
    signer: Signer, client: Client, clock: FakeClock, engine: Engine
):
    nonce = "shared-nonce-0123456789"
    assert (await signer.post(nonce=nonce)).status == 200
    other = Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL])
    assert (await other.post(nonce=nonce)).status == 200
    assert nonce_count(engine) == 2


async def test_concurrent_replays_let_exactly_one_through(signer: Signer, engine: Engine):
    raw = b'{"message":"race"}'
    headers = {**signer.headers("POST", "/v1/echo", raw), "Content-Type": "application/json"}
    responses = await asyncio.gather(
        *(signer.client.post("/v1/echo", data=raw, headers=headers) for _ in range(8))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] + [401] * 7
    assert nonce_count(engine) == 1


async def test_invalid_body_does_not_burn_the_nonce(signer: Signer, engine: Engine):
    nonce = "nonce-for-a-bad-body-0001"
    response = await signer.post(body={"message": 1}, nonce=nonce)
    await assert_problem(response, 422, "VALIDATION_FAILED")
    assert nonce_count(engine) == 0


@pytest.mark.parametrize("settings_overrides", [{"terminal_rate_per_s": 0.5, "terminal_burst": 2}])
async def test_rate_limit_per_terminal(
    signer: Signer, client: Client, clock: FakeClock, engine: Engine, rejection_delta: Delta
):
    delta = rejection_delta("RATE_LIMITED")
    assert (await signer.post()).status == 200
    assert (await signer.post()).status == 200
    response = await signer.post()
    await assert_problem(response, 429, "RATE_LIMITED")
    assert response.headers["Retry-After"] == "2"
    assert delta() == 1
    assert nonce_count(engine) == 2  # the refused request left no trace
    # Another terminal has its own bucket; time refills this one.
    assert (
        await Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL]).post()
    ).status == 200
    clock.now_s += 2
    assert (await signer.post()).status == 200


@pytest.mark.parametrize("settings_overrides", [{"terminal_cache_ttl_s": 0}])
async def test_disabling_takes_effect_after_the_cache_ttl(signer: Signer, engine: Engine):
    assert (await signer.post()).status == 200
    with Session(engine) as session, session.begin():
        session.execute(
            update(Terminal).where(Terminal.terminal_id == OK_TERMINAL).values(enabled=False)
        )
    await assert_problem(await signer.post(), 401, "TERMINAL_DISABLED")


async def test_operational_endpoints_need_no_signature(client: Client):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await client.get(path)).status == 200, path
