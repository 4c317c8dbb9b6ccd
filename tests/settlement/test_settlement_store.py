"""settlement.store and settlement.ledger against the settlement migrations, on SQLite and (when
reachable) PostgreSQL: the migrated schema equals the models, and the database itself
refuses overdrafts, inexact splits, duplicate keys, double postings and edited ledger rows."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from settlement_testkit import EMPLOYEE_30, LATER_DAY, consultation, run
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.orm import Session

import settlement
import settlement.crossprov.store  # its tables are on the settlement MetaData
from settlement import errors
from settlement.claim import ClaimLine, Visit
from settlement.idempotency import (
    DEFAULT_TTL,
    IdempotencyOutcome,
    begin_request,
    finish_request,
    lookup_request,
    release_request,
    store_response,
)
from settlement.ledger import (
    FUND_POOLING_ACCOUNT,
    Posting,
    account_balance_fen,
    institution_account,
    person_account,
    post_transaction,
    reversal_postings,
    settlement_postings,
    unbalanced_transactions,
)
from settlement.policy import HospitalLevel, VisitType
from settlement.recording import cancel_settlement, record_settlement
from settlement.result import SettlementResult
from settlement.store import (
    IdempotencyKey,
    IdempotencyStatus,
    InsuredPersonRow,
    LedgerEntry,
    LedgerSide,
    PersonalAccount,
    SettlementRow,
    SettlementStatus,
    YearToDateTotals,
    metadata,
)

NOW = dt.datetime(2024, 6, 1, 9, 30, tzinfo=dt.UTC)
MIGRATION = "settlement.migrations.versions.st0001_settlement_ledger"
# The settlement branch in order; upgrade runs them forwards, downgrade backwards.
BRANCH = (
    MIGRATION,
    "settlement.migrations.versions.st0002_settlement_api",
    "settlement.migrations.versions.st0003_cross_province",
    "settlement.migrations.versions.st0004_settlement_day_indexes",
    "settlement.migrations.versions.st0005_admission_remote_discharge",
    "settlement.migrations.versions.st0006_remote_settlements_stay_index",
    "settlement.migrations.versions.st0007_registered_visits",
    "settlement.migrations.versions.st0008_admission_discharge_date",
    "settlement.migrations.versions.st0009_year_end_rollover",
    "settlement.migrations.versions.st0010_remote_setl_time_utc",
)
ST0005 = BRANCH.index("settlement.migrations.versions.st0005_admission_remote_discharge")


def _migration() -> ModuleType:
    return importlib.import_module(MIGRATION)


def _run_migration(engine: Engine, step: str) -> None:
    modules = [importlib.import_module(name) for name in BRANCH]
    if step == "downgrade":
        modules.reverse()
    with (
        engine.begin() as connection,
        Operations.context(MigrationContext.configure(connection)),
    ):
        for module in modules:
            getattr(module, step)()


def _sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database migrated to the branch head (not create_all: the migrations
    are what is tested)."""
    if request.param == "sqlite":
        engine = _sqlite_engine(tmp_path / "settlement.db")
    else:
        engine = create_engine(request.getfixturevalue("postgres_schema_url"))
    _run_migration(engine, "upgrade")
    yield engine
    engine.dispose()


def test_revision_starts_the_settlement_branch() -> None:
    module = _migration()
    assert module.revision == "st0001"
    assert module.down_revision is None
    assert module.branch_labels == ("settlement",)
    versions = Path(settlement.__file__).parent / "migrations" / "versions"
    assert [path.name for path in versions.glob("st0001_*.py")] == ["st0001_settlement_ledger.py"]


def test_migrated_schema_equals_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_downgrade_removes_everything(engine: Engine) -> None:
    _run_migration(engine, "downgrade")
    assert set(sa.inspect(engine).get_table_names()) & set(metadata.tables) == set()


def _person(session: Session, *, current_year_fen: int = 0, past_years_fen: int = 0) -> int:
    person = InsuredPersonRow(
        psn_no="31000000000000000001",
        citizen_id="310101199001010011",
        name="张三",
        birth_date=dt.date(1990, 1, 1),
        retired=False,
    )
    session.add(person)
    session.flush()
    session.add(
        PersonalAccount(
            person_id=person.id,
            account_year=2024,
            current_year_fen=current_year_fen,
            past_years_fen=past_years_fen,
        )
    )
    session.flush()
    return person.id


def _settlement_row(person_id: int, **overrides: Any) -> SettlementRow:
    result = run([consultation(100000)], person=EMPLOYEE_30, day=LATER_DAY, past_years_fen=30000)
    values: dict[str, Any] = {
        "setl_id": "S0001",
        "mdtrt_id": "M0001",
        "person_id": person_id,
        "fixmedins_code": "H31010100001",
        "insutype": "310",
        "visit_type": "outpatient",
        "hospital_level": 1,
        "visit_date": LATER_DAY,
        "setl_time": NOW,
        "policy_id": result.policy_id,
        "status": SettlementStatus.SETTLED,
        "medfee_sumamt": result.medfee_sumamt,
        "fulamt_ownpay_amt": result.fulamt_ownpay_amt,
        "preselfpay_amt": result.preselfpay_amt,
        "inscp_scp_amt": result.inscp_scp_amt,
        "act_pay_dedc": result.act_pay_dedc,
        "hifp_pay": result.hifp_pay,
        "pool_prop_selfpay": result.pool_prop_selfpay,
        "hifob_pay": result.hifob_pay,
        "fund_pay_sumamt": result.fund_pay_sumamt,
        "acct_pay": result.acct_pay,
        "acct_pay_current_year_fen": result.acct_detail.current_year_fen,
        "acct_pay_past_years_fen": result.acct_detail.past_years_fen,
        "psn_cash_pay": result.psn_cash_pay,
        "balc": result.balc,
        "self_pay_band_added_fen": result.act_pay_dedc,
        "deductible_added_fen": 0,
    }
    values.update(overrides)
    return SettlementRow(**values)


def test_settle_post_and_cancel_leave_the_ledger_balanced(engine: Engine) -> None:
    # Later table, ≤44, L1, 1,000.00: band 50000, fund 80 % of 50000 = 40000, patient 60000 of
    # which the past-years account pays 30000 and cash 30000.
    result = run([consultation(100000)], person=EMPLOYEE_30, day=LATER_DAY, past_years_fen=30000)
    assert (result.hifp_pay, result.acct_pay, result.psn_cash_pay) == (40000, 30000, 30000)
    with Session(engine) as session, session.begin():
        person_id = _person(session, past_years_fen=30000)
        row = _settlement_row(person_id)
        session.add(row)
        session.flush()
        postings = settlement_postings(
            result, psn_no="31000000000000000001", fixmedins_code="H31010100001"
        )
        post_transaction(
            session,
            txn_id="T-SETTLE-1",
            kind="settle",
            postings=postings,
            posted_at=NOW,
            settlement_id=row.id,
        )
        fees = institution_account("H31010100001", "fees")
        assert account_balance_fen(session, FUND_POOLING_ACCOUNT) == 40000
        assert (
            account_balance_fen(session, person_account("31000000000000000001", "past_years"))
            == 30000
        )
        assert account_balance_fen(session, institution_account("H31010100001", "cash")) == 30000
        assert account_balance_fen(session, fees) == -100000
        # Cancel: the mirror transaction, every account back to zero, nothing edited.
        post_transaction(
            session,
            txn_id="T-CANCEL-1",
            kind="cancel",
            postings=reversal_postings(session, "T-SETTLE-1"),
            posted_at=NOW,
            settlement_id=row.id,
            reverses_txn_id="T-SETTLE-1",
        )
        assert account_balance_fen(session, fees) == 0
        assert account_balance_fen(session, FUND_POOLING_ACCOUNT) == 0
        assert unbalanced_transactions(session) == []
        assert session.scalar(select(sa.func.count()).select_from(LedgerEntry)) == 8


def test_unbalanced_transaction_is_refused_before_writing(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        bad = [
            Posting(FUND_POOLING_ACCOUNT, LedgerSide.DEBIT, 100),
            Posting(institution_account("H1", "fees"), LedgerSide.CREDIT, 99),
        ]
        with pytest.raises(errors.LedgerUnbalanced) as info:
            post_transaction(session, txn_id="T1", kind="settle", postings=bad, posted_at=NOW)
        assert info.value.code == "LEDGER_UNBALANCED"
        for amount_fen in (0, -5):
            with pytest.raises(errors.LedgerUnbalanced):
                post_transaction(
                    session,
                    txn_id="T2",
                    kind="settle",
                    postings=[Posting("a", LedgerSide.DEBIT, amount_fen)],
                    posted_at=NOW,
                )
        assert session.scalar(select(sa.func.count()).select_from(LedgerEntry)) == 0


def _expect_refused(engine: Engine, statement: Any, params: dict[str, Any] | None = None) -> None:
    with pytest.raises((IntegrityError, DatabaseError)), engine.begin() as connection:
        connection.execute(statement, params or {})


def test_database_refuses_what_must_never_happen(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        person_id = _person(session, current_year_fen=100, past_years_fen=0)
        row = _settlement_row(person_id)
        session.add(row)
        session.flush()
        settlement_id = row.id
        post_transaction(
            session,
            txn_id="T-SETTLE-1",
            kind="settle",
            postings=[
                Posting("fund:pooling", LedgerSide.DEBIT, 7),
                Posting("institution:H1:fees", LedgerSide.CREDIT, 7),
            ],
            posted_at=NOW,
            settlement_id=settlement_id,
        )
    # An overdraft: the CHECK stops it even if two settlements race.
    _expect_refused(
        engine,
        sa.update(PersonalAccount).values(current_year_fen=PersonalAccount.current_year_fen - 101),
    )
    # A split that does not add up.
    _expect_refused(
        engine,
        sa.update(SettlementRow).values(psn_cash_pay=SettlementRow.psn_cash_pay + 1),
    )
    # A second "settle" posting of the same settlement.
    _expect_refused(
        engine,
        sa.text(
            "INSERT INTO ledger_transactions (txn_id, kind, settlement_id, posted_at) "
            "VALUES ('T-SETTLE-2', 'settle', :sid, :now)"
        ),
        {"sid": settlement_id, "now": NOW},
    )
    # A zero or negative ledger amount.
    _expect_refused(
        engine,
        sa.text(
            "INSERT INTO ledger_entries (txn_id, account, side, amount_fen) "
            "VALUES ('T-SETTLE-1', 'x', 'debit', 0)"
        ),
    )
    # An unknown side.
    _expect_refused(
        engine,
        sa.text(
            "INSERT INTO ledger_entries (txn_id, account, side, amount_fen) "
            "VALUES ('T-SETTLE-1', 'x', 'sideways', 5)"
        ),
    )
    # Editing or deleting a posted entry (append-only triggers).
    _expect_refused(engine, sa.text("UPDATE ledger_entries SET amount_fen = 8"))
    _expect_refused(engine, sa.text("DELETE FROM ledger_entries"))
    with Session(engine) as session:
        assert unbalanced_transactions(session) == []
        assert account_balance_fen(session, "fund:pooling") == 7


_ADMIT = sa.text(
    "INSERT INTO admissions (admission_id, person_id, fixmedins_code, admission_date, status, "
    "line_count, setl_id, created_at) VALUES (:aid, :pid, 'H31010100001', :day, :status, 1, "
    ":setl_id, :now)"
)
REMOTE_MSGID = "H31010100001202406011730000002"  # wire.make_msgid's 30 characters


def _admit(
    connection: sa.Connection, aid: str, person_id: int, status: str, setl_id: str | None = None
) -> None:
    params = {"aid": aid, "pid": person_id, "day": LATER_DAY, "status": status}
    connection.execute(_ADMIT, {**params, "setl_id": setl_id, "now": NOW})


def _person_and_settlement(engine: Engine) -> int:
    with Session(engine) as session, session.begin():
        person_id = _person(session)
        session.add(_settlement_row(person_id))
    return person_id


def test_an_admission_is_discharged_by_exactly_one_settlement_local_or_remote(
    engine: Engine,
) -> None:
    person_id = _person_and_settlement(engine)
    with engine.begin() as connection:
        _admit(connection, "A-OPEN", person_id, "open")
        _admit(connection, "A-LOCAL", person_id, "discharged", "S0001")
        _admit(connection, "A-REMOTE", person_id, "open")
        connection.execute(
            sa.text(
                "UPDATE admissions SET status = 'discharged', remote_msgid = :m "
                "WHERE admission_id = 'A-REMOTE'"
            ),
            {"m": REMOTE_MSGID},
        )
    remote_msgid = sa.text("UPDATE admissions SET remote_msgid = :m WHERE admission_id = :aid")
    # Discharged with no settlement at all.
    _expect_refused(
        engine, sa.text("UPDATE admissions SET status = 'discharged' WHERE admission_id = 'A-OPEN'")
    )
    # Open, yet holding a settlement of the hub.
    _expect_refused(engine, remote_msgid, {"m": "H31010100001202406011730000004", "aid": "A-OPEN"})
    # Both a local and a remote settlement.
    _expect_refused(engine, remote_msgid, {"m": "H31010100001202406011730000004", "aid": "A-LOCAL"})
    # One hub message closes one stay.
    _expect_refused(
        engine,
        sa.text(
            "UPDATE admissions SET status = 'discharged', remote_msgid = :m "
            "WHERE admission_id = 'A-OPEN'"
        ),
        {"m": REMOTE_MSGID},
    )
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT admission_id, status, setl_id, remote_msgid FROM admissions "
                "ORDER BY admission_id"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("A-LOCAL", "discharged", "S0001", None),
        ("A-OPEN", "open", None, None),
        ("A-REMOTE", "discharged", None, REMOTE_MSGID),
    ]


def _migrate(engine: Engine, modules: list[str], step: str) -> None:
    with (
        engine.begin() as connection,
        Operations.context(MigrationContext.configure(connection)),
    ):
        for name in modules:
            getattr(importlib.import_module(name), step)()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_at_st0004(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database migrated up to st0004: st0005 runs over stored rows."""
    if request.param == "sqlite":
        engine = _sqlite_engine(tmp_path / "settlement.db")
    else:
        engine = create_engine(request.getfixturevalue("postgres_schema_url"))
    _migrate(engine, list(BRANCH[:ST0005]), "upgrade")
    yield engine
    engine.dispose()


def test_st0005_keeps_stored_stays_and_its_downgrade_refuses_remote_discharges(
    engine_at_st0004: Engine,
) -> None:
    engine, st0005 = engine_at_st0004, [BRANCH[ST0005]]
    later = list(BRANCH[ST0005 + 1 :])  # so that the schema compares with today's models
    person_id = _person_and_settlement(engine)
    with engine.begin() as connection:
        _admit(connection, "A-OPEN", person_id, "open")
        _admit(connection, "A-LOCAL", person_id, "discharged", "S0001")
    _migrate(engine, st0005 + later, "upgrade")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    _migrate(engine, later[::-1], "downgrade")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE admissions SET status = 'discharged', remote_msgid = :m "
                "WHERE admission_id = 'A-OPEN'"
            ),
            {"m": REMOTE_MSGID},
        )
    # Refused, and nothing changed: the column and its value are still there.
    with pytest.raises(RuntimeError, match="1 admission"):
        _migrate(engine, st0005, "downgrade")
    with engine.connect() as connection:
        assert connection.execute(
            sa.text("SELECT remote_msgid FROM admissions WHERE admission_id = 'A-OPEN'")
        ).scalar_one() == (REMOTE_MSGID)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE admissions SET status = 'open', remote_msgid = NULL "
                "WHERE admission_id = 'A-OPEN'"
            )
        )
    _migrate(engine, st0005, "downgrade")
    columns = {column["name"] for column in sa.inspect(engine).get_columns("admissions")}
    assert "remote_msgid" not in columns
    with engine.connect() as connection:
        assert (
            connection.execute(
                sa.text("SELECT count(*) FROM admissions WHERE status = 'discharged'")
            ).scalar_one()
            == 1
        )
    # The narrow CHECK is back: discharged needs a local setl_id again.
    _expect_refused(
        engine, sa.text("UPDATE admissions SET status = 'discharged' WHERE admission_id = 'A-OPEN'")
    )


def test_idempotency_key_is_unique_per_client_and_done_needs_a_response(engine: Engine) -> None:
    def key(client_id: str, **overrides: Any) -> IdempotencyKey:
        values: dict[str, Any] = {
            "client_id": client_id,
            "idempotency_key": "k-1",
            "request_sha256": "0" * 64,
            "status": IdempotencyStatus.IN_PROGRESS,
            "created_at": NOW,
            "expires_at": NOW + dt.timedelta(hours=24),
        }
        values.update(overrides)
        return IdempotencyKey(**values)

    with Session(engine) as session, session.begin():
        session.add_all([key("terminal-a"), key("terminal-b")])  # same key, other client: fine
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        session.add(key("terminal-a"))
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        session.add(key("terminal-c", status=IdempotencyStatus.DONE))  # done, no response
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        session.add(key("terminal-d", request_sha256="abc"))
    with Session(engine) as session, session.begin():
        stored = session.get(IdempotencyKey, ("terminal-a", "k-1"))
        assert stored is not None
        stored.status = IdempotencyStatus.DONE
        stored.response_status = 200
        stored.response_body = '{"setl_id": "S0001"}'
    with Session(engine) as session:
        stored = session.get(IdempotencyKey, ("terminal-a", "k-1"))
        assert stored is not None
        assert stored.status is IdempotencyStatus.DONE


def test_create_all_also_installs_the_append_only_triggers(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path / "create_all.db")
    metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        post_transaction(
            session,
            txn_id="T1",
            kind="adjust",
            postings=[Posting("a", LedgerSide.DEBIT, 1), Posting("b", LedgerSide.CREDIT, 1)],
            posted_at=NOW,
        )
    _expect_refused(engine, sa.text("DELETE FROM ledger_entries"))
    metadata.drop_all(engine)
    engine.dispose()


def test_a_zero_claim_is_refused_before_any_posting() -> None:
    # A claim of 0 is not a settlement (CLAIM_EMPTY): nothing reaches the ledger.
    with pytest.raises(errors.ClaimEmpty):
        run([ClaimLine("DEMO-A-001", 1, 0)], person=EMPLOYEE_30, day=LATER_DAY)


# --- recording and cancelling through the store ---------------------------------------------


def _seed_person(engine: Engine, *, current_year_fen: int, past_years_fen: int) -> None:
    with Session(engine) as session, session.begin():
        _person(session, current_year_fen=current_year_fen, past_years_fen=past_years_fen)


def _record(engine: Engine, setl_id: str, amount_fen: int) -> SettlementResult:
    from settlement_testkit import book, demo_catalogue

    with Session(engine) as session, session.begin():
        return record_settlement(
            session,
            policies=book(),
            catalogue=demo_catalogue(),
            setl_id=setl_id,
            mdtrt_id=f"M-{setl_id}",
            psn_no="31000000000000000001",
            fixmedins_code="H31010100001",
            visit=Visit(LATER_DAY, VisitType.OUTPATIENT, HospitalLevel.LEVEL_1),
            lines=[consultation(amount_fen)],
            now=NOW,
        )


def _state(engine: Engine) -> tuple[int, int, int, int]:
    with Session(engine) as session:
        account = session.scalars(select(PersonalAccount)).one()
        totals = session.scalars(select(YearToDateTotals)).one()
        return (
            account.current_year_fen,
            account.past_years_fen,
            totals.self_pay_band_consumed_fen,
            totals.pooling_fund_paid_fen,
        )


def test_record_then_cancel_through_the_store(engine: Engine) -> None:
    # Person born 1990, later table, L1. Accounts: current 20000, past 10000.
    _seed_person(engine, current_year_fen=20000, past_years_fen=10000)
    # 1st: 1,000.00 → current pays 20000; band 50000; co-pay 30000 × 80 % = 24000 fund,
    # patient 6000; share 56000, past pays 10000; cash 46000.
    first = _record(engine, "S1", 100000)
    assert (first.hifp_pay, first.acct_pay, first.psn_cash_pay) == (24000, 30000, 46000)
    assert _state(engine) == (0, 0, 50000, 24000)
    # 2nd: 100.00 → band full, accounts empty: fund 8000, cash 2000.
    second = _record(engine, "S2", 10000)
    assert (second.act_pay_dedc, second.hifp_pay, second.psn_cash_pay) == (0, 8000, 2000)
    assert _state(engine) == (0, 0, 50000, 32000)
    # Cancel the 1st: the accounts and the year's totals get back what it took.
    with Session(engine) as session, session.begin():
        cancel_settlement(session, setl_id="S1", now=NOW)
    assert _state(engine) == (20000, 10000, 0, 8000)
    with Session(engine) as session:
        assert unbalanced_transactions(session) == []
        assert account_balance_fen(session, FUND_POOLING_ACCOUNT) == 8000
        assert account_balance_fen(session, institution_account("H31010100001", "fees")) == -10000
        row = session.scalars(select(SettlementRow).where(SettlementRow.setl_id == "S1")).one()
        assert row.status is SettlementStatus.CANCELLED
    with pytest.raises(errors.SettlementAlreadyCancelled), Session(engine) as session:
        cancel_settlement(session, setl_id="S1", now=NOW)
    with pytest.raises(errors.SettlementNotFound), Session(engine) as session:
        cancel_settlement(session, setl_id="S9", now=NOW)


def test_record_for_an_unknown_person(engine: Engine) -> None:
    with pytest.raises(errors.PersonNotFound) as info:
        _record(engine, "S1", 100)
    assert info.value.code == "PERSON_NOT_FOUND"
    assert "3100000000" not in info.value.message  # psn_no masked


def test_bad_claim_through_the_store_changes_nothing(engine: Engine) -> None:
    _seed_person(engine, current_year_fen=20000, past_years_fen=0)
    with pytest.raises(errors.InvalidAmount):
        _record(engine, "S1", -1)
    with Session(engine) as session:
        assert session.scalar(select(sa.func.count()).select_from(SettlementRow)) == 0
        assert session.scalars(select(PersonalAccount)).one().current_year_fen == 20000


# --- idempotency keys -----------------------------------------------------------------------

HASH_A, HASH_B = "a" * 64, "b" * 64


def _begin(engine: Engine, request_sha256: str, now: dt.datetime = NOW) -> IdempotencyOutcome:
    with Session(engine) as session, session.begin():
        return begin_request(
            session,
            client_id="terminal-1",
            idempotency_key="key-1",
            request_sha256=request_sha256,
            now=now,
        )


def test_idempotency_new_in_progress_mismatch_replay_expiry(engine: Engine) -> None:
    assert _begin(engine, HASH_A) == IdempotencyOutcome(replay=False)
    with pytest.raises(errors.IdempotencyKeyInUse) as in_use:
        _begin(engine, HASH_A)
    assert in_use.value.code == "IDEMPOTENCY_KEY_IN_USE"
    with pytest.raises(errors.IdempotencyKeyReused) as reused:
        _begin(engine, HASH_B)
    assert reused.value.code == "IDEMPOTENCY_KEY_REUSED"
    with Session(engine) as session, session.begin():
        finish_request(
            session,
            client_id="terminal-1",
            idempotency_key="key-1",
            response_status=200,
            response_body='{"setl_id":"S1"}',
        )
    assert _begin(engine, HASH_A) == IdempotencyOutcome(
        replay=True, response_status=200, response_body='{"setl_id":"S1"}'
    )
    with pytest.raises(errors.IdempotencyKeyReused):
        _begin(engine, HASH_B)
    # After the TTL the key is free again.
    assert _begin(engine, HASH_B, NOW + DEFAULT_TTL) == IdempotencyOutcome(replay=False)


def _lookup(engine: Engine, request_sha256: str, now: dt.datetime = NOW) -> Any:
    with Session(engine) as session, session.begin():
        return lookup_request(
            session,
            client_id="terminal-1",
            idempotency_key="key-1",
            request_sha256=request_sha256,
            now=now,
        )


def _store(engine: Engine, request_sha256: str, body: str, now: dt.datetime = NOW) -> None:
    with Session(engine) as session, session.begin():
        store_response(
            session,
            client_id="terminal-1",
            idempotency_key="key-1",
            request_sha256=request_sha256,
            now=now,
            response_status=201,
            response_body=body,
        )


def test_idempotency_in_one_transaction_new_replay_mismatch_expiry(engine: Engine) -> None:
    assert _lookup(engine, HASH_A) is None  # new: nothing written by looking
    assert _lookup(engine, HASH_A) is None
    _store(engine, HASH_A, '{"setl_id":"S1"}')
    assert _lookup(engine, HASH_A) == IdempotencyOutcome(
        replay=True, response_status=201, response_body='{"setl_id":"S1"}'
    )
    with pytest.raises(errors.IdempotencyKeyReused):
        _lookup(engine, HASH_B)
    # A second answer under a taken key is refused by the primary key, not overwritten.
    with pytest.raises(IntegrityError):
        _store(engine, HASH_A, '{"setl_id":"S2"}')
    assert _lookup(engine, HASH_A).response_body == '{"setl_id":"S1"}'
    # After the TTL the key counts as new (the stale row is deleted) and can be stored again.
    later = NOW + DEFAULT_TTL
    assert _lookup(engine, HASH_B, later) is None
    with Session(engine) as session, session.begin():
        assert lookup_request(
            session, client_id="terminal-1", idempotency_key="key-1", request_sha256=HASH_B,
            now=later,
        ) is None  # fmt: skip
        store_response(
            session,
            client_id="terminal-1",
            idempotency_key="key-1",
            request_sha256=HASH_B,
            now=later,
            response_status=201,
            response_body='{"setl_id":"S3"}',
        )
    assert _lookup(engine, HASH_B, later).response_body == '{"setl_id":"S3"}'


def test_idempotency_lookup_sees_a_two_transaction_runner_as_in_use(engine: Engine) -> None:
    assert not _begin(engine, HASH_A).replay  # IN_PROGRESS, committed (begin_request's way)
    with pytest.raises(errors.IdempotencyKeyInUse):
        _lookup(engine, HASH_A)


def test_idempotency_release_lets_the_retry_run(engine: Engine) -> None:
    assert not _begin(engine, HASH_A).replay
    with Session(engine) as session, session.begin():
        release_request(session, client_id="terminal-1", idempotency_key="key-1")
    assert not _begin(engine, HASH_A).replay


# --- concurrency (PostgreSQL: real row locks and unique-key races) ---------------------------


@pytest.mark.postgres
def test_racing_settlements_never_overdraw_and_the_ledger_balances(
    postgres_schema_url: str,
) -> None:
    import threading

    engine = create_engine(postgres_schema_url, pool_size=4)
    _run_migration(engine, "upgrade")
    # 35 fen in the current-year account; 8 settlements of 10 fen race for it. The year's
    # totals row exists already, so every settlement serialises on the row locks.
    _seed_person(engine, current_year_fen=35, past_years_fen=0)
    with Session(engine) as session, session.begin():
        person_id = session.scalars(select(InsuredPersonRow.id)).one()
        session.add(
            YearToDateTotals(
                person_id=person_id,
                year=LATER_DAY.year,
                self_pay_band_consumed_fen=0,
                deductible_consumed_fen=0,
                pooling_fund_paid_fen=0,
            )
        )
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        barrier.wait()
        try:
            _record(engine, f"S{number}", 10)
        except BaseException as exc:  # collected, then asserted in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    with Session(engine) as session:
        account = session.scalars(select(PersonalAccount)).one()
        paid = session.scalar(select(sa.func.sum(SettlementRow.acct_pay_current_year_fen)))
        # 10 + 10 + 10 + 5 + 0 + 0 + 0 + 0: the account is emptied exactly, never overdrawn.
        assert paid == 35
        assert account.current_year_fen == 0
        assert session.scalar(select(sa.func.count()).select_from(SettlementRow)) == 8
        assert unbalanced_transactions(session) == []
    engine.dispose()


@pytest.mark.postgres
def test_racing_requests_with_one_idempotency_key_run_once(postgres_schema_url: str) -> None:
    import threading

    engine = create_engine(postgres_schema_url, pool_size=6)
    _run_migration(engine, "upgrade")
    barrier = threading.Barrier(6)
    outcomes: list[object] = []

    def worker() -> None:
        barrier.wait()
        try:
            outcomes.append(_begin(engine, HASH_A))
        except errors.IdempotencyKeyInUse as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count(IdempotencyOutcome(replay=False)) == 1
    assert outcomes.count("IDEMPOTENCY_KEY_IN_USE") == 5
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_at_st0009(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database migrated up to st0009: st0010 repairs stored rows."""
    if request.param == "sqlite":
        engine = _sqlite_engine(tmp_path / "settlement.db")
    else:
        engine = create_engine(request.getfixturevalue("postgres_schema_url"))
    _migrate(engine, list(BRANCH[:-1]), "upgrade")
    yield engine
    engine.dispose()


def test_st0010_stores_a_hub_settle_time_stored_in_beijing_time_as_utc(
    engine_at_st0009: Engine,
) -> None:
    from dbkit import as_utc
    from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus

    assert BRANCH[-1].endswith("st0010_remote_setl_time_utc")
    beijing = dt.timezone(dt.timedelta(hours=8))
    at = dt.datetime(2026, 12, 7, 16, 1, 43, tzinfo=beijing)  # after 16:00: the lost hours
    with Session(engine_at_st0009) as session, session.begin():
        for n, setlinfo in enumerate(
            ['{"setl_id": "S1", "setl_time": "2026-12-07 16:01:43"}', '{"setl_id": "S2"}']
        ):
            session.add(
                RemoteSettlementRow(
                    msgid=f"H31000000001202612071601430{n:03d}",
                    infno="2207",
                    route="cross_province",
                    status=RemoteStatus.CONFIRMED,
                    psn_no="320000000000001",
                    insuplc_admdvs="320000",
                    fixmedins_code="H31000000001",
                    mdtrt_id=f"M{n}",
                    visit_type="outpatient",
                    visit_date=at.date(),
                    filing_type="long_term_resident",
                    request_json="{}",
                    created_at=NOW,
                    setlinfo_json=setlinfo,
                    setl_id=f"S{n + 1}",
                    setl_time=at,
                    medfee_sumamt=100,
                    fund_pay_sumamt=60,
                    acct_pay=0,
                    psn_cash_pay=40,
                )
            )
    if engine_at_st0009.dialect.name == "sqlite":
        # What the code before st0010 stored on SQLite: Beijing's wall clock, zone dropped
        # (today's dbkit.UtcDateTime column stores UTC, so it is written past the type).
        with engine_at_st0009.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE remote_settlements SET setl_time = '2026-12-07 16:01:43.000000'"
            )
    _migrate(engine_at_st0009, [BRANCH[-1]], "upgrade")
    with Session(engine_at_st0009) as session:
        rows = session.execute(select(RemoteSettlementRow.setl_id, RemoteSettlementRow.setl_time))
        stored = {row.setl_id: row.setl_time for row in rows}
    assert as_utc(stored["S1"]) == at  # the instant, on both databases
    if engine_at_st0009.dialect.name == "sqlite":
        # No readable setl_time in its setlinfo: left as it was (Beijing's wall clock, read
        # as UTC).
        assert stored["S2"] == at.replace(tzinfo=dt.UTC)
    else:
        assert stored["S2"] == at
