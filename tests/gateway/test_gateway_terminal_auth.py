"""Signed requests through the whole stack: ok, unknown, disabled, bad signature, skew, replay."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any

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

from gateway.store import Institution, Terminal
from sscard import terminal_auth as ta

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
    """Answered as a wrong signature (the caller may not learn that the id is unknown);
    counted, for the operator, by its reason."""
    delta = rejection_delta("TERMINAL_UNKNOWN")
    response = await Signer(client, clock, "NO-SUCH-TERMINAL", b"\x11" * 32).post()
    await assert_problem(response, 401, "SIGNATURE_INVALID")
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
    """Told to the terminal that proved its key (the clerk can act on it)."""
    delta = rejection_delta("TERMINAL_DISABLED")
    response = await Signer(client, clock, OFF_TERMINAL, SECRETS[OFF_TERMINAL]).post()
    await assert_problem(response, 401, "TERMINAL_DISABLED")
    assert delta() == 1
    assert nonce_count(engine) == 0


def _outward(response_body: dict[str, Any], headers: Any) -> str:
    """Everything a caller sees, less what differs per request by design."""
    body = {k: v for k, v in response_body.items() if k not in ("request_id", "instance")}
    kept = {
        k.lower(): v
        for k, v in headers.items()
        if k.lower() not in ("x-request-id", "date", "content-length")
    }
    return json.dumps([body, sorted(kept.items())], sort_keys=True)


async def test_without_the_key_unknown_disabled_and_wrong_are_one_answer(
    client: Client,
    clock: FakeClock,
    engine: Engine,
    rejection_delta: Delta,
    caplog: pytest.LogCaptureFixture,
):
    """Nobody who has not proved a terminal's key can tell an unknown terminal id, a
    disabled terminal (or one of a suspended institution) and a wrong signature apart:
    the same status, headers, code, title, messages and detail. The operator still can:
    the access log's reason and the rejection metric's label."""
    with Session(engine) as session, session.begin():
        institution = session.get(Terminal, OTHER_TERMINAL)
        assert institution is not None
        session.execute(
            update(Institution)
            .where(Institution.code == institution.institution_code)
            .values(suspended=True)
        )
    wrong = b"\x44" * 32
    cases = {
        "TERMINAL_UNKNOWN": Signer(client, clock, "NO-SUCH-TERMINAL", wrong),
        "TERMINAL_DISABLED": Signer(client, clock, OFF_TERMINAL, wrong),
        "SIGNATURE_INVALID": Signer(client, clock, OK_TERMINAL, wrong),
    }
    seen = set()
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        for reason, signer in cases.items():
            delta = rejection_delta(reason)
            response = await signer.post()
            body = await assert_problem(response, 401, "SIGNATURE_INVALID")
            seen.add(_outward(body, response.headers))
            assert delta() == 1, reason
        # A terminal whose institution is suspended, without its key: the same again.
        response = await Signer(client, clock, OTHER_TERMINAL, wrong).post()
        body = await assert_problem(response, 401, "SIGNATURE_INVALID")
        seen.add(_outward(body, response.headers))
    assert len(seen) == 1
    reasons = [getattr(r, "gateway_fields", {}).get("reason") for r in caplog.records]
    assert reasons == [
        "TERMINAL_UNKNOWN",
        "TERMINAL_DISABLED",
        None,  # the answer is the reason: no reason field
        "TERMINAL_DISABLED",
    ]
    # With its key, the suspended institution's terminal is told.
    response = await Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL]).post()
    await assert_problem(response, 401, "TERMINAL_DISABLED")
    assert nonce_count(engine) == 0


async def test_an_unknown_terminal_id_costs_a_signature_check_too(
    client: Client, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    """The unknown-id path verifies the signature against a dummy key, so it does the same
    work as a known id (counted, not timed)."""
    verified: list[bytes] = []
    real = ta.verify_request_signature_v2

    def counting(secret: bytes, *args: Any, **kwargs: Any) -> None:
        verified.append(secret)
        real(secret, *args, **kwargs)

    monkeypatch.setattr(ta, "verify_request_signature_v2", counting)
    await Signer(client, clock, "NO-SUCH-TERMINAL", b"\x11" * 32).post()
    await Signer(client, clock, OK_TERMINAL, b"\x44" * 32).post()
    assert len(verified) == 2
    assert verified[0] not in SECRETS.values()


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
