"""GatewayClient against a fake gateway: signing, retry rules, idempotency keys kept across
retries, problem+json mapping, card authentication (CERT_UNKNOWN), the synchronous wrapper."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import threading
from collections.abc import AsyncIterator

import pytest
from fake_gateway import (
    DROP,
    DROP_AFTER_WORK,
    SECRET,
    TERMINAL_ID,
    FakeGateway,
    Problem,
    problem,
)
from sdk_testkit import Pki, WrappedCard, legacy_card, third_gen_card

from sscard.terminal_auth import HEADER_NONCE
from terminal_sdk import (
    AnswerLost,
    CardNotAccepted,
    CardNotGenuine,
    CertificateUnknown,
    Claim,
    FeeLine,
    GatewayBusy,
    GatewayClient,
    GatewayInternalError,
    GatewayProblem,
    GatewayUnreachable,
    IdempotencyConflict,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    MemoryReader,
    OutcomeUnknown,
    RequestInvalid,
    RetryPolicy,
    RouteUnavailable,
    SettlementRejected,
    SocialSecurityCard,
    SyncGatewayClient,
    TerminalError,
    TerminalRejected,
)
from terminal_sdk.problems import problem_from_response

CLAIM = Claim("outpatient", "2025-06-01", (FeeLine("DEMO-A-002", 1, 2500),))


class Sleeps:
    """Records the backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(fake: FakeGateway, sleeps: Sleeps) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(
        fake.url, TERMINAL_ID, SECRET, retry=RetryPolicy(max_attempts=3), sleep=sleeps, timeout_s=5
    ) as gateway_client:
        yield gateway_client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- signing and transport ------------------------------------------------------------------------


async def test_every_request_is_signed_with_a_fresh_nonce(
    client: GatewayClient, fake: FakeGateway
) -> None:
    # The fake verifies every signature with sscard.terminal_auth and refuses reused nonces.
    assert (await client.get("/v1/echo", query={"date": "2025-06-01", "q": "a b"}))["path"] == (
        "/v1/echo?date=2025-06-01&q=a+b"
    )
    answer = await client.request("POST", "/v1/echo", body={"名": "张三"})
    assert answer.status == 200
    assert json.loads(fake.seen[-1].body) == {"名": "张三"}
    nonces = [seen.headers[HEADER_NONCE] for seen in fake.seen]
    assert len(set(nonces)) == len(nonces) == 2


async def test_a_path_prefix_is_part_of_what_is_signed(fake: FakeGateway) -> None:
    async with GatewayClient(fake.url + "/gw/", TERMINAL_ID, SECRET, retry=RetryPolicy(1)) as c:
        with pytest.raises(RouteUnavailable):
            await c.get("/v1/echo")
    assert fake.seen[-1].path == "/gw/v1/echo"


async def test_a_wrong_secret_is_a_terminal_problem(fake: FakeGateway) -> None:
    async with GatewayClient(fake.url, TERMINAL_ID, b"x" * 32) as c:
        with pytest.raises(TerminalRejected) as rejected:
            await c.get("/v1/echo")
    assert rejected.value.code == "SIGNATURE_INVALID"
    assert rejected.value.status == 401
    assert len(fake.seen) == 1  # a definite refusal is never retried


def test_bad_urls_are_refused_up_front() -> None:
    for url in ("ftp://gw", "gw:8080", "http://gw/?x=1"):
        with pytest.raises(ValueError, match="gateway URL"):
            GatewayClient(url, TERMINAL_ID, SECRET)


# -- retry rules ----------------------------------------------------------------------------------


async def test_connection_refused_is_retried_with_backoff_then_unreachable(sleeps: Sleeps) -> None:
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=1.0)
    async with GatewayClient(
        f"http://127.0.0.1:{free_port()}", TERMINAL_ID, SECRET, retry=retry, sleep=sleeps
    ) as c:
        # Nothing was sent, so even the card's answer to a challenge may be retried.
        with pytest.raises(GatewayUnreachable) as unreachable:
            await c.request("POST", "/v1/card-auth/response", body={}, retry_after_send=False)
    assert not isinstance(unreachable.value, OutcomeUnknown)
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.1
    assert 0 <= sleeps.delays[1] <= 0.2
    assert "Check the network" in str(unreachable.value)


async def test_503_with_retry_after_is_retried_after_that_long(
    client: GatewayClient, fake: FakeGateway, sleeps: Sleeps
) -> None:
    fake.script["GET /v1/echo"] = [problem(503, "OVERLOADED", **{"Retry-After": "2"})]
    assert (await client.get("/v1/echo"))["path"] == "/v1/echo"
    assert sleeps.delays == [2.0]
    assert len(fake.calls("GET /v1/echo")) == 2


async def test_busy_too_long_or_without_retry_after_is_not_waited_for(
    client: GatewayClient, fake: FakeGateway, sleeps: Sleeps
) -> None:
    fake.script["GET /v1/echo"] = [
        problem(503, "OVERLOADED", **{"Retry-After": "600"}),
        problem(503, "OVERLOADED"),
    ]
    with pytest.raises(GatewayBusy) as busy:
        await client.get("/v1/echo")
    assert busy.value.retry_after_s == 600
    with pytest.raises(GatewayBusy):
        await client.get("/v1/echo")
    assert sleeps.delays == []


async def test_the_cards_answer_is_never_replayed(
    client: GatewayClient, fake: FakeGateway, sleeps: Sleeps
) -> None:
    fake.script["POST /v1/card-auth/response"] = [
        problem(503, "DB_UNAVAILABLE", **{"Retry-After": "1"}),
        DROP,
    ]
    body = {"challenge_id": "c" * 16, "card_sn": "00"}
    with pytest.raises(GatewayBusy):
        await client.request(
            "POST",
            "/v1/card-auth/response",
            body=body,
            retry_after_send=False,
            retry_when_busy=False,
        )
    with pytest.raises(AnswerLost) as lost:
        await client.request("POST", "/v1/card-auth/response", body=body, retry_after_send=False)
    assert isinstance(lost.value, GatewayUnreachable)
    assert not isinstance(lost.value, OutcomeUnknown)  # no key: nothing to resume
    assert not lost.value.retryable  # the challenge may be spent: a fresh one, not a repeat
    assert len(fake.calls("POST /v1/card-auth/response")) == 2
    assert sleeps.delays == []


async def test_a_lost_answer_retries_gets_but_not_unkeyed_posts(
    client: GatewayClient, fake: FakeGateway
) -> None:
    fake.script["GET /v1/echo"] = [DROP]
    assert (await client.get("/v1/echo"))["path"] == "/v1/echo"
    assert len(fake.calls("GET /v1/echo")) == 2

    fake.script["POST /v1/echo"] = [DROP]
    with pytest.raises(AnswerLost) as lost:
        await client.request("POST", "/v1/echo", body={})
    assert len(fake.calls("POST /v1/echo")) == 1
    assert not lost.value.retryable
    # A query (safe to repeat) whose answers were all lost may simply be asked again later.
    fake.script["POST /v1/echo"] = [DROP, DROP, DROP]
    with pytest.raises(GatewayUnreachable) as unreachable:
        await client.request("POST", "/v1/echo", body={}, retry_after_send=True)
    assert len(fake.calls("POST /v1/echo")) == 1 + 3
    assert type(unreachable.value) is GatewayUnreachable
    assert unreachable.value.retryable


async def test_proxy_502_is_a_lost_answer_without_problem_json(
    client: GatewayClient, fake: FakeGateway
) -> None:
    fake.script["GET /v1/echo"] = [Problem(502, "", body="<html>Bad Gateway</html>")] * 3
    with pytest.raises(GatewayInternalError) as failed:
        await client.get("/v1/echo")
    assert failed.value.code == "HTTP_502"
    assert len(fake.calls("GET /v1/echo")) == 3


async def test_idempotency_key_is_kept_across_retries_and_outcome_is_recovered(
    client: GatewayClient, fake: FakeGateway, pki: Pki
) -> None:
    reader = MemoryReader()
    reader.insert(third_gen_card(pki))
    card = SocialSecurityCard.connect(reader)
    session = await client.authenticate_card(card)

    fake.script["POST /v1/settlements"] = [DROP_AFTER_WORK, DROP_AFTER_WORK, DROP_AFTER_WORK]
    with pytest.raises(OutcomeUnknown) as unknown:
        await client.settle(session, CLAIM, idempotency_key="visit-42")
    attempts = fake.calls("POST /v1/settlements")
    assert [a.headers["Idempotency-Key"] for a in attempts] == ["visit-42"] * 3
    assert len({a.headers[HEADER_NONCE] for a in attempts}) == 3  # re-signed every time
    assert len(fake.settlements) == 1  # the first attempt did it; the others were replays

    pending = unknown.value.pending
    assert pending is not None
    assert (pending.idempotency_key, pending.needs_card_session) == ("visit-42", True)
    assert pickle.loads(pickle.dumps(unknown.value)).pending == pending
    receipt = await client.settle(session, CLAIM, idempotency_key=pending.idempotency_key)
    again = await client.resume(pending, session)
    assert again["setl_id"] == receipt.setl_id == "S00000001"
    assert len(fake.settlements) == 1


async def test_key_in_use_is_asked_again(
    client: GatewayClient, fake: FakeGateway, sleeps: Sleeps
) -> None:
    fake.script["POST /v1/settlements/{setl_id}/cancel"] = [problem(409, "IDEMPOTENCY_KEY_IN_USE")]
    fake.settlements["S1"] = {"setl_id": "S1", "status": "settled"}
    answer = await client.cancel_settlement("S1", "wrong patient", idempotency_key="k1")
    assert answer["status"] == "cancelled"
    assert len(sleeps.delays) == 1
    keys = [
        c.headers["Idempotency-Key"] for c in fake.calls("POST /v1/settlements/{setl_id}/cancel")
    ]
    assert keys == ["k1", "k1"]


async def test_key_in_use_waits_the_gateways_retry_after(
    client: GatewayClient, fake: FakeGateway, sleeps: Sleeps
) -> None:
    fake.settlements["S1"] = {"setl_id": "S1", "status": "settled"}
    route = "POST /v1/settlements/{setl_id}/cancel"
    fake.script[route] = [problem(409, "IDEMPOTENCY_KEY_IN_USE", **{"Retry-After": "3"})]
    answer = await client.cancel_settlement("S1", "wrong patient", idempotency_key="k1")
    assert answer["status"] == "cancelled"
    assert sleeps.delays == [3.0]
    # Longer than the policy's max_retry_after_s: not waited for. The first request with the
    # key may still be running, so its outcome is unknown: resume it later, same key.
    fake.script[route] = [problem(409, "IDEMPOTENCY_KEY_IN_USE", **{"Retry-After": "600"})]
    with pytest.raises(OutcomeUnknown) as unknown:
        await client.cancel_settlement("S1", "wrong patient", idempotency_key="k3")
    assert unknown.value.retryable
    assert unknown.value.pending is not None
    assert unknown.value.pending.idempotency_key == "k3"
    in_use = unknown.value.__cause__
    assert isinstance(in_use, IdempotencyKeyInUse)
    assert (in_use.retryable, in_use.retry_after_s) == (True, 600)
    assert sleeps.delays == [3.0]


async def test_same_key_other_body_is_a_conflict(client: GatewayClient, fake: FakeGateway) -> None:
    fake.settlements["S1"] = {"setl_id": "S1", "status": "settled"}
    await client.cancel_settlement("S1", "first", idempotency_key="k2")
    with pytest.raises(IdempotencyConflict) as conflict:
        await client.cancel_settlement("S1", "second", idempotency_key="k2")
    assert (conflict.value.code, conflict.value.status) == ("IDEMPOTENCY_KEY_REUSED", 422)
    assert isinstance(conflict.value, IdempotencyKeyReused)
    assert not conflict.value.retryable


async def test_every_operation_gets_its_own_key(client: GatewayClient, fake: FakeGateway) -> None:
    fake.settlements["S1"] = {"setl_id": "S1", "status": "settled"}
    fake.settlements["S2"] = {"setl_id": "S2", "status": "settled"}
    await client.cancel_settlement("S1", "x")
    await client.cancel_settlement("S2", "x")
    keys = {
        c.headers["Idempotency-Key"] for c in fake.calls("POST /v1/settlements/{setl_id}/cancel")
    }
    assert len(keys) == 2


def test_ids_cannot_change_the_route() -> None:
    c = GatewayClient("http://127.0.0.1:1", TERMINAL_ID, SECRET)
    with pytest.raises(ValueError, match="not a valid id"):
        asyncio.run(c.get_settlement("../admin"))


# -- error mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("VALIDATION_FAILED", 422, RequestInvalid),
        ("TIMESTAMP_SKEW", 401, TerminalRejected),
        ("CARD_LOST", 403, CardNotAccepted),
        ("CERT_CHAIN_INVALID", 401, CardNotGenuine),
        ("CERT_UNKNOWN", 422, CertificateUnknown),
        ("PERSON_NOT_FOUND", 404, SettlementRejected),
        ("INTERNAL", 500, GatewayInternalError),
        ("RATE_LIMITED", 429, GatewayBusy),
    ],
)
def test_codes_map_to_classes(code: str, status: int, cls: type[GatewayProblem]) -> None:
    body = {
        "code": code,
        "status": status,
        "message": "Say this to the clerk.",
        "message_zh": "对收费员说这个。",
        "detail": "for the log",
        "request_id": "r-1",
        "errors": [{"field": "lines.0.code", "problem": "bad"}],
    }
    error = problem_from_response(status, body)
    assert type(error) is cls
    assert isinstance(error, TerminalError)
    assert (error.code, error.status, error.request_id) == (code, status, "r-1")
    assert (str(error), error.message_zh, error.detail) == (
        "Say this to the clerk.",
        "对收费员说这个。",
        "for the log",
    )
    assert error.field_errors == ({"field": "lines.0.code", "problem": "bad"},)
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.code, clone.status) == (cls, code, status)


def test_an_unknown_code_is_a_generic_problem() -> None:
    error = problem_from_response(418, {"code": "TEAPOT", "message": "No coffee."})
    assert type(error) is GatewayProblem
    assert (error.code, error.status, str(error)) == ("TEAPOT", 418, "No coffee.")
    assert error.message_zh == GatewayProblem.default_message_zh


# -- card authentication --------------------------------------------------------------------------


async def test_card_auth_sends_the_certificate_once_then_its_hash(
    client: GatewayClient, fake: FakeGateway, pki: Pki
) -> None:
    reader = MemoryReader()
    reader.insert(third_gen_card(pki))
    card = SocialSecurityCard.connect(reader)
    first = await client.authenticate_card(card)
    second = await client.authenticate_card(card)
    assert first.card_sn == second.card_sn
    assert first.token != second.token
    assert first.token not in repr(first)
    answers = [json.loads(c.body) for c in fake.calls("POST /v1/card-auth/response")]
    assert "certificate" in answers[0]
    assert "certificate_sm3" in answers[1]


async def test_cert_unknown_retries_once_with_the_whole_certificate(
    client: GatewayClient, fake: FakeGateway, pki: Pki
) -> None:
    reader = MemoryReader()
    reader.insert(third_gen_card(pki))
    card = SocialSecurityCard.connect(reader)
    await client.authenticate_card(card)
    fake.known_certificates.clear()  # a restarted gateway, another replica
    session = await client.authenticate_card(card)
    assert session.generation == 3
    answers = [json.loads(c.body) for c in fake.calls("POST /v1/card-auth/response")]
    assert ["certificate" in a for a in answers] == [True, False, True]
    # a fresh challenge for the retry: the first one is spent
    assert len({a["challenge_id"] for a in answers}) == 3


async def test_cert_unknown_with_the_whole_certificate_is_not_retried(
    client: GatewayClient, fake: FakeGateway, pki: Pki
) -> None:
    reader = MemoryReader()
    reader.insert(third_gen_card(pki))
    fake.script["POST /v1/card-auth/response"] = [problem(422, "CERT_UNKNOWN")]
    with pytest.raises(CertificateUnknown):
        await client.authenticate_card(SocialSecurityCard.connect(reader))
    assert len(fake.calls("POST /v1/card-auth/challenge")) == 1


async def test_legacy_card_authenticates_with_its_cryptogram(
    client: GatewayClient, fake: FakeGateway
) -> None:
    reader = MemoryReader()
    reader.insert(legacy_card())
    session = await client.authenticate_card(SocialSecurityCard.connect(reader))
    assert session.generation == 2
    assert "cryptogram" in json.loads(fake.calls("POST /v1/card-auth/response")[0].body)


# -- synchronous wrapper --------------------------------------------------------------------------


class ThreadRecordingCard(WrappedCard):
    def __init__(self, inner: object) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.threads: set[int] = set()

    def transmit(self, apdu: bytes) -> bytes:
        self.threads.add(threading.get_ident())
        return super().transmit(apdu)


def test_sync_client_runs_card_operations_on_the_callers_thread(
    fake: FakeGateway, pki: Pki
) -> None:
    reader = MemoryReader()
    wrapped = ThreadRecordingCard(third_gen_card(pki))
    reader.insert(wrapped)
    card = SocialSecurityCard.connect(reader)
    with SyncGatewayClient(fake.url, TERMINAL_ID, SECRET) as client:
        session = client.authenticate_card(card)
        wrapped.threads.clear()
        visit = client.outpatient_visit(card, CLAIM.lines, visit_date="2025-06-01")
        assert client.get_settlement(visit.receipt.setl_id or "") == visit.receipt
        assert [r.setl_id for r in client.list_settlements("2025-06-01")] == ["S00000001"]
    assert session.generation == 3
    assert wrapped.threads == {threading.get_ident()}
    assert visit.receipt.medfee_sumamt == 2500


def test_sync_client_raises_the_same_errors(fake: FakeGateway) -> None:
    fake.script["GET /v1/echo"] = [problem(403, "TERMINAL_DISABLED")]
    with SyncGatewayClient(fake.url, TERMINAL_ID, SECRET) as client:
        with pytest.raises(TerminalRejected):
            client.request("GET", "/v1/echo")
        assert client.request("GET", "/v1/echo").body == {"path": "/v1/echo"}
    with pytest.raises(RuntimeError, match="closed"):
        client.request("GET", "/v1/echo")


def test_retry_policy_bounds() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay_s"):
        RetryPolicy(base_delay_s=2.0, max_delay_s=1.0)
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=1.0)
    assert all(0 <= policy.backoff_s(n) <= 1.0 for n in range(1, 20))


def test_answers_without_problem_json() -> None:
    busy = problem_from_response(503, None, retry_after_s=3)
    assert (type(busy), busy.code, busy.retry_after_s) == (GatewayBusy, "HTTP_503", 3)
    teapot = problem_from_response(418, "<html/>")
    assert (type(teapot), teapot.code) == (GatewayProblem, "HTTP_418")
    assert str(teapot) == GatewayProblem.default_message
