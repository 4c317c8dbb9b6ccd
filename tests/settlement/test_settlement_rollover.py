"""The year-end roll-over (settlement.rollover) with a fixed clock across 00:00 Beijing time on
1 January, on SQLite and (mark ``postgres``) PostgreSQL: what is left in each current-year
account moves to the past-years account once, as balanced ledger transactions; a settle at
23:59:59.9 books to the old year, one after midnight sees the new year's accounts; a
settlement holding an account on PostgreSQL is skipped, never spent mid-move; a year not yet
ended is refused and changes nothing. The boundary chosen, 2022 → 2023, is also a policy
boundary: the policy follows the visit date."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from settlement_testkit import consultation
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import settlement.crossprov.store  # noqa: F401  (its tables are on the settlement MetaData)
from dbkit import BEIJING
from settlement.claim import Visit
from settlement.counter.settle import record
from settlement.errors import RolloverNotDue
from settlement.ledger import account_balance_fen, person_account, unbalanced_transactions
from settlement.policy import HospitalLevel, VisitType
from settlement.recording import cancel_settlement, load_holdings
from settlement.rollover import (
    DueAccount,
    RolloverProgress,
    roll_accounts,
    roll_over_year,
    rollover_status,
)
from settlement.store import (
    AccountRollover,
    Insurance,
    InsuredPersonRow,
    LedgerEntry,
    LedgerTransaction,
    PersonalAccount,
    RolloverYear,
    SettlementRow,
    metadata,
)

OLD, NEW = 2022, 2023
# 23:59:59.9 on 31 December and 00:00:00 / 00:00:00.1 on 1 January, Beijing time.
LAST_TENTH = dt.datetime(OLD, 12, 31, 23, 59, 59, 900_000, tzinfo=BEIJING)
MIDNIGHT = dt.datetime(NEW, 1, 1, 0, 0, 0, tzinfo=BEIJING)
JUST_AFTER = MIDNIGHT + dt.timedelta(milliseconds=100)
HOSPITAL = "H31010100001"
# (current-year, past-years) of each test person, in fen.
BALANCES = [(5_000, 100), (0, 0), (123, 77), (40_000, 0), (1, 1)]


def _sqlite(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = _sqlite(tmp_path / "rollover.db")
    else:
        engine = create_engine(request.getfixturevalue("postgres_schema_url"))
    metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        for number, (current_fen, past_fen) in enumerate(BALANCES, start=1):
            person = InsuredPersonRow(
                psn_no=_psn(number),
                citizen_id=f"3101011990010100{number:02d}",
                name=f"测试{number}",
                birth_date=dt.date(1990, 1, 1),
                retired=False,
            )
            session.add(person)
            session.flush()
            session.add(
                Insurance(
                    person_id=person.id,
                    insutype="310",
                    insuplc_admdvs="310000",
                    psn_type="11",
                    valid_from=dt.date(2019, 1, 1),
                    valid_to=None,
                )
            )
            session.add(
                PersonalAccount(
                    person_id=person.id,
                    account_year=OLD,
                    current_year_fen=current_fen,
                    past_years_fen=past_fen,
                )
            )
    yield engine
    engine.dispose()


def _psn(number: int) -> str:
    return f"310000000000000{number:05d}"


def _accounts(engine: Engine) -> dict[str, tuple[int, int, int]]:
    with Session(engine) as session:
        rows = session.execute(
            select(
                InsuredPersonRow.psn_no,
                PersonalAccount.account_year,
                PersonalAccount.current_year_fen,
                PersonalAccount.past_years_fen,
            ).join(PersonalAccount, PersonalAccount.person_id == InsuredPersonRow.id)
        ).all()
    return {psn_no: (year, current, past) for psn_no, year, current, past in rows}


def _counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
            for table in (AccountRollover, RolloverYear, LedgerTransaction, LedgerEntry)
        }


def _assert_ledger_sums_to_zero(engine: Engine) -> None:
    with Session(engine) as session:
        assert unbalanced_transactions(session) == []
        total = session.scalar(
            text(
                "SELECT COALESCE(SUM(CASE WHEN side = 'debit' THEN amount_fen "
                "ELSE -amount_fen END), 0) FROM ledger_entries"
            )
        )
        assert total == 0


def _roll_until_done(engine: Engine, *, year: int, now: dt.datetime, batch: int) -> list[Any]:
    steps: list[RolloverProgress] = []
    for _ in range(20):
        with Session(engine) as session, session.begin():
            progress = roll_over_year(session, year=year, now=now, batch=batch)
        steps.append(progress)
        if progress.completed:
            return steps
    raise AssertionError(f"not complete after 20 batches: {steps}")


def _settle(
    engine: Engine, number: int, *, now: dt.datetime, visit_date: dt.date, amount_fen: int
) -> SettlementRow:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        holdings = load_holdings(session, psn_no=_psn(number), year=visit_date.year)
        settled = record(
            session,
            holdings=holdings,
            fixmedins_code=HOSPITAL,
            mdtrt_id=f"M{number}{now.timestamp():.0f}",
            visit=Visit(visit_date, VisitType.OUTPATIENT, HospitalLevel.LEVEL_1),
            lines=[consultation(amount_fen)],
            now=now,
        )
        row = settled.record
        return session.get_one(SettlementRow, row.id)


def test_rollover_moves_what_is_left_once_in_batches(engine: Engine) -> None:
    steps = _roll_until_done(engine, year=OLD, now=MIDNIGHT, batch=2)
    assert [step.rolled for step in steps] == [2, 2, 1]
    assert sum(step.amount_fen for step in steps) == sum(c for c, _ in BALANCES)
    assert _accounts(engine) == {
        _psn(n): (NEW, 0, current + past) for n, (current, past) in enumerate(BALANCES, start=1)
    }
    with Session(engine) as session:
        # A debit leaves the current-year account, a credit reaches the past-years one.
        assert account_balance_fen(session, person_account(_psn(1), "current_year")) == 5_000
        assert account_balance_fen(session, person_account(_psn(1), "past_years")) == -5_000
        # Nothing was left in person 2's account: a roll-over row, no ledger transaction.
        assert session.get(AccountRollover, (2, OLD)) is not None
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 4
        status = rollover_status(session, year=OLD)
    assert status.completed_at is not None
    assert (status.accounts, status.amount_fen, status.remaining) == (5, 45_124, 0)
    _assert_ledger_sums_to_zero(engine)

    # Run twice (and by a second "worker" an hour later): nothing more happens.
    before = (_accounts(engine), _counts(engine))
    again = _roll_until_done(engine, year=OLD, now=MIDNIGHT + dt.timedelta(hours=1), batch=10)
    assert again == [RolloverProgress(year=OLD, rolled=0, amount_fen=0, completed=True)]
    assert (_accounts(engine), _counts(engine)) == before


def test_the_database_refuses_a_second_rollover_of_one_account(engine: Engine) -> None:
    _roll_until_done(engine, year=OLD, now=MIDNIGHT, batch=10)
    before = (_accounts(engine), _counts(engine))
    # A caller that skipped the checks and rolls person 1's OLD balance again: the primary key.
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        roll_accounts(
            session.connection(),
            [DueAccount(person_id=1, psn_no=_psn(1), from_year=OLD, amount_fen=5_000)],
            to_year=NEW,
            now=MIDNIGHT,
        )
    assert (_accounts(engine), _counts(engine)) == before


@pytest.mark.parametrize("now", [LAST_TENTH, dt.datetime(OLD, 6, 1, tzinfo=BEIJING)])
def test_a_year_not_ended_is_refused_and_nothing_changes(engine: Engine, now: dt.datetime) -> None:
    before = (_accounts(engine), _counts(engine))
    with pytest.raises(RolloverNotDue) as info, Session(engine) as session, session.begin():
        roll_over_year(session, year=OLD, now=now, batch=10)
    assert info.value.code == "ROLLOVER_NOT_DUE"
    assert f"{NEW}-01-01 00:00 Beijing time" in info.value.message
    assert (_accounts(engine), _counts(engine)) == before


def test_a_settle_at_235959_9_books_to_the_old_year(engine: Engine) -> None:
    old = _settle(engine, 1, now=LAST_TENTH, visit_date=LAST_TENTH.date(), amount_fen=2_000)
    assert old.policy_id == "sh-employee-2019"  # the visit date's policy
    assert old.acct_pay_current_year_fen == 2_000  # the old year's current-year account
    assert _accounts(engine)[_psn(1)] == (OLD, 3_000, 100)
    _roll_until_done(engine, year=OLD, now=MIDNIGHT, batch=10)
    # What it left moved, and only that.
    assert _accounts(engine)[_psn(1)] == (NEW, 0, 3_100)
    with Session(engine) as session:
        assert session.get_one(AccountRollover, (1, OLD)).amount_fen == 3_000
    _assert_ledger_sums_to_zero(engine)


def test_a_settle_after_midnight_sees_the_new_years_accounts_before_the_job(
    engine: Engine,
) -> None:
    # The job has not run yet: the settlement rolls its own account over first.
    new = _settle(engine, 4, now=JUST_AFTER, visit_date=JUST_AFTER.date(), amount_fen=2_000)
    assert new.policy_id == "sh-employee-2023"
    assert new.acct_pay_current_year_fen == 0
    year, current, past = _accounts(engine)[_psn(4)]
    assert (year, current) == (NEW, 0)
    assert past == 40_000 - new.acct_pay_past_years_fen
    # A visit of the old year settled after midnight (the clerk was late): the old policy,
    # and no current-year money (that year's is in the past-years account now).
    late = _settle(engine, 1, now=JUST_AFTER, visit_date=LAST_TENTH.date(), amount_fen=2_000)
    assert late.policy_id == "sh-employee-2019"
    assert late.acct_pay_current_year_fen == 0
    # The job then rolls the three others, not these two again.
    steps = _roll_until_done(engine, year=OLD, now=JUST_AFTER, batch=10)
    assert sum(step.rolled for step in steps) == 3
    with Session(engine) as session:
        rolled = {row.person_id: row.amount_fen for row in session.scalars(select(AccountRollover))}
    assert rolled == {1: 5_000, 2: 0, 3: 123, 4: 40_000, 5: 1}
    _assert_ledger_sums_to_zero(engine)


def test_a_cancel_after_the_rollover_gives_current_year_money_to_past_years(
    engine: Engine,
) -> None:
    old = _settle(engine, 1, now=LAST_TENTH, visit_date=LAST_TENTH.date(), amount_fen=2_000)
    _roll_until_done(engine, year=OLD, now=MIDNIGHT, batch=10)
    with Session(engine) as session, session.begin():
        cancel_settlement(session, setl_id=old.setl_id, now=JUST_AFTER)
    assert _accounts(engine)[_psn(1)] == (NEW, 0, 5_100)
    with Session(engine) as session:
        # The ledger agrees with the columns: 5,000 left the current-year account in all.
        assert account_balance_fen(session, person_account(_psn(1), "current_year")) == 5_000
        assert account_balance_fen(session, person_account(_psn(1), "past_years")) == -5_000
    _assert_ledger_sums_to_zero(engine)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_postgres_a_settlement_holding_an_account_is_skipped_never_spent_mid_move(
    engine: Engine,
) -> None:
    # A settle that began at 23:59:59.9 holds person 1's account row when the job starts.
    with Session(engine, expire_on_commit=False) as settling, settling.begin():
        holdings = load_holdings(settling, psn_no=_psn(1), year=OLD)
        with Session(engine) as job, job.begin():
            progress = roll_over_year(job, year=OLD, now=MIDNIGHT, batch=10)
        assert (progress.rolled, progress.completed) == (4, False)
        record(
            settling,
            holdings=holdings,
            fixmedins_code=HOSPITAL,
            mdtrt_id="M-held",
            visit=Visit(LAST_TENTH.date(), VisitType.OUTPATIENT, HospitalLevel.LEVEL_1),
            lines=[consultation(2_000)],
            now=LAST_TENTH,
        )
    steps = _roll_until_done(engine, year=OLD, now=MIDNIGHT, batch=10)
    assert [step.rolled for step in steps] == [1]
    with Session(engine) as session:
        assert session.get_one(AccountRollover, (1, OLD)).amount_fen == 3_000
    assert _accounts(engine)[_psn(1)] == (NEW, 0, 3_100)
    _assert_ledger_sums_to_zero(engine)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_postgres_a_settle_after_midnight_waits_for_the_batch_holding_its_account(
    engine: Engine,
) -> None:
    outcome: dict[str, Any] = {}

    def settle_after_midnight() -> None:
        try:
            outcome["row"] = _settle(
                engine, 1, now=JUST_AFTER, visit_date=JUST_AFTER.date(), amount_fen=2_000
            )
        except Exception as exc:  # reported below
            outcome["error"] = exc

    with Session(engine) as job, job.begin():
        progress = roll_over_year(job, year=OLD, now=MIDNIGHT, batch=10)
        assert progress.completed
        job_pid = job.scalar(text("SELECT pg_backend_pid()"))
        settler = threading.Thread(target=settle_after_midnight)
        settler.start()
        _wait_until_blocked_by(engine, job_pid)
    settler.join(timeout=30)
    assert "error" not in outcome, outcome
    row = outcome["row"]
    # It saw the rolled account (re-read under its lock): nothing rolled twice, no
    # current-year money of the old year spent in the new one.
    assert row.acct_pay_current_year_fen == 0
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(AccountRollover)) == 5
        assert session.get_one(AccountRollover, (1, OLD)).amount_fen == 5_000
    assert _accounts(engine)[_psn(1)] == (NEW, 0, 5_100 - row.acct_pay_past_years_fen)
    _assert_ledger_sums_to_zero(engine)


def _wait_until_blocked_by(engine: Engine, pid: Any) -> None:
    """Until another session waits for a lock that backend ``pid`` holds (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
                ),
                {"pid": pid},
            ).scalar_one()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the settlement never waited for the job's lock")
