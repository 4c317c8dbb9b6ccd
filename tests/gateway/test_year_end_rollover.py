"""The year-end roll-over through the gateway (gateway.housekeeping, gateway.year_end), with the
fake clock across 00:00 Beijing time on 1 January 2027, on SQLite and (mark ``postgres``)
PostgreSQL: a settle at 23:59:59.9 books to 2026; a settle racing the workers' roll-over
after midnight sees the new year's accounts; every account rolls once however often the job
runs; the ledger sums to zero and each day's reconciliation still matches."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from card_auth_testkit import NEW_ACTIVE, SEED, load_registry
from gateway_testkit import Client, FakeClock, Signer
from prometheus_client import REGISTRY
from settlement_api_testkit import Till, assert_ledger_balanced
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dbkit import BEIJING
from gateway import housekeeping
from gateway.app import create_app
from gateway.db import Database
from gateway.housekeeping import observe_rollover, roll_over_ended_year, seconds_to_next_year
from gateway.settings import Settings
from gateway.settlement_api.demo import DemoSettlementPersons
from gateway.state import DATABASE
from gateway.year_end import run_rollover
from settlement.store import AccountRollover, PersonalAccount, RolloverYear, SettlementRow

LAST_TENTH = dt.datetime(2026, 12, 31, 23, 59, 59, 900_000, tzinfo=BEIJING)
AFTER_MIDNIGHT = dt.datetime(2027, 1, 1, 0, 0, 0, 500_000, tzinfo=BEIJING)
LINES = [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_500}]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The workers' own job off: the test runs it at the moments it chooses.
    return {"demo_world": "on", "year_end_rollover": False}


@pytest.fixture
def world(engine: Engine) -> Engine:
    """The demo holders, insured, with accounts of 2026 (loaded on 31 December 2026)."""
    load_registry(engine)
    with Session(engine) as session, session.begin():
        DemoSettlementPersons(reference_date=dt.date(2026, 12, 31)).load(session, SEED)
    return engine


def _at(clock: FakeClock, instant: dt.datetime) -> None:
    clock.now_s = instant.timestamp()


def _accounts(engine: Engine) -> list[Any]:
    with Session(engine) as session:
        return sorted(
            session.execute(
                select(
                    PersonalAccount.person_id,
                    PersonalAccount.account_year,
                    PersonalAccount.current_year_fen,
                    PersonalAccount.past_years_fen,
                )
            ).all()
        )


def _rollover_rows(engine: Engine) -> list[Any]:
    with Session(engine) as session:
        return sorted(
            session.execute(select(AccountRollover.person_id, AccountRollover.from_year)).all()
        )


async def _reconciles(till: Till, day: str, settled: list[dict[str, Any]]) -> None:
    totals = {
        "clr_type": "11",
        "stmt_date": day,
        "fixmedins_setl_cnt": len(settled),
        **{
            name: sum(s[name] for s in settled)
            for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
        },
    }
    answer = await (await till.post("/v1/reconciliation/totals", totals)).json()
    assert answer["stmt_rslt"] == "0", answer


async def test_a_settle_across_midnight_and_the_workers_rollover(
    client: Client, clock: FakeClock, world: Engine, app: Any
) -> None:
    _at(clock, LAST_TENTH - dt.timedelta(seconds=30))
    till = Till(Signer(client, clock))
    await till.read_card(NEW_ACTIVE)
    before = {row.person_id: row for row in _accounts(world)}
    holder_person = 1  # holder 0 is the first person loaded

    _at(clock, LAST_TENTH)
    old = await till.settled(
        {"visit_type": "outpatient", "visit_date": "2026-12-31", "lines": LINES}
    )
    assert old["acct_pay_current_year_fen"] == min(2_500, before[holder_person].current_year_fen)

    # After midnight, before any roll-over ran: eligibility (a read, changing nothing) already
    # shows the new year's accounts.
    _at(clock, AFTER_MIDNIGHT)
    left_fen = before[holder_person].current_year_fen - old["acct_pay_current_year_fen"]
    assert left_fen > 0  # or the check below could not tell a rolled account from another
    insurance = (await till.eligibility())["insuinfo"][0]
    assert insurance["current_year_balance_fen"] == 0
    past_fen = before[holder_person].past_years_fen - old["acct_pay_past_years_fen"]
    assert insurance["past_years_balance_fen"] == past_fen + left_fen
    new_visit = {"visit_type": "outpatient", "visit_date": "2027-01-01", "lines": LINES}
    estimated = await till.post("/v1/settlements/pre-settle", new_visit)
    assert estimated.status == 200, await estimated.text()
    estimate = await estimated.json()
    assert _rollover_rows(world) == []

    # A settle and the workers' roll-over at the same time.
    db = app[DATABASE]
    response, progress = await asyncio.gather(
        till.settle(new_visit), roll_over_ended_year(db, clock, batch=1)
    )
    assert response.status == 201, await response.text()
    new = await response.json()
    assert new["acct_pay_current_year_fen"] == 0  # 2027's current-year account: empty
    # The estimate made before the roll-over is what the settle then did: with no current-year
    # money the patient's share goes into the self-pay band (act_pay_dedc), paid from the
    # past-years account.
    compared = ("act_pay_dedc", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "balc")
    assert new["act_pay_dedc"] > 0
    assert {name: estimate[name] for name in compared} == {name: new[name] for name in compared}
    assert progress is not None
    assert progress.year == 2026
    assert progress.completed

    # Every account rolled once: 2026's current-year money (less the 23:59:59.9 settle) is in
    # the past-years accounts, less what the 2027 settle spent from there.
    after = {row.person_id: row for row in _accounts(world)}
    for person_id, was in before.items():
        now = after[person_id]
        spent_fen = 0
        if person_id == holder_person:
            spent_fen = old["acct_pay"] + new["acct_pay"]
        assert (now.account_year, now.current_year_fen) == (2027, 0)
        assert now.past_years_fen == was.current_year_fen + was.past_years_fen - spent_fen
    assert _rollover_rows(world) == [(person_id, 2026) for person_id in sorted(before)]

    # The job again, on another worker an hour later: nothing more happens.
    _at(clock, AFTER_MIDNIGHT + dt.timedelta(hours=1))
    assert await roll_over_ended_year(db, clock, batch=10) is None
    assert {row.person_id: row for row in _accounts(world)} == after
    assert len(_rollover_rows(world)) == len(before)

    assert_ledger_balanced(world)
    await _reconciles(till, "2026-12-31", [old])
    await _reconciles(till, "2027-01-01", [new])
    with Session(world) as session:
        assert session.scalar(select(func.count()).select_from(SettlementRow)) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_workers_run_the_rollover_on_their_own(
    settings: Settings, world: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With year_end_rollover on (the default), a worker's housekeeping completes the ended
    year's roll-over by itself; its first look comes at once here (the random start-up delay
    drawn as 0)."""
    monkeypatch.setattr(housekeeping.random, "uniform", lambda low, high: 0.0)
    _at(clock, AFTER_MIDNIGHT)
    app = create_app(settings.model_copy(update={"year_end_rollover": True}), clock=clock)
    async with TestClient(TestServer(app)):
        for _ in range(500):  # bounded: 10 s
            with Session(world) as session:
                if session.get(RolloverYear, 2026) is not None:
                    break
            await asyncio.sleep(0.02)
    rows = _accounts(world)
    assert all((row.account_year, row.current_year_fen) == (2027, 0) for row in rows)
    assert len(_rollover_rows(world)) == len(rows)
    assert_ledger_balanced(world)


PENDING = "gateway_rollover_pending_accounts"
DUE = "gateway_rollover_due_timestamp_seconds"


async def test_the_accounts_pending_rollover_are_reported_until_it_completes(
    world: Engine, clock: FakeClock
) -> None:
    """What RolloverUnfinished (deploy/prometheus/alerts.yml) watches: the accounts still in
    the ended year, and when its roll-over fell due. (A Database of its own, no app: no
    worker's task sets the gauges meanwhile.)"""
    db = Database(world, threads=1)
    try:
        await _pending_until_complete(db, world, clock)
    finally:
        db.close()


async def _pending_until_complete(db: Database, world: Engine, clock: FakeClock) -> None:
    seven_hours_on = AFTER_MIDNIGHT + dt.timedelta(hours=7)
    accounts = len(_accounts(world))
    assert accounts > 0
    assert await observe_rollover(db, seven_hours_on) == accounts
    assert REGISTRY.get_sample_value(PENDING) == accounts
    new_year = dt.datetime(2027, 1, 1, tzinfo=BEIJING)
    assert REGISTRY.get_sample_value(DUE) == new_year.timestamp()
    # Before midnight the last ended year is 2025, complete or with nothing in it: 0.
    assert await observe_rollover(db, LAST_TENTH) == 0
    assert REGISTRY.get_sample_value(DUE) == dt.datetime(2026, 1, 1, tzinfo=BEIJING).timestamp()

    _at(clock, seven_hours_on)
    progress = await roll_over_ended_year(db, clock, batch=accounts)
    assert progress is not None
    assert progress.completed
    assert await observe_rollover(db, seven_hours_on) == 0
    assert REGISTRY.get_sample_value(PENDING) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_workers_whose_job_is_off_still_report_the_accounts_pending(
    settings: Settings, world: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """year_end_rollover = false leaves the work to `admin rollover`; the alert must still
    see an unfinished one, so each worker's check reads where it stands (and rolls nothing)."""
    monkeypatch.setattr(housekeeping.random, "uniform", lambda low, high: 0.0)
    _at(clock, AFTER_MIDNIGHT)
    housekeeping.metrics.ROLLOVER_PENDING_ACCOUNTS.set(-1)
    accounts = len(_accounts(world))
    async with TestClient(TestServer(create_app(settings, clock=clock))):
        for _ in range(500):  # bounded: 10 s
            if REGISTRY.get_sample_value(PENDING) == accounts:
                break
            await asyncio.sleep(0.02)
    assert REGISTRY.get_sample_value(PENDING) == accounts
    assert _rollover_rows(world) == []


def test_seconds_to_next_year_counts_to_beijing_midnight() -> None:
    assert seconds_to_next_year(LAST_TENTH) == pytest.approx(0.1)
    assert seconds_to_next_year(AFTER_MIDNIGHT) == pytest.approx(365 * 86_400 - 0.5)


# --- python -m gateway admin rollover ------------------------------------------------------------


def _run(settings: Settings, instant: dt.datetime, *, check: bool = False) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_rollover(settings, year=2026, check=check, clock=instant.timestamp, out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def test_admin_rollover_refuses_a_year_not_ended_then_runs_once(
    settings: Settings, world: Engine
) -> None:
    before = _accounts(world)
    code, text = _run(settings, LAST_TENTH)
    assert code == 2
    assert "the year 2026 has not ended" in text
    assert "2027-01-01 00:00 Beijing time" in text
    assert "nothing was changed" in text
    assert _accounts(world) == before
    assert _rollover_rows(world) == []

    code, text = _run(settings, AFTER_MIDNIGHT, check=True)
    assert code == 1
    assert "NOT complete" in text
    assert f"{len(before)} accounts still in 2026" in text
    assert _accounts(world) == before

    code, text = _run(settings, AFTER_MIDNIGHT)
    assert code == 0, text
    moved_fen = sum(row.current_year_fen for row in before)
    assert f"{len(before)} accounts rolled" in text
    assert f"{moved_fen // 100:,}.{moved_fen % 100:02d} yuan moved" in text
    assert "complete since 2027-01-01T00:00:00+08:00" in text
    rolled = _accounts(world)
    assert all(row.account_year == 2027 and row.current_year_fen == 0 for row in rolled)

    code, again = _run(settings, AFTER_MIDNIGHT + dt.timedelta(days=3))
    assert (code, again) == (0, text)
    assert _accounts(world) == rolled
    with Session(world) as session:
        assert session.scalar(select(func.count()).select_from(RolloverYear)) == 1
    assert_ledger_balanced(world)
