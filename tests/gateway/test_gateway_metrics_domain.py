"""The metrics the alert rules and dashboards use beyond HTTP (deploy/prometheus, deploy/grafana):
settlements and their amounts counted once (never again for a replayed answer), cancels,
reconciliation results, card-authentication verdicts by reason, the certificate cache, database
write latency and failures, and the hub's breaker state and reversal queue age. In process, on
SQLite (the default registry: no multiprocess mode here)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from card_auth_testkit import NEW_ACTIVE, NEW_LOST, CardTerminal
from crossprov_testkit import load_jiangsu_world
from gateway_testkit import HOSPITAL, FakeClock, Signer, assert_problem
from prometheus_client import REGISTRY
from settlement_api_testkit import TODAY, Till, load_insured_world, outpatient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.crossprov.hub import HUB, run_reversals_once
from gateway.db_metrics import MeasuredDatabase, database_failure_kind
from gateway.errors import ERRORS, ErrorCode, GatewayError
from gateway.state import CLOCK, DATABASE
from settlement.crossprov.calls import NoAnswer


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    """Sample values now, to compare with later (the registry lives as long as the process)."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self._before = {
            (name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self._before[(name, tuple(sorted(labels.items())))]


def _settled_samples(route: str, visit_type: str) -> list[tuple[str, dict[str, str]]]:
    labels = {"route": route, "visit_type": visit_type}
    return [
        ("gateway_settlements_total", labels),
        ("gateway_settlement_cancels_total", labels),
        *(
            ("gateway_settled_amount_fen_total", {**labels, "payer": payer})
            for payer in ("fund", "account", "cash")
        ),
    ]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on", "reconciliation_ops_institutions": HOSPITAL}


# --- money ---------------------------------------------------------------------------------------


async def test_a_settlement_is_counted_once_with_its_split_and_its_cancel(
    signer: Signer, engine: Engine
) -> None:
    load_insured_world(engine)
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)
    delta = Deltas(*_settled_samples("local", "outpatient"))
    writes_before = value("gateway_db_write_duration_seconds_count")

    first = await till.settle(outpatient(), key="metrics-1")
    assert first.status == 201, await first.text()
    body = await first.json()
    replay = await till.settle(outpatient(), key="metrics-1")
    assert replay.status == 201
    assert replay.headers["Idempotent-Replayed"] == "true"

    assert delta("gateway_settlements_total", route="local", visit_type="outpatient") == 1
    paid = {
        "fund": body["fund_pay_sumamt"],
        "account": body["acct_pay"],
        "cash": body["psn_cash_pay"],
    }
    assert sum(paid.values()) == body["medfee_sumamt"] > 0
    for payer, fen in paid.items():
        assert (
            delta(
                "gateway_settled_amount_fen_total",
                route="local",
                visit_type="outpatient",
                payer=payer,
            )
            == fen
        ), payer
    # The settle was one write unit at least (its nonce, its rows), timed.
    assert value("gateway_db_write_duration_seconds_count") > writes_before

    path = f"/v1/settlements/{body['setl_id']}/cancel"
    for _ in range(2):  # the second is a replay of the first
        cancel = await till.post(path, {"reason": "metrics test"}, key="metrics-cancel")
        assert cancel.status == 200, await cancel.text()
    assert delta("gateway_settlement_cancels_total", route="local", visit_type="outpatient") == 1
    # A refused settle counts nothing.
    refused = await till.settle(outpatient(lines=[]), key="metrics-2")
    assert refused.status == 422
    assert delta("gateway_settlements_total", route="local", visit_type="outpatient") == 1


async def test_reconciliation_runs_are_counted_by_result(signer: Signer, engine: Engine) -> None:
    load_insured_world(engine)
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)
    settled = await till.settled(outpatient())
    delta = Deltas(
        *(
            ("gateway_reconciliations_total", {"kind": kind, "result": result})
            for kind in ("totals", "details")
            for result in ("matched", "mismatched")
        )
    )
    amounts = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
    totals = {
        "clr_type": "11",
        "stmt_date": TODAY,
        "fixmedins_setl_cnt": 1,
        **{name: settled[name] for name in amounts},
    }
    assert (await till.post("/v1/reconciliation/totals", totals)).status == 200
    # The institution's books say one fen more, paid in cash (figures that add up: a total
    # that is not fund + account + cash is refused before it is compared).
    wrong = {
        **totals,
        "medfee_sumamt": settled["medfee_sumamt"] + 1,
        "psn_cash_pay": settled["psn_cash_pay"] + 1,
    }
    assert (await till.post("/v1/reconciliation/totals", wrong)).status == 200
    assert (await till.post("/v1/reconciliation/totals", wrong)).status == 200
    details = {
        "clr_type": "11",
        "stmt_date": TODAY,
        "details": [{"setl_id": settled["setl_id"], **{name: settled[name] for name in amounts}}],
    }
    assert (await till.post("/v1/reconciliation/details", details)).status == 200

    assert delta("gateway_reconciliations_total", kind="totals", result="matched") == 1
    assert delta("gateway_reconciliations_total", kind="totals", result="mismatched") == 2
    assert delta("gateway_reconciliations_total", kind="details", result="matched") == 1
    assert delta("gateway_reconciliations_total", kind="details", result="mismatched") == 0


# --- card authentication -------------------------------------------------------------------------


async def test_card_verdicts_by_reason_and_the_certificate_cache(
    signer: Signer, engine: Engine
) -> None:
    load_insured_world(engine)
    name = "gateway_card_authentications_total"
    ok = {"generation": "3", "outcome": "authenticated", "reason": "none"}
    lost = {"generation": "3", "outcome": "refused", "reason": "CARD_LOST"}
    cache = "gateway_card_cert_cache_lookups_total"
    delta = Deltas(
        (name, ok), (name, lost), (cache, {"result": "hit"}), (cache, {"result": "miss"})
    )
    terminal = CardTerminal(signer)

    first = await terminal.authenticate(NEW_ACTIVE)
    assert first.status == 200, await first.text()
    assert (delta(cache, result="miss"), delta(cache, result="hit")) == (1, 0)
    again = await terminal.authenticate(NEW_ACTIVE, hash_only=True)
    assert again.status == 200, await again.text()
    assert (delta(cache, result="miss"), delta(cache, result="hit")) == (1, 1)
    refused = await terminal.authenticate(NEW_LOST)
    await assert_problem(refused, ERRORS[ErrorCode.CARD_LOST].status, "CARD_LOST")

    assert delta(name, **ok) == 2
    assert delta(name, **lost) == 1
    # A lost card's certificate is genuine but was never cached: a miss (verified, then refused).
    assert delta(cache, result="miss") == 2


# --- database ------------------------------------------------------------------------------------


def test_database_failure_kinds() -> None:
    assert database_failure_kind(GatewayError(ErrorCode.DB_UNAVAILABLE, "x")) == "unavailable"
    assert database_failure_kind(IntegrityError("INSERT", {}, Exception("dup"))) is None
    assert database_failure_kind(GatewayError(ErrorCode.SETTLEMENT_NOT_FOUND, "x")) is None
    assert database_failure_kind(ValueError("a unit's own error")) is None


@pytest.fixture
def broken_db(tmp_path: Any) -> Iterator[MeasuredDatabase]:
    # A directory where the database file should be: every connection attempt fails.
    engine = create_engine(f"sqlite:///{tmp_path}")
    db = MeasuredDatabase(engine, threads=1)
    yield db
    db.close()


async def test_database_failures_are_counted_by_op_and_kind(
    broken_db: MeasuredDatabase, tmp_path: Any
) -> None:
    name = "gateway_db_errors_total"
    delta = Deltas(
        *(
            (name, {"op": op, "kind": kind})
            for op in ("read", "write")
            for kind in ("unavailable", "failed")
        )
    )
    writes = value("gateway_db_write_duration_seconds_count")
    for call in (broken_db.read, broken_db.write):
        with pytest.raises(GatewayError) as raised:
            await call(lambda session: session.execute(text("SELECT 1")))
        assert raised.value.code == ErrorCode.DB_UNAVAILABLE
    assert delta(name, op="read", kind="unavailable") == 1
    assert delta(name, op="write", kind="unavailable") == 1
    # A failed write is timed too: the caller waited for it.
    assert value("gateway_db_write_duration_seconds_count") == writes + 1

    working = MeasuredDatabase(create_engine(f"sqlite:///{tmp_path / 'ok.sqlite3'}"), threads=1)
    try:
        with pytest.raises(Exception, match="binding parameter"):
            # The driver refuses the parameter: a database error that is not a conflict.
            await working.write(lambda s: s.execute(text("SELECT :x"), {"x": object()}))
        assert delta(name, op="write", kind="failed") == 1
        await working.write(lambda s: s.execute(text("SELECT 1")))
        assert delta(name, op="write", kind="failed") == 1
    finally:
        working.close()


# --- the national hub ----------------------------------------------------------------------------


class _DeadHub:
    """Every call times out after it may have been sent: the outcome is unknown."""

    async def post(self, infno: str, envelope: Any, timeout_s: float) -> Any:
        raise NoAnswer("timeout", hub_down=True)


class _DeafEvent(asyncio.Event):
    def set(self) -> None:  # the test runs the reversal rounds itself
        pass


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "demo_world": "on",
            "hub_url": "http://127.0.0.1:9",
            "hub_retries": 0,
            "hub_breaker_failures": 1,
            "hub_breaker_open_s": 600,
            "hub_reversal_poll_s": 600,
        }
    ],
)
async def test_breaker_state_and_the_reversal_queue_age(
    signer: Signer, engine: Engine, clock: FakeClock
) -> None:
    load_jiangsu_world(engine)
    app = signer.client.app
    context = app[HUB]
    assert context.client is not None
    context.client.transport = _DeadHub()
    context.wake = _DeafEvent()
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)

    response = await till.settle(outpatient(), key="hub-down")
    await assert_problem(response, 503, "HUB_OUTCOME_UNKNOWN")
    # The failed call opened this worker's breaker (threshold 1), and said so at once.
    assert value("ssc_hub_breaker_state") == 2

    clock.now_s += 42
    await run_reversals_once(context, app[DATABASE], app[CLOCK])
    assert value("ssc_hub_reversal_queue_depth") == 1
    assert value("ssc_hub_reversal_queue_oldest_age_seconds") == pytest.approx(42, abs=1)
    assert value("ssc_hub_breaker_state") == 2

    # The queue emptied (the hub confirms the reversal): the age drops back to 0.
    with Session(engine) as session, session.begin():
        session.execute(text("UPDATE hub_reversals SET status = 'done', done_at = created_at"))
    await run_reversals_once(context, app[DATABASE], app[CLOCK])
    assert value("ssc_hub_reversal_queue_depth") == 0
    assert value("ssc_hub_reversal_queue_oldest_age_seconds") == 0
