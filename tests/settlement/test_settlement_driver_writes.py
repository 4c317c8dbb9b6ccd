"""The settle path on the driver's cursor (settlement.store.DriverSQL and DriverInsert), on
SQLite and (mark ``postgres``) PostgreSQL: it stores byte for byte what the ORM stores for the
same settlement, reads back what it stored, maps driver errors to the SQLAlchemy exceptions
(parameters hidden), and runs nothing through SQLAlchemy's execution layer."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from settlement_testkit import LATER_DAY, book, consultation, demo_catalogue
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from settlement.claim import AccountBalances, ClaimLine, InsuredPerson, Visit, YearToDate
from settlement.idempotency import DEFAULT_TTL, lookup_request, store_response
from settlement.ledger import settlement_postings
from settlement.policy import HospitalLevel, VisitType
from settlement.recording import (
    Holdings,
    WrittenSettlement,
    cancel_settlement,
    load_holdings,
    record_settlement,
    write_settlement,
)
from settlement.result import SettlementResult
from settlement.store import (
    IdempotencyKey,
    IdempotencyStatus,
    InsuredPersonRow,
    LedgerEntry,
    LedgerTransaction,
    PersonalAccount,
    SettlementLineRow,
    SettlementRow,
    YearToDateTotals,
    metadata,
)

NOW = dt.datetime(2024, 6, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
PSN_NO = "31000000000000000001"
FIXMEDINS = "H31010100001"
CLIENT = "H31010100001"
SHA = "ab" * 32
VISIT = Visit(
    visit_date=LATER_DAY, visit_type=VisitType.OUTPATIENT, hospital_level=HospitalLevel.LEVEL_2
)
LINES = (
    consultation(60000),
    ClaimLine(catalogue_code="DEMO-B-001", quantity=2, unit_price_fen=3000),
    ClaimLine(catalogue_code="DEMO-C-001", quantity=1, unit_price_fen=1000),
)
# Every table a settle writes, each with the columns that order its rows.
WRITTEN = {
    "settlements": "id",
    "settlement_lines": "settlement_id, line_no",
    "personal_accounts": "person_id",
    "year_to_date_totals": "person_id, year",
    "ledger_transactions": "txn_id",
    "ledger_entries": "id",
    "settlement_idempotency_keys": "client_id, idempotency_key",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'settlement.db'}")

        @event.listens_for(engine, "connect")
        def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys = ON")

    else:
        engine = create_engine(request.getfixturevalue("postgres_schema_url"))
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _seed(engine: Engine, *, totals: YearToDate | None) -> int:
    """One person with 50.00 in the current-year and 300.00 in the past-years account, and
    (unless ``totals`` is None) a year's totals row already."""
    with Session(engine) as session, session.begin():
        person = InsuredPersonRow(
            psn_no=PSN_NO,
            citizen_id="310101199001010011",
            name="张三",
            birth_date=dt.date(1990, 1, 1),
            retired=False,
        )
        session.add(person)
        session.flush()
        session.add(
            PersonalAccount(
                person_id=person.id, account_year=2024, current_year_fen=5000, past_years_fen=30000
            )
        )
        if totals is not None:
            session.add(
                YearToDateTotals(
                    person_id=person.id, year=LATER_DAY.year, **dataclasses.asdict(totals)
                )
            )
        return person.id


def _raw(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every written table as the driver returns it: stored forms, no type conversion."""
    connection = session.connection()
    return {
        table: [
            tuple(row)
            for row in connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order}")
        ]
        for table, order in WRITTEN.items()
    }


def _settle_on_the_driver(session: Session) -> tuple[WrittenSettlement, SettlementResult]:
    holdings = load_holdings(session, psn_no=PSN_NO, year=LATER_DAY.year)
    written, result = write_settlement(
        session,
        holdings=holdings,
        policy=book().for_date(LATER_DAY),
        catalogue=demo_catalogue(),
        setl_id="S0001",
        mdtrt_id="M0001",
        fixmedins_code=FIXMEDINS,
        visit=VISIT,
        lines=LINES,
        now=NOW,
    )
    store_response(
        session,
        client_id=CLIENT,
        idempotency_key="key-1",
        request_sha256=SHA,
        now=NOW,
        response_status=201,
        response_body='{"setl_id": "S0001"}',
    )
    return written, result


def _settle_through_the_orm(
    session: Session,
    written: WrittenSettlement,
    result: SettlementResult,
    entry_ids: Sequence[int],
) -> None:
    """The same settlement written as ORM objects: what SQLAlchemy itself stores. Generated
    keys are copied from the driver's run (a PostgreSQL sequence does not roll back)."""
    session.add(SettlementRow(**dataclasses.asdict(written)))
    session.flush()
    session.add_all(
        SettlementLineRow(
            settlement_id=written.id,
            line_no=number,
            catalogue_code=line.catalogue_code,
            quantity=line.quantity,
            unit_price_fen=line.unit_price_fen,
            amount_fen=line.quantity * line.unit_price_fen,
        )
        for number, line in enumerate(LINES, start=1)
    )
    account = session.get(PersonalAccount, written.person_id)
    assert account is not None
    account.current_year_fen -= result.acct_detail.current_year_fen
    account.past_years_fen -= result.acct_detail.past_years_fen
    after = result.year_to_date_after
    totals = session.get(YearToDateTotals, (written.person_id, LATER_DAY.year))
    if totals is None:
        session.add(
            YearToDateTotals(
                person_id=written.person_id, year=LATER_DAY.year, **dataclasses.asdict(after)
            )
        )
    else:
        totals.self_pay_band_consumed_fen = after.self_pay_band_consumed_fen
        totals.deductible_consumed_fen = after.deductible_consumed_fen
        totals.pooling_fund_paid_fen = after.pooling_fund_paid_fen
    session.add(
        LedgerTransaction(
            txn_id="settle:S0001", kind="settle", settlement_id=written.id, posted_at=NOW
        )
    )
    session.flush()
    postings = settlement_postings(result, psn_no=PSN_NO, fixmedins_code=FIXMEDINS)
    assert len(postings) == len(entry_ids)
    for entry_id, posting in zip(entry_ids, postings, strict=True):
        session.add(
            LedgerEntry(
                id=entry_id,
                txn_id="settle:S0001",
                account=posting.account,
                side=posting.side,
                amount_fen=posting.amount_fen,
            )
        )
        session.flush()  # in this order, as the driver's executemany
    session.add(
        IdempotencyKey(
            client_id=CLIENT,
            idempotency_key="key-1",
            request_sha256=SHA,
            status=IdempotencyStatus.DONE,
            response_status=201,
            response_body='{"setl_id": "S0001"}',
            created_at=NOW,
            expires_at=NOW + DEFAULT_TTL,
        )
    )
    session.flush()


@pytest.mark.parametrize(
    "totals",
    [
        pytest.param(None, id="first-of-the-year"),
        pytest.param(YearToDate(20000, 0, 16000), id="totals-exist"),
    ],
)
def test_the_driver_stores_what_the_orm_stores(engine: Engine, totals: YearToDate | None) -> None:
    person_id = _seed(engine, totals=totals)
    with Session(engine) as session, session.begin():
        written, result = _settle_on_the_driver(session)
        by_driver = _raw(session)
        session.rollback()
    # Something of every kind moved: fund, both accounts, cash, the year's totals.
    assert result.hifp_pay > 0
    assert result.psn_cash_pay > 0
    assert result.acct_detail.current_year_fen == 5000
    assert result.acct_detail.past_years_fen > 0
    assert written.person_id == person_id
    assert len(by_driver["settlements"]) == 1
    assert len(by_driver["ledger_entries"]) >= 4
    with Session(engine) as session, session.begin():
        entry_ids = [row[0] for row in by_driver["ledger_entries"]]
        _settle_through_the_orm(session, written, result, entry_ids)
        by_orm = _raw(session)
    assert by_driver == by_orm


def test_what_the_driver_wrote_reads_back_as_written(engine: Engine) -> None:
    _seed(engine, totals=None)
    with Session(engine) as session, session.begin():
        written, result = _settle_on_the_driver(session)
    with Session(engine) as session:
        row = session.scalars(select(SettlementRow)).one()
        assert {
            field.name: getattr(row, field.name) for field in dataclasses.fields(written)
        } == dataclasses.asdict(written) | {
            # SQLite hands back naive UTC for DateTime(timezone=True) (as for any ORM row).
            "setl_time": row.setl_time if row.setl_time.tzinfo is None else NOW
        }
        assert row.setl_time.replace(tzinfo=dt.UTC) == NOW
        account = session.get(PersonalAccount, written.person_id)
        assert account is not None
        assert (account.current_year_fen, account.past_years_fen) == (
            0,
            30000 - result.acct_detail.past_years_fen,
        )
        totals = session.get(YearToDateTotals, (written.person_id, LATER_DAY.year))
        assert totals is not None
        assert YearToDate(
            totals.self_pay_band_consumed_fen,
            totals.deductible_consumed_fen,
            totals.pooling_fund_paid_fen,
        ) == (result.year_to_date_after)
        # The key row reads back through the driver's lookup as the stored answer.
        replay = lookup_request(
            session, client_id=CLIENT, idempotency_key="key-1", request_sha256=SHA, now=NOW
        )
        assert replay is not None
        assert (replay.response_status, replay.response_body) == (201, '{"setl_id": "S0001"}')
        # ... and the holdings read sees the new balances and totals.
        holdings = load_holdings(session, psn_no=PSN_NO, year=LATER_DAY.year)
        assert holdings.person == InsuredPerson(retired=False, birth_date=dt.date(1990, 1, 1))
        assert holdings.balances == AccountBalances(0, 30000 - result.acct_detail.past_years_fen)
        assert holdings.year_to_date == result.year_to_date_after
        assert holdings.totals_exist


def test_a_cancel_gives_back_what_the_driver_took(engine: Engine) -> None:
    _seed(engine, totals=YearToDate(20000, 0, 16000))
    with Session(engine) as session, session.begin():
        _settle_on_the_driver(session)
    with Session(engine) as session, session.begin():
        cancel_settlement(session, setl_id="S0001", now=NOW)
    with Session(engine) as session:
        holdings = load_holdings(session, psn_no=PSN_NO, year=LATER_DAY.year)
        assert holdings.balances == AccountBalances(5000, 30000)
        assert holdings.year_to_date == YearToDate(20000, 0, 16000)


# --- errors -------------------------------------------------------------------------------------


def _write(session: Session, holdings: Holdings, setl_id: str = "S0001") -> None:
    write_settlement(
        session,
        holdings=holdings,
        policy=book().for_date(LATER_DAY),
        catalogue=demo_catalogue(),
        setl_id=setl_id,
        mdtrt_id="M0001",
        fixmedins_code=FIXMEDINS,
        visit=VISIT,
        lines=LINES,
        now=NOW,
    )


def _assert_integrity_error(
    engine: Engine, unit: Callable[[Session], object], constraint: str
) -> None:
    """``unit`` fails with SQLAlchemy's IntegrityError naming ``constraint``, parameters
    hidden, and its transaction leaves nothing behind."""
    with Session(engine) as session:
        before = _raw(session)
    with pytest.raises(IntegrityError) as info, Session(engine) as session, session.begin():
        unit(session)
    assert isinstance(info.value.orig, sqlite3.IntegrityError | psycopg.IntegrityError)
    assert constraint in str(info.value.orig)
    # The SQL is shown, its values are not (the driver's own message may quote a key).
    assert info.value.params is None
    assert "[parameters:" not in str(info.value)
    with Session(engine) as session:
        assert _raw(session) == before


def _stale(holdings: Holdings, **changes: Any) -> Holdings:
    return dataclasses.replace(holdings, **changes)


def test_an_overdraw_is_refused_by_the_check_as_integrity_error(engine: Engine) -> None:
    _seed(engine, totals=None)
    with Session(engine) as session:
        holdings = load_holdings(session, psn_no=PSN_NO, year=LATER_DAY.year)
    # Holdings that claim more than the account holds (a caller that skipped the row lock):
    # the relative UPDATE goes below zero and the CHECK refuses it.
    rich = _stale(holdings, balances=AccountBalances(10**7, 0))
    _assert_integrity_error(
        engine, lambda session: _write(session, rich), "current_year_not_negative"
    )


def test_a_second_first_totals_row_is_an_integrity_error(engine: Engine) -> None:
    _seed(engine, totals=YearToDate())
    with Session(engine) as session:
        holdings = load_holdings(session, psn_no=PSN_NO, year=LATER_DAY.year)
    # A racing first settlement of the year: it read no totals row, another one inserted it.
    late = _stale(holdings, totals_exist=False)
    _assert_integrity_error(engine, lambda session: _write(session, late), "year_to_date_totals")


def test_a_duplicate_setl_id_is_an_integrity_error(engine: Engine) -> None:
    _seed(engine, totals=None)
    with Session(engine) as session, session.begin():
        _settle_on_the_driver(session)
    with Session(engine) as session:
        holdings = load_holdings(session, psn_no=PSN_NO, year=LATER_DAY.year)
    _assert_integrity_error(engine, lambda session: _write(session, holdings), "setl_id")


def test_a_duplicate_idempotency_key_is_an_integrity_error(engine: Engine) -> None:
    _seed(engine, totals=None)
    with Session(engine) as session, session.begin():
        _settle_on_the_driver(session)

    def store_again(session: Session) -> None:
        store_response(
            session,
            client_id=CLIENT,
            idempotency_key="key-1",
            request_sha256=SHA,
            now=NOW,
            response_status=201,
            response_body="{}",
        )

    constraint = "pk_settlement_idempotency_keys"
    if engine.dialect.name == "sqlite":  # SQLite names the columns, not the constraint
        constraint = "settlement_idempotency_keys.client_id"
    _assert_integrity_error(engine, store_again, constraint)


@pytest.mark.postgres
def test_load_holdings_locks_the_account_and_totals_rows(postgres_schema_url: str) -> None:
    engine = create_engine(postgres_schema_url)
    metadata.create_all(engine)
    person_id = _seed(engine, totals=YearToDate())
    try:
        with Session(engine) as session, session.begin():
            load_holdings(session, psn_no=PSN_NO, year=LATER_DAY.year)
            for table, where in (
                ("personal_accounts", f"person_id = {person_id}"),
                ("year_to_date_totals", f"person_id = {person_id} AND year = {LATER_DAY.year}"),
            ):
                with (
                    pytest.raises(OperationalError, match="could not obtain lock"),
                    engine.connect() as other,
                ):
                    other.exec_driver_sql(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE NOWAIT")
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("totals", [YearToDate(), None], ids=["totals-row", "first-of-year"])
def test_load_holdings_after_waiting_reads_what_the_lock_holder_committed(
    postgres_schema_url: str, totals: YearToDate | None
) -> None:
    """The one-statement lock (totals row there) and the two-statement one (none yet): a
    reader that waited for the account lock gets the account AND the totals as committed by
    the transaction it waited for, never the totals of its own statement's start."""
    engine = create_engine(postgres_schema_url)
    metadata.create_all(engine)
    person_id = _seed(engine, totals=totals)
    year = LATER_DAY.year
    try:
        with Session(engine) as holder, holder.begin():
            load_holdings(holder, psn_no=PSN_NO, year=year)
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:

                def waiter() -> Any:
                    with Session(engine) as session, session.begin():
                        return load_holdings(session, psn_no=PSN_NO, year=year)

                waiting = pool.submit(waiter)
                _wait_until_blocked(engine)
                # The lock holder spends and adds to (or first writes) the year's totals.
                holder.connection().exec_driver_sql(
                    "UPDATE personal_accounts SET current_year_fen = current_year_fen - 700 "
                    f"WHERE person_id = {person_id}"
                )
                holder.connection().exec_driver_sql(
                    "UPDATE year_to_date_totals SET deductible_consumed_fen = "
                    f"deductible_consumed_fen + 700 WHERE person_id = {person_id}"
                    if totals is not None
                    else "INSERT INTO year_to_date_totals (person_id, year, "
                    "self_pay_band_consumed_fen, deductible_consumed_fen, pooling_fund_paid_fen) "
                    f"VALUES ({person_id}, {year}, 0, 700, 0)"
                )
                holder.commit()
                seen = waiting.result(timeout=30)
        assert seen.balances.current_year_fen == 5000 - 700
        assert seen.year_to_date.deductible_consumed_fen == 700
        assert seen.totals_exist
    finally:
        engine.dispose()


def _wait_until_blocked(engine: Engine) -> None:
    """Until some other backend of this database waits for a lock (the waiter's statement)."""
    deadline = time.monotonic() + 30
    with engine.connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).scalar_one()
            watcher.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second load_holdings never waited for the lock")


# --- what runs where ----------------------------------------------------------------------------


@contextlib.contextmanager
def _statements(connection: Connection) -> Iterator[list[str]]:
    """Every statement run on ``connection`` meanwhile, driver-cursor ones included: sqlite3's
    trace callback (each row of an executemany), or a counting psycopg cursor (each call)."""
    seen: list[str] = []
    driver = connection.connection.driver_connection
    if isinstance(driver, sqlite3.Connection):
        driver.set_trace_callback(seen.append)
        try:
            yield seen
        finally:
            driver.set_trace_callback(None)
        return

    class CountingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
            seen.append(str(query))
            super().executemany(query, *args, **kwargs)

    assert isinstance(driver, psycopg.Connection)
    driver.cursor_factory = CountingCursor
    try:
        yield seen
    finally:
        driver.cursor_factory = psycopg.Cursor


def test_a_settlement_runs_every_statement_on_the_driver(engine: Engine) -> None:
    _seed(engine, totals=YearToDate(20000, 0, 16000))
    through_sqlalchemy: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        through_sqlalchemy.append(statement)

    with Session(engine) as session, session.begin():
        connection = session.connection()
        event.listen(engine, "before_cursor_execute", count)
        try:
            with _statements(connection) as seen:
                record_settlement(
                    session,
                    policies=book(),
                    catalogue=demo_catalogue(),
                    setl_id="S0001",
                    mdtrt_id="M0001",
                    psn_no=PSN_NO,
                    fixmedins_code=FIXMEDINS,
                    visit=VISIT,
                    lines=LINES,
                    now=NOW,
                )
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert through_sqlalchemy == []
    # The statement kinds in order (SQLite traces each row of an executemany, and BEGIN).
    kinds = [
        " ".join(statement.split()[:3]) for statement in seen if not statement.startswith("BEGIN")
    ]
    deduplicated = [kind for n, kind in enumerate(kinds) if n == 0 or kinds[n - 1] != kind]
    if engine.dialect.name == "postgresql":
        # Account and totals locked by one statement (the totals row exists); settlement,
        # lines, debit, totals and the ledger transaction, its entries and the sum of what
        # they stored written by one (settlement.recording, "one round trip").
        assert deduplicated == [
            "SELECT insured_persons.id, insured_persons.retired,",
            "WITH s AS",
        ]
        assert "FOR UPDATE OF personal_accounts, year_to_date_totals" in seen[0]
        (write,) = (statement for statement in seen if statement.startswith("WITH s AS"))
        for part in ("INSERT INTO settlement_lines", "UPDATE personal_accounts SET",
                     "UPDATE year_to_date_totals SET", "INSERT INTO ledger_transactions",
                     "INSERT INTO ledger_entries", "SELECT COALESCE(SUM(CASE WHEN"):  # fmt: skip
            assert part in write, part
        return
    assert deduplicated == [
        "SELECT insured_persons.id, insured_persons.retired,",
        "SELECT self_pay_band_consumed_fen, deductible_consumed_fen,",
        "INSERT INTO settlements",
        "INSERT INTO settlement_lines",
        "UPDATE personal_accounts SET",
        "UPDATE year_to_date_totals SET",
        "INSERT INTO ledger_transactions",
        "INSERT INTO ledger_entries",
        "SELECT COALESCE(SUM(CASE WHEN",
    ]


# PostgreSQL only (SQLite's triggers cannot change the row being inserted): not a skip.
@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_ledger_sum_is_of_what_was_stored_even_in_one_statement(engine: Engine) -> None:
    """On PostgreSQL the ledger's entries are written and summed inside the settlement's one
    statement; the sum is still of what was stored (here a trigger changes an amount on the
    way), so an imbalance stops the settlement and nothing is committed."""
    _seed(engine, totals=YearToDate(20000, 0, 16000))
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE FUNCTION skew_entry() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.amount_fen := NEW.amount_fen + 1; RETURN NEW; END $$"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER skew BEFORE INSERT ON ledger_entries "
            "FOR EACH ROW WHEN (NEW.account LIKE '%%:fees') EXECUTE FUNCTION skew_entry()"
        )
    with (
        pytest.raises(AssertionError, match="settle:S0001"),
        Session(engine) as session,
        session.begin(),
    ):
        record_settlement(
            session,
            policies=book(),
            catalogue=demo_catalogue(),
            setl_id="S0001",
            mdtrt_id="M0001",
            psn_no=PSN_NO,
            fixmedins_code=FIXMEDINS,
            visit=VISIT,
            lines=LINES,
            now=NOW,
        )
    with Session(engine) as session:
        assert session.scalars(select(SettlementRow)).all() == []
