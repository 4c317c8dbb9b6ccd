"""The hub client and its circuit breaker, in process, against a scripted fake transport: the
three outcomes, bounded retries that reuse the msgid, and when the breaker opens, lets a
trial through and closes again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from gateway.settings import SettingsError, load_settings
from settlement.crossprov import wire
from settlement.crossprov.breaker import Breaker, BreakerState
from settlement.crossprov.calls import HubClient, NoAnswer, NotSent

INSTITUTION = "H31000000001"
NOW_S = 1_780_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _answer(envelope: Mapping[str, Any], *, refused: bool = False) -> dict[str, Any]:
    request = wire.parse_request(envelope)
    at = dt.datetime.fromtimestamp(NOW_S, dt.UTC)
    if refused:
        response = wire.HubResponse.refusal(
            request, wire.HubErrCode.PERSON_NOT_FOUND, "no such person", received=at, responded=at
        )
    else:
        response = wire.HubResponse.success(request, {"ok": True}, received=at, responded=at)
    return response.to_json()


class ScriptedTransport:
    """Plays one step per attempt: "ok", "refused", "drop", "timeout", "5xx", "refuse_conn",
    "garbage". Records every envelope it was given."""

    def __init__(self, *steps: str) -> None:
        self.steps = list(steps)
        self.sent: list[Mapping[str, Any]] = []

    async def post(self, infno: str, envelope: Mapping[str, Any], timeout_s: float) -> Any:
        assert infno == envelope["infno"]
        assert timeout_s > 0
        step = self.steps.pop(0)
        if step == "refuse_conn":
            raise NotSent("connection refused")
        self.sent.append(envelope)
        if step == "drop":
            raise NoAnswer("server disconnected", hub_down=False)
        if step in ("timeout", "5xx"):
            raise NoAnswer(step, hub_down=True)
        if step == "garbage":
            return {"infcode": 7}
        return _answer(envelope, refused=step == "refused")


async def _no_sleep(_seconds: float) -> None:
    return None


def _client(transport: ScriptedTransport, *, retries: int = 2, threshold: int = 3) -> HubClient:
    return HubClient(
        transport,
        Breaker(failure_threshold=threshold, open_s=10, clock=Clock()),
        timeout_ms=500,
        retries=retries,
        clock=lambda: NOW_S,
        sleep=_no_sleep,
    )


async def _settle(client: HubClient, msgid: str = "") -> Any:
    return await client.call(
        infno=wire.INFNO_SETTLE_OUTPATIENT,
        msgid=msgid or client.msgids.next(INSTITUTION),
        insuplc_admdvs="320000",
        fixmedins_code=INSTITUTION,
        payload={"psn_no": "320000000000001"},
    )


@pytest.mark.parametrize(
    ("steps", "outcome", "attempts"),
    [
        (("ok",), "ok", 1),
        (("refused",), "refused", 1),
        (("drop", "ok"), "ok", 2),
        (("timeout", "5xx", "ok"), "ok", 3),
        (("drop", "drop", "drop"), "unknown", 3),
        (("refuse_conn", "refuse_conn", "refuse_conn"), "not_sent", 3),
        (("drop", "refuse_conn", "refuse_conn"), "unknown", 3),
        (("refuse_conn", "refused"), "refused", 2),
        (("garbage", "garbage", "garbage"), "unknown", 3),
    ],
)
async def test_three_outcomes_after_bounded_retries(
    steps: tuple[str, ...], outcome: str, attempts: int
) -> None:
    transport = ScriptedTransport(*steps)
    result = await _settle(_client(transport, threshold=100))
    assert (result.outcome, result.attempts) == (outcome, attempts)
    assert transport.steps == []  # no attempt beyond 1 + retries


async def test_every_retry_reuses_the_same_msgid_and_body() -> None:
    transport = ScriptedTransport("drop", "timeout", "ok")
    result = await _settle(_client(transport, threshold=100), "H31000000001202611270101010042")
    assert result.outcome == "ok"
    assert [e["msgid"] for e in transport.sent] == ["H31000000001202611270101010042"] * 3
    assert transport.sent[0] == transport.sent[1] == transport.sent[2]
    assert result.answer is not None
    assert result.answer.inf_refmsgid == "H31000000001202611270101010042"


async def test_an_answer_to_another_message_is_not_taken_as_success() -> None:
    class Mismatched(ScriptedTransport):
        async def post(self, infno: str, envelope: Mapping[str, Any], timeout_s: float) -> Any:
            answer = await super().post(infno, envelope, timeout_s)
            return {**answer, "inf_refmsgid": "H31000000001202611270101019999"}

    result = await _settle(_client(Mismatched("ok", "ok", "ok"), threshold=100))
    assert result.outcome == "unknown"


async def test_breaker_opens_after_consecutive_connection_failures_and_fails_fast() -> None:
    transport = ScriptedTransport(*["refuse_conn"] * 3)
    client = _client(transport, retries=2, threshold=3)
    first = await _settle(client)
    assert first.outcome == "not_sent"
    assert _state(client.breaker) is BreakerState.OPEN
    fast = await _settle(client)  # nothing reaches the transport while open
    assert (fast.outcome, fast.error, fast.attempts) == ("not_sent", "circuit open", 1)
    assert client.breaker.retry_after_s() == 10


async def test_dropped_answers_do_not_open_the_breaker() -> None:
    transport = ScriptedTransport(*["drop"] * 9)
    client = _client(transport, retries=2, threshold=3)
    for _ in range(3):
        assert (await _settle(client)).outcome == "unknown"
    assert _state(client.breaker) is BreakerState.CLOSED


def _state(breaker: Breaker) -> BreakerState:
    return breaker.state  # a call, so the type checker does not narrow across assertions


def test_breaker_half_open_lets_one_trial_through_then_closes_or_reopens() -> None:
    clock = Clock()
    breaker = Breaker(failure_threshold=2, open_s=5, clock=clock)
    breaker.record_failure()
    assert _state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert _state(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    clock.now_s = 5.0
    assert _state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()  # the one trial
    assert not breaker.allow()  # no second while it runs
    breaker.record_failure()  # the trial failed: open again at once, for a full period
    assert _state(breaker) is BreakerState.OPEN
    assert breaker.retry_after_s() == 5
    clock.now_s = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert _state(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_msgids_are_wire_msgids_settles_even_others_odd() -> None:
    client = _client(ScriptedTransport())
    settles = [client.msgids.next(INSTITUTION) for _ in range(50)]
    others = [client.msgids.next(INSTITUTION, odd=True) for _ in range(50)]
    assert all(wire.is_msgid(m) and m.startswith(INSTITUTION) for m in settles + others)
    assert all(int(m[-4:]) % 2 == 0 for m in settles)
    assert all(int(m[-4:]) % 2 == 1 for m in others)
    assert len(set(settles + others)) == 100
    assert settles[0][12:26] == dt.datetime.fromtimestamp(NOW_S, wire.BEIJING).strftime(
        "%Y%m%d%H%M%S"
    )


def test_hub_settings_are_checked_at_start_up() -> None:
    settings = load_settings(environ={})
    assert (settings.hub_url, settings.hub_timeout_ms, settings.hub_retries) == ("", 3000, 2)
    with pytest.raises(SettingsError, match="hub_url must be an http"):
        load_settings(environ={"GATEWAY_HUB_URL": "ftp://hub"})
    with pytest.raises(SettingsError, match="hub_reversal_backoff_max_s"):
        load_settings(
            environ={
                "GATEWAY_HUB_REVERSAL_BACKOFF_S": "10",
                "GATEWAY_HUB_REVERSAL_BACKOFF_MAX_S": "5",
            }
        )
    with pytest.raises(SettingsError, match="GATEWAY_HUB_RETRIES"):
        load_settings(environ={"GATEWAY_HUB_RETRIES": "9"})
