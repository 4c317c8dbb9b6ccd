"""The cross-province branch of the settlement API, in process, with an in-memory hub behind
the hub client's transport seam: a person insured in Jiangsu settles through the hub (intent
first, hub result stored verbatim), a refusal is a 4xx that leaves nothing, an unknown outcome
is a 503 that releases the key and queues a reversal, a crash mid-call is recovered by the
reversal task, and a replayed request cannot settle twice. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web
from card_auth_testkit import NEW_ACTIVE
from crossprov_testkit import PSN_NO, load_jiangsu_world
from gateway_testkit import (
    HOSPITAL,
    OTHER_TERMINAL,
    SECRETS,
    Client,
    FakeClock,
    Signer,
    assert_problem,
)
from prometheus_client import REGISTRY
from settlement_api_testkit import TODAY, Till, outpatient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway.crossprov.hub import HUB, run_reversals_once
from gateway.state import CLOCK, DATABASE
from settlement.crossprov import wire
from settlement.crossprov.calls import NoAnswer
from settlement.crossprov.store import (
    HubReversalRow,
    RemoteSettlementRow,
    RemoteStatus,
)
from settlement.ledger import account_balance_fen
from settlement.store import IdempotencyKey, IdempotencyStatus

MEDFEE_FEN = 2_500 + 6_000 + 1_000  # settlement_api_testkit.OUTPATIENT_LINES


class FakeHub:
    """A hub in memory: settles at 60 % fund / 10 % account, idempotent by msgid, 2601 by
    omsgid (with tombstones). ``mode`` ok | refuse | drop (commit, then no answer)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.mode = "ok"
        self.messages: dict[str, dict[str, Any]] = {}
        self.status: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.now_s, dt.UTC)

    async def post(self, infno: str, envelope: Mapping[str, Any], timeout_s: float) -> Any:
        request = wire.parse_request(envelope)
        self.calls.append((infno, request.msgid))
        now = self._now()
        if infno == wire.INFNO_REVERSAL:
            omsgid = request.input["omsgid"]
            undone = self.status.get(omsgid) == "settled"
            self.status[omsgid] = "reversed"
            output = {"reversed": undone, "status": "reversed"}
            return wire.HubResponse.success(request, output, received=now, responded=now).to_json()
        if infno == wire.INFNO_PERSON_INFO:
            output = {
                "baseinfo": {"psn_no": request.input["psn_no"], "age": 70},
                "insuinfo": [
                    {
                        "insuplc_admdvs": "320000",
                        "insutype": "310",
                        "psn_type": "21",
                        "balc": "88.00",
                    }
                ],
            }
            return wire.HubResponse.success(request, output, received=now, responded=now).to_json()
        assert infno == wire.INFNO_SETTLE_OUTPATIENT
        if self.mode == "refuse":
            return wire.HubResponse.refusal(
                request,
                wire.HubErrCode.UNKNOWN_ITEM,
                "item DEMO-C-001 is not covered",
                received=now,
                responded=now,
            ).to_json()
        if request.msgid not in self.messages:
            if self.status.get(request.msgid) == "reversed":
                return wire.HubResponse.refusal(
                    request,
                    wire.HubErrCode.MSG_REVERSED,
                    "reversed",
                    received=now,
                    responded=now,
                ).to_json()
            total = sum(
                line["qty"] * wire.yuan_to_fen(line["pric"]) for line in request.input["lines"]
            )
            fund, acct = total * 6 // 10, total // 10
            amounts = dict.fromkeys(wire.SETLINFO_AMOUNT_FIELDS, "0.00")
            amounts.update(
                medfee_sumamt=wire.fen_to_yuan(total),
                hifp_pay=wire.fen_to_yuan(fund),
                fund_pay_sumamt=wire.fen_to_yuan(fund),
                acct_pay=wire.fen_to_yuan(acct),
                psn_cash_pay=wire.fen_to_yuan(total - fund - acct),
                psn_part_amt=wire.fen_to_yuan(total - fund),
            )
            setlinfo = {
                "setl_id": f"S32{len(self.messages):010d}",
                "mdtrt_id": request.input["mdtrt_id"],
                "psn_no": request.input["psn_no"],
                "setl_time": wire.format_inf_time(now),
                **amounts,
            }
            self.messages[request.msgid] = wire.HubResponse.success(
                request, {"setlinfo": setlinfo, "setldetail": []}, received=now, responded=now
            ).to_json()
            self.status[request.msgid] = "settled"
        if self.mode == "drop":
            raise NoAnswer("server disconnected", hub_down=False)
        return self.messages[request.msgid]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # A hub URL makes the client exist; its transport is replaced by the FakeHub below.
    return {
        "demo_world": "on",
        "hub_url": "http://127.0.0.1:9",
        "hub_retries": 1,
        "hub_reversal_poll_s": 600,  # the tests run the reversal rounds themselves
        "reconciliation_ops_institutions": HOSPITAL,
    }


@pytest.fixture
def world(engine: Engine) -> Engine:
    return load_jiangsu_world(engine)


@pytest.fixture
def hub(client: Client, clock: FakeClock) -> FakeHub:
    fake = FakeHub(clock)
    context = client.app[HUB]
    assert context.client is not None
    context.client.transport = fake
    # The tests run the reversal rounds themselves (_reversal_round). An unknown outcome wakes
    # the app's background reversal task at once, which would race with those rounds and the
    # assertions between them (seen flaking on a loaded machine), so that wake-up is muted.
    context.wake = _DeafEvent()
    return fake


class _DeafEvent(asyncio.Event):
    def set(self) -> None:
        pass


@pytest.fixture
async def till(signer: Signer, world: Engine, hub: FakeHub) -> Till:
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)
    return till


def _rows(engine: Engine) -> list[RemoteSettlementRow]:
    with Session(engine) as session:
        return list(session.scalars(select(RemoteSettlementRow).order_by(RemoteSettlementRow.id)))


async def _reversal_round(app: web.Application) -> int:
    return await run_reversals_once(app[HUB], app[DATABASE], app[CLOCK])


async def test_settles_through_the_hub_and_replays_its_first_answer(
    till: Till, world: Engine, hub: FakeHub
) -> None:
    response = await till.settle(outpatient(), key="k-ok")
    assert response.status == 201, await response.text()
    body = await response.json()
    assert (body["route"], body["insuplc_admdvs"], body["psn_no"]) == (
        "cross_province",
        "320000",
        PSN_NO,
    )
    assert body["filing_type"] == "resettled_retiree"
    assert body["medfee_sumamt"] == MEDFEE_FEN
    assert (body["fund_pay_sumamt"], body["acct_pay"]) == (5_700, 950)
    assert body["setlinfo"] == hub.messages[body["msgid"]]["output"]["setlinfo"]
    (row,) = _rows(world)
    assert row.status is RemoteStatus.CONFIRMED
    with Session(world) as session:
        assert account_balance_fen(session, "receivable:province:320000") == 5_700 + 950
    replay = await till.settle(outpatient(), key="k-ok")
    assert replay.status == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == body
    assert [infno for infno, _ in hub.calls] == ["2207"]  # the replay never reached the hub
    eligibility = await till.eligibility()
    assert (eligibility["route"], eligibility["retired"]) == ("cross_province", True)
    assert eligibility["insuinfo"][0]["balc"] == 8_800
    assert eligibility["filing_types"] == ["resettled_retiree"]


async def test_a_refusal_is_a_4xx_with_the_hubs_reason_and_leaves_the_key_free(
    till: Till, world: Engine, hub: FakeHub
) -> None:
    hub.mode = "refuse"
    body = await assert_problem(await till.settle(outpatient(), key="k-ref"), 422, "HUB_REFUSED")
    assert "DEMO-C-001 is not covered" in body["detail"]
    (row,) = _rows(world)
    assert (row.status, row.err_code) == (RemoteStatus.FAILED, "UNKNOWN_ITEM")
    with Session(world) as session:
        assert session.scalar(select(IdempotencyKey)) is None
        assert account_balance_fen(session, "receivable:province:320000") == 0
    hub.mode = "ok"
    assert (await till.settle(outpatient(), key="k-ref")).status == 201


async def test_unknown_is_503_then_reversed_and_the_same_key_settles_afresh(
    till: Till, world: Engine, hub: FakeHub, client: Client
) -> None:
    hub.mode = "drop"  # the hub commits, the answer never arrives (twice: one retry)
    response = await till.settle(outpatient(), key="k-unk")
    body = await assert_problem(response, 503, "HUB_OUTCOME_UNKNOWN")
    assert response.headers["Retry-After"] == "1"
    assert "nothing was charged" in body["message"]
    (row,) = _rows(world)
    assert row.status is RemoteStatus.UNKNOWN
    first_msgid = row.msgid
    assert [m for _, m in hub.calls] == [first_msgid, first_msgid]  # the retry reused it
    with Session(world) as session:
        assert session.scalar(select(IdempotencyKey)) is None  # released
        assert account_balance_fen(session, "receivable:province:320000") == 0
    assert await _reversal_round(client.app) == 1
    assert hub.status[first_msgid] == "reversed"
    with Session(world) as session:
        job = session.scalar(select(HubReversalRow))
        assert job is not None
        assert job.hub_reversed is True  # it had committed: the hub undid it
    hub.mode = "ok"
    again = await till.settle(outpatient(), key="k-unk")
    assert again.status == 201, await again.text()
    assert (await again.json())["msgid"] != first_msgid
    assert [r.status for r in _rows(world)] == [RemoteStatus.REVERSED, RemoteStatus.CONFIRMED]


async def test_a_crash_mid_call_is_found_stale_reversed_and_its_key_freed(
    till: Till, world: Engine, hub: FakeHub, client: Client, clock: FakeClock
) -> None:
    class Crash(Exception):
        pass

    class CrashingTransport:
        async def post(self, infno: str, envelope: Mapping[str, Any], timeout_s: float) -> Any:
            raise Crash  # as if the worker died right after committing the intent

    context = client.app[HUB]
    assert context.client is not None
    context.client.transport = CrashingTransport()
    response = await till.settle(outpatient(), key="k-crash")
    assert response.status == 500
    (row,) = _rows(world)
    assert row.status is RemoteStatus.INTENT
    with Session(world) as session:
        key = session.scalar(select(IdempotencyKey))
        assert key is not None
        assert key.status is IdempotencyStatus.IN_PROGRESS
    # Meanwhile the terminal's retry is told to wait, not settled twice.
    await assert_problem(
        await till.settle(outpatient(), key="k-crash"), 409, "IDEMPOTENCY_KEY_IN_USE"
    )
    await _reversal_round(client.app)  # too young to judge
    assert _rows(world)[0].status is RemoteStatus.INTENT
    context.client.transport = hub
    clock.now_s += context.stale_after.total_seconds() + 1
    assert await _reversal_round(client.app) == 1
    assert _rows(world)[0].status is RemoteStatus.REVERSED
    assert hub.status[row.msgid] == "reversed"  # a tombstone: it can never commit late
    assert (await till.settle(outpatient(), key="k-crash")).status == 201


async def test_a_replayed_request_cannot_settle_twice_through_the_hub(
    till: Till, world: Engine, hub: FakeHub
) -> None:
    hub.mode = "drop"
    assert till.card_session is not None
    headers = {"X-Card-Session": till.card_session, "Idempotency-Key": "k-replay"}
    first = await till.signer.post(
        "/v1/settlements", outpatient(), extra_headers=headers, nonce="n" * 24
    )
    await assert_problem(first, 503, "HUB_OUTCOME_UNKNOWN")
    hub.mode = "ok"
    # The key was released; the very same signed request (same nonce) is still refused.
    replayed = await till.signer.post(
        "/v1/settlements", outpatient(), extra_headers=headers, nonce="n" * 24
    )
    await assert_problem(replayed, 401, "REQUEST_REPLAYED")
    assert [r.status for r in _rows(world)] == [RemoteStatus.UNKNOWN]


async def test_ops_views_are_for_ops_terminals_and_count_hub_calls(
    till: Till, world: Engine, hub: FakeHub, client: Client, clock: FakeClock
) -> None:
    before = (
        REGISTRY.get_sample_value("ssc_hub_calls_total", {"infno": "2207", "outcome": "ok"}) or 0.0
    )
    settled = await till.settled(outpatient())
    after = REGISTRY.get_sample_value("ssc_hub_calls_total", {"infno": "2207", "outcome": "ok"})
    assert after == before + 1
    pharmacy = Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL])
    for path in ("/v1/crossprov/reversals", f"/v1/crossprov/settlements?date={TODAY}&scope=all"):
        response = await pharmacy.client.get(path, headers=pharmacy.headers("GET", path, b""))
        await assert_problem(response, 403, "RECONCILIATION_FORBIDDEN")
    # The institution's own listing needs no ops rights and shows every status.
    path = f"/v1/crossprov/settlements?date={TODAY}"
    own = await till.get(path)
    assert own.status == 200, await own.text()
    items = (await own.json())["items"]
    assert [(i["msgid"], i["status"]) for i in items] == [(settled["msgid"], "confirmed")]
    queue = await till.get("/v1/crossprov/reversals?status=pending")
    assert (await queue.json())["depth"] == 0


async def test_the_route_is_decided_before_any_transaction(
    till: Till, app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The card session carries the route: a remote settle runs one read (its plan) and the
    # intent and outcome writes, never a local unit that would roll back (the old way: a
    # wasted transaction, an exception as control flow and a nonce un-claimed).
    database = app[DATABASE]
    units: list[str] = []
    write, read = database.write, database.read

    def _name(unit: Any) -> str:
        return getattr(unit, "func", unit).__name__

    async def spy_write(unit: Any, **options: Any) -> Any:
        units.append("write " + _name(unit))
        return await write(unit, **options)

    async def spy_read(unit: Any) -> Any:
        units.append("read " + _name(unit))
        return await read(unit)

    monkeypatch.setattr(database, "write", spy_write)
    monkeypatch.setattr(database, "read", spy_read)
    response = await till.settle(outpatient(), key="k-route")
    assert response.status == 201, await response.text()
    assert units == ["read _plan_settle", "write _intent_unit", "write _confirm_unit"]
