"""Requests and money in the suite's visits, against a scripted session: every request signed
over the bytes sent; expected refusals counted apart as successes; a settle retried with its
own key until a final answer and booked once; what never got one resent at the end; a replay
checked against the first answer."""

from __future__ import annotations

import doctest
import json
import random
from typing import Any

import pytest
from locust_testkit import SEED, FakeSession, Sent, settlement

from loadtest.locust import _books, _mix, _run, _shapes, _visits, _world
from loadtest.locust import _visits as visits
from loadtest.locust._http import Answer, SignedClient
from loadtest.locust._run import MoneyCall
from loadtest.locust._world import institution_terminal

HOSPITAL = institution_terminal(SEED, 9)  # level 3
PHARMACY = institution_terminal(SEED, 400)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(visits.time, "sleep", lambda s: None)


@pytest.mark.parametrize("module", [_books, _mix, _shapes, _visits, _world])
def test_the_docstring_examples_hold(module: Any) -> None:
    assert doctest.testmod(module).failed == 0


def _visitor(session: FakeSession, terminal: _world.Terminal = HOSPITAL) -> visits.Visitor:
    run = _run.begin(SEED)
    return visits.Visitor(SignedClient(session, terminal), run, random.Random(1), {})


class Gateway:
    """A scripted gateway: card authentication always works; settle answers come from a
    list, one per attempt (an exhausted list answers 500)."""

    def __init__(self, settle_answers: list[Any] | None = None) -> None:
        self.settle_answers = list(settle_answers or [])
        self.settles: list[Sent] = []

    def __call__(self, sent: Sent) -> Any:
        if sent.url == visits.CHALLENGE:
            size = 16 if sent.json["generation"] == 3 else 8
            return 200, {"challenge": "00" * size, "challenge_id": "c1", "expires_in_s": 30}
        if sent.url == visits.RESPONSE:
            return 200, {"card_session": "cs1.session"}
        if sent.url in (visits.ELIGIBILITY, visits.PRE_SETTLE):
            return 200, {}
        self.settles.append(sent)
        return self.settle_answers.pop(0) if self.settle_answers else (500, {"code": "INTERNAL"})


# -- signed requests -----------------------------------------------------------------------------


def test_every_request_is_signed_over_the_exact_bytes_sent() -> None:
    gateway = Gateway([(201, settlement("S1"))])
    session = FakeSession(gateway)
    visits.outpatient(_visitor(session))
    assert [s.url for s in session.sent] == [
        visits.CHALLENGE,
        visits.RESPONSE,
        visits.ELIGIBILITY,
        visits.PRE_SETTLE,
        visits.SETTLE,
    ]
    assert all(s.signature_ok() for s in session.sent)
    assert all(s.outcome == "success" for s in session.sent)
    settle = session.sent[-1]
    assert settle.headers["X-Card-Session"] == "cs1.session"
    assert settle.headers["Idempotency-Key"].startswith("lt-")
    assert settle.json["visit_type"] == "outpatient"
    assert settle.json["lines"][0]["code"] == "DEMO-A-002"


def test_a_tampered_body_would_not_verify() -> None:
    session = FakeSession(Gateway([(201, settlement("S1"))]))
    visits.outpatient(_visitor(session))
    sent = session.sent[-1]
    sent.body = sent.body.replace(b"outpatient", b"emergency")
    assert not sent.signature_ok()


@pytest.mark.parametrize(
    ("reply", "refusal", "outcome"),
    [
        ((200, {"ok": 1}), None, "success"),
        ((422, {"code": "INVALID_VISIT"}), None, "HTTP 422 INVALID_VISIT"),
        ((0, None), None, "no answer: ConnectionRefusedError"),
        ((502, b"<html>"), None, "HTTP 502 NOT_JSON"),
        ((403, {"code": "CARD_LOST"}), "CARD_LOST", "success"),
        ((200, {"card_session": "x"}), "CARD_LOST", "expected CARD_LOST, got HTTP 200"),
        (
            (403, {"code": "CARD_SUPERSEDED"}),
            "CARD_LOST",
            "expected CARD_LOST, got HTTP 403 CARD_SUPERSEDED",
        ),
    ],
)
def test_requests_are_judged_expected_refusals_included(
    reply: Any, refusal: str | None, outcome: str
) -> None:
    session = FakeSession(lambda sent: reply)
    SignedClient(session, HOSPITAL).call("POST", "/v1/echo", {}, name="x", refusal=refusal)
    assert session.sent[0].outcome == outcome


def test_a_challenge_the_card_cannot_answer_is_a_failure_not_a_crash() -> None:
    session = FakeSession(lambda sent: (200, {"challenge": "00" * 16, "challenge_id": "c1"}))
    v = _visitor(session)
    card = v.run.wallet.card(v.run.patients.legacy[0])
    assert visits.read_card(v, card) is None
    assert session.sent[0].outcome == "HTTP 200: a challenge of 16 bytes for a generation-2 card"
    assert len(session.sent) == 1


def test_a_check_turns_a_2xx_into_a_failure() -> None:
    session = FakeSession(lambda sent: (201, {"setl_id": "S1"}))
    SignedClient(session, HOSPITAL).call(
        "POST", "/x", {}, name="x", ok=(201,), check=lambda a: "not a settlement"
    )
    assert session.sent[0].outcome == "HTTP 201: not a settlement"


def test_what_may_be_sent_again() -> None:
    assert Answer(0, transport="timeout").retryable
    assert Answer(503, {"code": "HUB_OUTCOME_UNKNOWN"}).retryable
    assert Answer(409, {"code": "IDEMPOTENCY_KEY_IN_USE"}).retryable
    assert Answer(429, {"code": "RATE_LIMITED"}, {"Retry-After": "2"}).retry_after_s == 2.0
    assert not Answer(422, {"code": "INVALID_VISIT"}).retryable
    assert not Answer(409, {"code": "SETTLEMENT_ALREADY_CANCELLED"}).retryable


# -- refusals, replays ---------------------------------------------------------------------------


def test_a_lost_or_superseded_card_is_an_expected_refusal_named_apart() -> None:
    def gateway(sent: Sent) -> Any:
        if sent.url == visits.CHALLENGE:
            return 200, {
                "challenge": "00" * (16 if sent.json["generation"] == 3 else 8),
                "challenge_id": "c1",
            }
        return 403, {"code": "CARD_SUPERSEDED" if sent.json.get("cryptogram") else "CARD_LOST"}

    session = FakeSession(gateway)
    v = _visitor(session)
    for _ in range(30):
        visits.card_refused(v)
    names = {s.name for s in session.sent if s.url == visits.RESPONSE}
    assert names <= {
        "/v1/card-auth/response [expect CARD_LOST]",
        "/v1/card-auth/response [expect CARD_SUPERSEDED]",
    }
    assert len(names) == 2
    wrong = [s for s in session.sent if s.outcome != "success"]
    # A lost legacy card is answered CARD_SUPERSEDED by this script: those are failures.
    assert all(s.json.get("cryptogram") and "expect CARD_LOST" in s.name for s in wrong)
    assert not v.run.pending


def test_a_replay_must_return_the_same_settlement_marked_replayed() -> None:
    first = (201, settlement("S1"))
    replay = (201, settlement("S1"), {"Idempotent-Replayed": "true"})
    session = FakeSession(Gateway([first, replay]))
    v = _visitor(session)
    visits.settle_replayed(v)
    settles = session.named("/v1/settlements")
    replays = session.named("/v1/settlements [replay]")
    assert len(settles) == len(replays) == 1
    assert replays[0].headers["Idempotency-Key"] == settles[0].headers["Idempotency-Key"]
    assert replays[0].body == settles[0].body
    assert replays[0].outcome == "success"
    assert list(v.run.tally.settled) == ["S1"]


@pytest.mark.parametrize(
    ("replay", "outcome", "tallied"),
    [
        ((201, settlement("S1")), "HTTP 201: no Idempotent-Replayed: true", ["S1"]),
        (
            (201, settlement("S2"), {"Idempotent-Replayed": "true"}),
            "HTTP 201: another settlement than the first answer",
            ["S1"],  # S2 stays out of the tally: the books will find it booked, unseen
        ),
    ],
)
def test_a_replay_that_is_not_one_is_a_failure(
    replay: Any, outcome: str, tallied: list[str]
) -> None:
    session = FakeSession(Gateway([(201, settlement("S1")), replay]))
    v = _visitor(session)
    visits.settle_replayed(v)
    assert session.named("/v1/settlements [replay]")[0].outcome == outcome
    assert list(v.run.tally.settled) == tallied


# -- money: retried with the same key, booked once, resent at the end ----------------------------


def test_a_settle_without_an_answer_is_retried_with_its_key_and_booked_once() -> None:
    gateway = Gateway([(0, None), (503, {"code": "HUB_OUTCOME_UNKNOWN"}), (201, settlement("S1"))])
    v = _visitor(FakeSession(gateway))
    visits.outpatient(v)
    assert len({s.headers["Idempotency-Key"] for s in gateway.settles}) == 1
    assert len({s.body for s in gateway.settles}) == 1
    assert [s.outcome for s in gateway.settles][-1] == "success"
    assert list(v.run.tally.settled) == ["S1"]
    assert v.run.tally.touched == {HOSPITAL.institution_code}
    assert not v.run.pending


def test_a_refused_settle_moves_no_money_and_is_not_retried() -> None:
    gateway = Gateway([(422, {"code": "INVALID_VISIT"})])
    v = _visitor(FakeSession(gateway))
    visits.outpatient(v)
    assert len(gateway.settles) == 1
    assert not v.run.tally.settled
    assert not v.run.pending


def test_a_settle_that_never_got_an_answer_stays_written_down_then_is_resent() -> None:
    gateway = Gateway([(0, None)] * visits.MONEY_ATTEMPTS)
    session = FakeSession(gateway)
    v = _visitor(session)
    visits.outpatient(v)
    assert len(v.run.pending) == 1
    assert not v.run.tally.settled
    (call,) = v.run.pending.values()
    gateway.settle_answers = [(201, settlement("S1"), {"Idempotent-Replayed": "true"})]
    assert visits.resolve_pending(v.run, lambda terminal: session) == 0
    resent = gateway.settles[-1]
    assert resent.name == "/v1/settlements [resolve]"
    assert resent.headers["Idempotency-Key"] == call.key
    assert resent.headers["X-Card-Session"] == "cs1.session"  # the card was read again
    assert list(v.run.tally.settled) == ["S1"]
    assert v.run.tally.in_doubt == 0
    assert not v.run.pending


def test_what_cannot_be_resolved_is_counted_in_doubt() -> None:
    gateway = Gateway([(0, None)] * (2 * visits.MONEY_ATTEMPTS))
    session = FakeSession(gateway)
    v = _visitor(session)
    visits.outpatient(v)
    assert visits.resolve_pending(v.run, lambda terminal: session) == 1
    assert v.run.tally.in_doubt == 1
    assert not v.run.pending


def test_a_cancel_retried_after_an_unknown_answer_counts_already_cancelled_as_done() -> None:
    answers = [(0, None), (409, {"code": "SETTLEMENT_ALREADY_CANCELLED"})]
    session = FakeSession(lambda sent: answers.pop(0))
    v = _visitor(session)
    call = MoneyCall(
        "cancel", HOSPITAL, "/v1/settlements/S1/cancel", {"reason": "r"}, "k1", "c", setl_id="S1"
    )
    visits.send_money(v, call, None)
    assert v.run.tally.cancelled == {"S1"}
    assert not v.run.pending


def test_a_first_cancel_refused_already_cancelled_is_a_failure_not_a_cancel() -> None:
    session = FakeSession(lambda sent: (409, {"code": "SETTLEMENT_ALREADY_CANCELLED"}))
    v = _visitor(session)
    call = MoneyCall(
        "cancel", HOSPITAL, "/v1/settlements/S1/cancel", {"reason": "r"}, "k1", "c", setl_id="S1"
    )
    visits.send_money(v, call, None)
    assert v.run.tally.cancelled == set()
    assert session.sent[0].outcome == "HTTP 409 SETTLEMENT_ALREADY_CANCELLED"


def test_cancel_takes_back_one_of_this_terminals_own_settlements() -> None:
    def gateway(sent: Sent) -> Any:
        if sent.url.endswith("/cancel"):
            return 200, settlement(sent.url.split("/")[3], status="cancelled")
        return (
            Gateway([(201, settlement("S7"))])(sent)
            if sent.url == visits.SETTLE
            else Gateway()(sent)
        )

    session = FakeSession(gateway)
    v = _visitor(session)
    visits.cancel(v)  # nothing to cancel yet: a visit first, then its cancel
    cancels = [s for s in session.sent if s.url.endswith("/cancel")]
    assert [s.url for s in cancels] == ["/v1/settlements/S7/cancel"]
    assert cancels[0].name == "/v1/settlements/{setl_id}/cancel"
    assert v.run.tally.cancelled == {"S7"}
    assert not v.recent


def test_a_pharmacy_settles_purchases_named_apart() -> None:
    session = FakeSession(Gateway([(201, settlement("S1", visit_type="pharmacy"))]))
    v = _visitor(session, PHARMACY)
    visits.legacy_card(v)
    assert session.sent[-1].name == "/v1/settlements [pharmacy, legacy]"
    assert json.loads(session.sent[-1].body)["visit_type"] == "pharmacy"
    assert session.sent[1].name == "/v1/card-auth/response [legacy]"
    assert "cryptogram" in session.sent[1].json


def test_a_cross_province_visit_asks_no_estimate() -> None:
    hub = settlement("SETL1", route="cross_province")
    session = FakeSession(Gateway([(201, hub)]))
    v = _visitor(session)
    visits.cross_province(v)
    assert visits.PRE_SETTLE not in [s.url for s in session.sent]
    assert session.sent[-1].name == "/v1/settlements [cross-province]"
    assert v.run.tally.settled["SETL1"].route == "remote"
