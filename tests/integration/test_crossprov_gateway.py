"""Cross-province settlement against the REAL hub simulator and a real `gateway serve
--workers 2`: the happy path for each province (hub's answer stored verbatim, the ledger's
receivable from the insured province), no filing, emergencies count as filed, a referral only
at its target, cancel through the hub, and the hub down: the circuit opens and the terminal
gets a clear 503 with Retry-After, while nothing is recorded as settled."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from crossprov_kit import (
    OPS_TERMINAL,
    PROVINCES,
    SEED,
    Gateway,
    Terminal,
    all_remote_rows,
    card_session,
    claim,
    holder,
    psn_no,
    running_gateway,
    wait_until_settled_down,
)
from hubproc import HubProcess, start_hub

from settlement.crossprov.store import FilingType
from settlement.crossprov.wire import yuan_to_fen
from sscard import demo as sd
from sscard.terminal_auth import demo_institution_code
from terminal_sdk import CardSession, Claim, FeeLine, GatewayClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with start_hub(tmp_path_factory.mktemp("hub"), seed="itest-crossprov-hub") as running:
        yield running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, hub: HubProcess) -> Iterator[Gateway]:
    with running_gateway(
        tmp_path_factory.mktemp("gw"),
        hub.url,
        hub_timeout_ms="1000",
        hub_retries="1",
        hub_breaker_failures="3",
        hub_breaker_open_s="2",
    ) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _receivable_fen(gateway: Gateway, province: str) -> int:
    with gateway.db() as db:
        row = db.execute(
            "SELECT COALESCE(SUM(CASE side WHEN 'debit' THEN amount_fen ELSE -amount_fen END), 0) "
            "FROM ledger_entries WHERE account = ?",
            (f"receivable:province:{province}",),
        ).fetchone()
    return int(row[0])


async def test_each_province_settles_through_the_hub_and_books_a_receivable(
    gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    filings = (FilingType.RESETTLED_RETIREE, FilingType.LONG_TERM_RESIDENT)
    for number, province in enumerate(PROVINCES):
        h = holder(province, filings[number % 2])
        terminal = Terminal(http, gateway, 2 + 2 * number)  # a hospital terminal each
        token = await card_session(terminal, h)
        eligibility = await terminal.request(
            "POST", "/v1/eligibility", {}, {"X-Card-Session": token}
        )
        assert eligibility.status == 200, eligibility
        assert eligibility.body["route"] == "cross_province"
        assert eligibility.body["insuinfo"][0]["insuplc_admdvs"] == province
        assert filings[number % 2].value in eligibility.body["filing_types"]
        before_fen = _receivable_fen(gateway, province)
        answer = await terminal.request(
            "POST",
            "/v1/settlements",
            claim(12_345 + number),
            {"X-Card-Session": token, "Idempotency-Key": f"happy-{province}"},
        )
        assert answer.status == 201, answer
        body = answer.body
        assert body["route"] == "cross_province"
        assert body["insuplc_admdvs"] == province
        assert body["psn_no"] == psn_no(h)
        assert body["medfee_sumamt"] == 12_345 + number
        assert body["medfee_sumamt"] == (
            body["fund_pay_sumamt"] + body["acct_pay"] + body["psn_cash_pay"]
        )
        # Verbatim: what the hub itself holds for the message, field for field.
        stored = hub.query(body["msgid"], insuplc_admdvs=province)
        assert stored["status"] == "settled"
        assert stored["setlinfo"] == body["setlinfo"]
        assert body["fund_pay_sumamt"] == yuan_to_fen(stored["setlinfo"]["fund_pay_sumamt"])
        # Shanghai fronts fund + account share: a receivable from the insured province.
        fronted_fen = body["fund_pay_sumamt"] + body["acct_pay"]
        assert _receivable_fen(gateway, province) - before_fen == fronted_fen
        # The institution's own query finds it.
        found = await terminal.request("GET", f"/v1/settlements/{body['setl_id']}")
        assert found.status == 200, found
        assert found.body["msgid"] == body["msgid"]


async def test_no_filing_is_refused_before_the_hub_and_emergency_counts_as_filed(
    gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    h = holder("330000", None)
    terminal = Terminal(http, gateway, 40)
    token = await card_session(terminal, h)
    refused = await terminal.request(
        "POST",
        "/v1/settlements",
        claim(),
        {"X-Card-Session": token, "Idempotency-Key": "no-filing"},
    )
    assert refused.status == 422, refused
    assert refused.body["code"] == "FILING_REQUIRED"
    assert "resettled_retiree" in refused.body["detail"]
    assert "备案" in refused.body["message_zh"]
    presettle = await terminal.request(
        "POST", "/v1/settlements/pre-settle", claim(), {"X-Card-Session": token}
    )
    assert presettle.body["code"] == "FILING_REQUIRED"
    emergency = await terminal.request(
        "POST",
        "/v1/settlements",
        claim(visit_type="emergency"),
        {"X-Card-Session": token, "Idempotency-Key": "no-filing-emergency"},
    )
    assert emergency.status == 201, emergency
    assert emergency.body["filing_type"] == "emergency"
    # The refused request left nothing behind: the same key now settles an emergency body?
    # No: a key is bound to its body; a fresh key with the refused body is refused again.
    again = await terminal.request(
        "POST",
        "/v1/settlements",
        claim(),
        {"X-Card-Session": token, "Idempotency-Key": "no-filing"},
    )
    assert again.body["code"] == "FILING_REQUIRED"


async def test_a_referral_counts_only_at_its_target_and_a_registered_filing_at_once(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    h = holder("340000", FilingType.REFERRAL)
    elsewhere = Terminal(http, gateway, 60)  # not the referral's target hospital
    token = await card_session(elsewhere, h)
    refused = await elsewhere.request(
        "POST", "/v1/settlements", claim(), {"X-Card-Session": token, "Idempotency-Key": "ref-1"}
    )
    assert refused.body["code"] == "FILING_REQUIRED", refused
    target = Terminal(http, gateway, 0)  # demo hospital 0: the referrals' target
    target_token = await card_session(target, h)
    settled = await target.request(
        "POST",
        "/v1/settlements",
        claim(),
        {"X-Card-Session": target_token, "Idempotency-Key": "ref-2"},
    )
    assert settled.status == 201, settled
    assert settled.body["filing_type"] == "referral"
    # Register a long-term filing for the unfiled person: settles at once after.
    unfiled = holder("510000", None)
    registered = await elsewhere.request(
        "POST",
        "/v1/crossprov/filings",
        {
            "psn_no": psn_no(unfiled),
            "insuplc_admdvs": "510000",
            "filing_type": "long_term_resident",
            "valid_from": "2020-01-01",
        },
    )
    assert registered.status == 201, registered
    listed = await elsewhere.request("GET", f"/v1/crossprov/filings?psn_no={psn_no(unfiled)}")
    assert [f["filing_type"] for f in listed.body["items"]] == ["long_term_resident"]
    token = await card_session(elsewhere, unfiled)
    settled = await elsewhere.request(
        "POST", "/v1/settlements", claim(), {"X-Card-Session": token, "Idempotency-Key": "ref-3"}
    )
    assert settled.status == 201, settled


async def test_cancel_goes_through_the_hub_and_mirrors_the_ledger(
    gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    h = holder("110000", FilingType.LONG_TERM_RESIDENT, 1)
    terminal = Terminal(http, gateway, 80)
    token = await card_session(terminal, h)
    before_fen = _receivable_fen(gateway, "110000")
    settled = await terminal.request(
        "POST", "/v1/settlements", claim(9_900), {"X-Card-Session": token, "Idempotency-Key": "c1"}
    )
    assert settled.status == 201, settled
    setl_id = settled.body["setl_id"]
    cancelled = await terminal.request(
        "POST",
        f"/v1/settlements/{setl_id}/cancel",
        {"reason": "wrong items"},
        {"Idempotency-Key": "c1-cancel"},
    )
    assert cancelled.status == 200, cancelled
    assert cancelled.body["status"] == "cancelled"
    assert hub.query(settled.body["msgid"], insuplc_admdvs="110000")["status"] == "cancelled"
    assert _receivable_fen(gateway, "110000") == before_fen
    replay = await terminal.request(
        "POST",
        f"/v1/settlements/{setl_id}/cancel",
        {"reason": "wrong items"},
        {"Idempotency-Key": "c1-cancel"},
    )
    assert replay.body == cancelled.body
    assert replay.headers.get("Idempotent-Replayed") == "true"
    twice = await terminal.request(
        "POST",
        f"/v1/settlements/{setl_id}/cancel",
        {"reason": "again"},
        {"Idempotency-Key": "c1-cancel-2"},
    )
    assert twice.status == 409, twice


async def test_hub_down_opens_the_circuit_and_the_terminal_gets_a_clear_503(
    gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    h = holder("440000", FilingType.RESETTLED_RETIREE)
    terminal = Terminal(http, gateway, 100)
    token = await card_session(terminal, h)
    ops = Terminal(http, gateway, OPS_TERMINAL)
    hub.set_faults(refuse_connections_s=6)
    deadline = time.monotonic() + 5
    while hub.healthy():  # until the listening socket is closed
        assert time.monotonic() < deadline, "the hub still accepts connections"
        time.sleep(0.05)
    answers = []
    for n in range(12):  # 3 failures open a worker's circuit; two workers
        answers.append(
            await terminal.request(
                "POST",
                "/v1/settlements",
                claim(),
                {"X-Card-Session": token, "Idempotency-Key": f"down-{n}"},
            )
        )
    assert {a.status for a in answers} == {503}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers)
    # A keep-alive connection the hub dropped may have carried the request: that one is
    # unknown (and reversed later); the rest were refused outright, then failed fast.
    assert {a.body["code"] for a in answers} <= {"HUB_UNAVAILABLE", "HUB_OUTCOME_UNKNOWN"}
    assert [a.body["code"] for a in answers[-4:]] == ["HUB_UNAVAILABLE"] * 4
    assert all("circuit" in a.body["detail"] for a in answers[-4:])
    assert "nothing was charged" in answers[-1].body["message"]
    metrics = await terminal.request("GET", "/metrics")
    # The failed calls were counted: refused connections (not_sent) or, on keep-alive
    # connections the stopping hub still held, 5xx / dropped answers (unknown). Settles and the
    # reversal task share the worker's breaker: whichever met the hub first opened it.
    assert 'outcome="not_sent"}' in metrics.body or 'outcome="unknown"}' in metrics.body
    assert "ssc_hub_breaker_state" in metrics.body
    # Back up: once the circuit lets a trial through, the very same request settles.
    deadline = time.monotonic() + 20
    while True:
        answer = await terminal.request(
            "POST",
            "/v1/settlements",
            claim(),
            {"X-Card-Session": token, "Idempotency-Key": "down-0"},
        )
        if answer.status == 201 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert answer.status == 201, answer
    # Whatever may have reached the hub meanwhile is reversed: nothing stays open.
    await wait_until_settled_down(ops, timeout_s=30)
    for row in await all_remote_rows(ops):
        if row["status"] == "reversed":
            assert hub.query(row["msgid"], insuplc_admdvs=row["insuplc_admdvs"])["status"] in (
                "reversed",
                "none",
            )


async def test_serve_embeds_the_hub_simulator_when_no_hub_is_configured(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with running_gateway(tmp_path, "", workers=1) as gateway:
        started = [
            json.loads(line)
            for line in gateway.log().splitlines()
            if "DEMO hub simulator started" in line
        ]
        assert len(started) == 1
        hub_pid = int(started[0]["hub_pid"])
        os.kill(hub_pid, 0)  # alive
        h = holder("320000", FilingType.RESETTLED_RETIREE, 2)
        terminal = Terminal(http, gateway, 120)
        token = await card_session(terminal, h)
        answer = await terminal.request(
            "POST", "/v1/settlements", claim(), {"X-Card-Session": token, "Idempotency-Key": "e1"}
        )
        assert answer.status == 201, answer
        assert answer.body["route"] == "cross_province"
        gateway.stop()  # SIGTERM: the supervisor stops its workers, then the simulator
        assert gateway.process is not None
        assert gateway.process.returncode == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(hub_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the embedded hub simulator outlived the gateway")


async def test_the_sdk_retries_an_unknown_outcome_with_the_same_key_and_it_settles_afresh(
    gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession
) -> None:
    h = holder("510000", FilingType.RESETTLED_RETIREE)
    terminal = Terminal(http, gateway, 140)
    token = await card_session(terminal, h)
    session = CardSession(token, sd.demo_card(SEED, 2 * h).card_sn, 3, 300, terminal.terminal_id)
    hub.set_faults(drop_after_commit_ratio=1.0)  # every answer lost: the outcome is unknown
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        hub.clear_faults()  # the hub answers again by the SDK's retry

    claim_body = Claim("outpatient", claim()["visit_date"], (FeeLine("DEMO-A-002", 1, 4_321),))
    async with GatewayClient(
        gateway.url, terminal.terminal_id, terminal.secret, sleep=sleep
    ) as sdk:
        receipt = await sdk.settle(session, claim_body, idempotency_key="sdk-unknown-1")
    assert waits == [1.0]  # one 503 HUB_OUTCOME_UNKNOWN, retried after its Retry-After
    assert receipt.medfee_sumamt == 4_321
    ops = Terminal(http, gateway, OPS_TERMINAL)
    await wait_until_settled_down(ops, timeout_s=30)
    institution = terminal_institution(140)
    statuses = sorted(
        r["status"] for r in await all_remote_rows(ops) if r["fixmedins_code"] == institution
    )
    # The first message was reversed at the hub; the retry, same key, settled under a new one.
    assert statuses == ["confirmed", "reversed"]


def terminal_institution(n: int) -> str:
    return demo_institution_code(n // 2)
