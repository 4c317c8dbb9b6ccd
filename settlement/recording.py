"""Record a settlement, or cancel one, in the caller's session (one unit of work each).

:func:`record_settlement` loads the person's accounts and year-to-date totals (locked FOR
UPDATE where the database can), runs the pure engine, and writes in the same transaction:
the settlement and its lines, the new balances and totals, and one balanced ledger
transaction. :func:`cancel_settlement` (撤销结算) posts the mirror ledger transaction, gives
back the account money and the accumulator amounts, and marks the settlement cancelled; a
partial refund is a cancel followed by a new settlement (DOMAIN §4).

Every rule that must hold under concurrency is also a database constraint (settlement.store):
a racing second settlement cannot overdraw an account (CHECK ≥ 0) or post twice (unique).

Settling is the hot path, so :func:`load_holdings` and :func:`write_settlement` run every
statement straight on the driver's cursor (dbkit.DriverSQL and DriverInsert: the
values SQLAlchemy would store, its exceptions, a few µs each instead of tens inside SQLite's
one write lock): one INSERT of the settlement that returns its id, executemany for lines and
ledger entries, relative UPDATEs only for what changed, never an ORM unit of work (on
PostgreSQL, where each statement is a network round trip, the settlement, its lines, the debit,
the totals and the ledger transaction go as ONE statement, and account and totals are locked
by one); callers
that already read the person in the same transaction hand it over as :class:`Holdings`
instead of reading it again. Cancelling is rare and stays on the ORM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from sqlalchemy import Table, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from dbkit import MAX_MULTI_ROWS, DriverInsert, DriverSQL
from settlement.catalogue import Catalogue
from settlement.claim import AccountBalances, ClaimLine, InsuredPerson, Visit, YearToDate
from settlement.engine import settle
from settlement.errors import PersonNotFound, SettlementAlreadyCancelled, SettlementNotFound
from settlement.ledger import (
    Posting,
    TransactionClauses,
    person_account,
    post_transaction,
    reversal_postings,
    settlement_postings,
    transaction_clauses,
    write_transaction,
)
from settlement.policy import Policy, PolicyBook
from settlement.result import SettlementResult
from settlement.store import (
    InsuredPersonRow,
    LedgerSide,
    LedgerTransaction,
    PersonalAccount,
    SettlementLineRow,
    SettlementRow,
    SettlementStatus,
    YearToDateTotals,
)

__all__ = [
    "Holdings",
    "WrittenSettlement",
    "cancel_settlement",
    "load_holdings",
    "record_settlement",
    "write_settlement",
    "year_to_date_of",
]


@dataclass(frozen=True, slots=True)
class Holdings:
    """What a settlement reads before it runs the engine: the person, their balances and
    their year's totals, read (and on PostgreSQL locked, see :func:`load_holdings`) inside the
    settling transaction. ``totals_exist`` tells whether the year's totals row exists yet."""

    person_id: int
    psn_no: str
    person: InsuredPerson
    balances: AccountBalances
    year_to_date: YearToDate
    totals_exist: bool
    # The year the current-year balance belongs to (settlement.rollover: at year end it rolls
    # into the past-years account).
    account_year: int


@dataclass(frozen=True, slots=True)
class WrittenSettlement:
    """The settlements row :func:`write_settlement` inserted, as plain values (building a
    detached ORM row for the answer cost more than the INSERT)."""

    id: int
    setl_id: str
    mdtrt_id: str
    person_id: int
    fixmedins_code: str
    insutype: str
    visit_type: str
    hospital_level: int
    visit_date: dt.date
    setl_time: dt.datetime
    policy_id: str
    status: SettlementStatus
    medfee_sumamt: int
    fulamt_ownpay_amt: int
    preselfpay_amt: int
    inscp_scp_amt: int
    act_pay_dedc: int
    hifp_pay: int
    pool_prop_selfpay: int
    hifob_pay: int
    fund_pay_sumamt: int
    acct_pay: int
    acct_pay_current_year_fen: int
    acct_pay_past_years_fen: int
    psn_cash_pay: int
    balc: int
    self_pay_band_added_fen: int
    deductible_added_fen: int
    cancelled_at: dt.datetime | None
    cancel_reason: str | None


# Every statement of a settle runs on the driver's cursor (dbkit.DriverSQL and
# DriverInsert: the same values stored and read, the same exceptions, a few µs instead of
# SQLAlchemy's 30–80 per execution inside SQLite's one write lock).
_PERSONS: Final[Table] = InsuredPersonRow.__table__  # type: ignore[assignment]
_ACCOUNTS: Final[Table] = PersonalAccount.__table__  # type: ignore[assignment]
_TOTALS: Final[Table] = YearToDateTotals.__table__  # type: ignore[assignment]
_SETTLEMENTS: Final[Table] = SettlementRow.__table__  # type: ignore[assignment]

_PERSON_ACCOUNT_SQL: Final = (
    "SELECT insured_persons.id, insured_persons.retired, insured_persons.birth_date, "
    "personal_accounts.current_year_fen, personal_accounts.past_years_fen, "
    "personal_accounts.account_year "
    "FROM insured_persons JOIN personal_accounts "
    "ON personal_accounts.person_id = insured_persons.id WHERE insured_persons.psn_no = ?"
)
_PERSON_ACCOUNT_COLUMNS: Final = (
    _PERSONS.c.id,
    _PERSONS.c.retired,
    _PERSONS.c.birth_date,
    _ACCOUNTS.c.current_year_fen,
    _ACCOUNTS.c.past_years_fen,
    _ACCOUNTS.c.account_year,
)
_TOTALS_SQL: Final = (
    "SELECT self_pay_band_consumed_fen, deductible_consumed_fen, pooling_fund_paid_fen "
    "FROM year_to_date_totals WHERE person_id = ? AND year = ?"
)
_TOTALS_COLUMNS: Final = (
    _TOTALS.c.self_pay_band_consumed_fen,
    _TOTALS.c.deductible_consumed_fen,
    _TOTALS.c.pooling_fund_paid_fen,
)
_SELECT_PERSON_ACCOUNT: Final = DriverSQL(
    _PERSON_ACCOUNT_SQL, binds=(_PERSONS.c.psn_no,), results=_PERSON_ACCOUNT_COLUMNS
)
_SELECT_TOTALS: Final = DriverSQL(
    _TOTALS_SQL, binds=(_TOTALS.c.person_id, _TOTALS.c.year), results=_TOTALS_COLUMNS
)
# PostgreSQL only (SQLite has no FOR UPDATE: its writers are serialised anyway).
_LOCK_PERSON_ACCOUNT: Final = DriverSQL(
    f"{_PERSON_ACCOUNT_SQL} FOR UPDATE OF personal_accounts",
    binds=(_PERSONS.c.psn_no,),
    results=_PERSON_ACCOUNT_COLUMNS,
)
_LOCK_TOTALS: Final = DriverSQL(
    f"{_TOTALS_SQL} FOR UPDATE",
    binds=(_TOTALS.c.person_id, _TOTALS.c.year),
    results=_TOTALS_COLUMNS,
)
# PostgreSQL, when the year's totals row exists (every settlement of a year but its first):
# account and totals locked by one statement, in that order (the order of FOR UPDATE OF, the
# order the two statements above take them). Having waited for either lock, PostgreSQL
# re-reads BOTH locked rows at their latest committed versions (EvalPlanQual), which is what
# the two statements were for. No row (no totals yet, or no such person): the two statements.
_LOCK_HOLDINGS: Final = DriverSQL(
    "SELECT insured_persons.id, insured_persons.retired, insured_persons.birth_date, "
    "personal_accounts.current_year_fen, personal_accounts.past_years_fen, "
    "personal_accounts.account_year, year_to_date_totals.self_pay_band_consumed_fen, "
    "year_to_date_totals.deductible_consumed_fen, year_to_date_totals.pooling_fund_paid_fen "
    "FROM insured_persons JOIN personal_accounts "
    "ON personal_accounts.person_id = insured_persons.id "
    "JOIN year_to_date_totals ON year_to_date_totals.person_id = insured_persons.id "
    "AND year_to_date_totals.year = ? WHERE insured_persons.psn_no = ? "
    "FOR UPDATE OF personal_accounts, year_to_date_totals",
    binds=(_TOTALS.c.year, _PERSONS.c.psn_no),
    results=(*_PERSON_ACCOUNT_COLUMNS, *_TOTALS_COLUMNS),
)
# The settlements row's columns, in WrittenSettlement's field order (after its id).
_SETTLEMENT_COLUMNS: Final = tuple(field.name for field in fields(WrittenSettlement))[1:]
_INSERT_SETTLEMENT: Final = DriverInsert(_SETTLEMENTS, _SETTLEMENT_COLUMNS, returning="id")
_INSERT_LINE: Final = DriverInsert(
    SettlementLineRow.__table__,  # type: ignore[arg-type]
    ("settlement_id", "line_no", "catalogue_code", "quantity", "unit_price_fen", "amount_fen"),
)
# Relative updates under the row lock: the CHECK (>= 0) constraints still hold the line even
# if a caller forgot the lock.
_DEBIT_ACCOUNT: Final = DriverSQL(
    "UPDATE personal_accounts SET current_year_fen = current_year_fen - ?, "
    "past_years_fen = past_years_fen - ? WHERE person_id = ?",
    binds=(_ACCOUNTS.c.current_year_fen, _ACCOUNTS.c.past_years_fen, _ACCOUNTS.c.person_id),
)
_ADD_TO_TOTALS: Final = DriverSQL(
    "UPDATE year_to_date_totals SET "
    "self_pay_band_consumed_fen = self_pay_band_consumed_fen + ?, "
    "deductible_consumed_fen = deductible_consumed_fen + ?, "
    "pooling_fund_paid_fen = pooling_fund_paid_fen + ? "
    "WHERE person_id = ? AND year = ?",
    binds=(*_TOTALS_COLUMNS, _TOTALS.c.person_id, _TOTALS.c.year),
)
_INSERT_TOTALS: Final = DriverInsert(
    _TOTALS,
    (
        "person_id",
        "year",
        "self_pay_band_consumed_fen",
        "deductible_consumed_fen",
        "pooling_fund_paid_fen",
    ),
)


_LINES: Final[Table] = SettlementLineRow.__table__  # type: ignore[assignment]
_LINE_COLUMNS: Final = ("line_no", "catalogue_code", "quantity", "unit_price_fen", "amount_fen")
# How the year's totals change in a settlement: not at all, a first row, or added to.
_NO_TOTALS, _NEW_TOTALS, _ADDED_TOTALS = 0, 1, 2
# PostgreSQL: the settlement, its lines, the account debit, the year's totals and the ledger
# transaction in ONE statement (data-modifying WITH clauses), one round trip instead of
# seven. Built per shape (lines ≤ MAX_MULTI_ROWS, debit or not, totals kind, ledger entries:
# 1 to 6 for a settlement): at most 64 × 2 × 3 × 6 statements.
_SETTLEMENT_WRITES: dict[tuple[int, bool, int, int], DriverSQL] = {}


def _settlement_writes(lines: int, debit: bool, totals: int, entries: int) -> DriverSQL:
    """The one-statement write of that shape; its row is (settlement id, accounts debited,
    totals rows written, the ledger entries' stored sum). Same values and constraints as the
    separate statements: each INSERT's and UPDATE's own, so a violated CHECK or key raises
    the same IntegrityError."""
    key = (lines, debit, totals, entries)
    found = _SETTLEMENT_WRITES.get(key)
    if found is not None:
        return found
    marks = ", ".join("?" for _ in _SETTLEMENT_COLUMNS)
    line = "((SELECT id FROM s), " + ", ".join("?" for _ in _LINE_COLUMNS) + ")"  # noqa: S608
    # Identifiers from the table definitions and this module, never from input.
    parts = [
        f"s AS (INSERT INTO settlements ({', '.join(_SETTLEMENT_COLUMNS)}) "  # noqa: S608
        f"VALUES ({marks}) RETURNING id)",
        f"l AS (INSERT INTO settlement_lines (settlement_id, {', '.join(_LINE_COLUMNS)}) "  # noqa: S608
        f"VALUES {', '.join([line] * lines)})",
    ]
    binds: list[Any] = [_SETTLEMENTS.c[name] for name in _SETTLEMENT_COLUMNS]
    binds += [_LINES.c[name] for name in _LINE_COLUMNS] * lines
    if debit:
        parts.append(
            "a AS (UPDATE personal_accounts SET current_year_fen = current_year_fen - ?, "
            "past_years_fen = past_years_fen - ? WHERE person_id = ? RETURNING 1)"
        )
        binds += [_ACCOUNTS.c.current_year_fen, _ACCOUNTS.c.past_years_fen, _ACCOUNTS.c.person_id]
    if totals == _NEW_TOTALS:
        parts.append(
            "t AS (INSERT INTO year_to_date_totals (person_id, year, "
            "self_pay_band_consumed_fen, deductible_consumed_fen, pooling_fund_paid_fen) "
            "VALUES (?, ?, ?, ?, ?) RETURNING 1)"
        )
        binds += [_TOTALS.c.person_id, _TOTALS.c.year, *_TOTALS_COLUMNS]
    elif totals == _ADDED_TOTALS:
        parts.append(
            "t AS (UPDATE year_to_date_totals SET "
            "self_pay_band_consumed_fen = self_pay_band_consumed_fen + ?, "
            "deductible_consumed_fen = deductible_consumed_fen + ?, "
            "pooling_fund_paid_fen = pooling_fund_paid_fen + ? "
            "WHERE person_id = ? AND year = ? RETURNING 1)"
        )
        binds += [*_TOTALS_COLUMNS, _TOTALS.c.person_id, _TOTALS.c.year]
    ledger = transaction_clauses(entries, settlement_id_sql="(SELECT id FROM s)")
    parts += ledger.ctes
    binds += [*ledger.binds, *ledger.sum_binds]
    debited = "(SELECT count(*) FROM a)" if debit else "1"
    written = "(SELECT count(*) FROM t)" if totals != _NO_TOTALS else "1"
    sql = (
        f"WITH {', '.join(parts)} "  # noqa: S608
        f"SELECT id, {debited}, {written}, {ledger.stored_sum} FROM s"
    )
    found = _SETTLEMENT_WRITES[key] = DriverSQL(sql, binds=binds)
    return found


def year_to_date_of(row: Any) -> YearToDate:
    """The year's totals from a row of (band, deductible, fund), or zeros for no row."""
    if row is None:
        return YearToDate()
    return YearToDate(
        self_pay_band_consumed_fen=row.self_pay_band_consumed_fen,
        deductible_consumed_fen=row.deductible_consumed_fen,
        pooling_fund_paid_fen=row.pooling_fund_paid_fen,
    )


def load_holdings(session: Session, *, psn_no: str, year: int) -> Holdings:
    """Read the person's account and the year's totals for settling, FOR UPDATE on PostgreSQL.

    The account row lock is the per-person mutex every settle takes first (a cancel right
    after its settlement row); the totals must be the values the previous holder committed.
    On PostgreSQL one statement locks both when the year's totals row exists (both rows
    locked, so both re-read at their latest versions after a wait: :data:`_LOCK_HOLDINGS`);
    otherwise, and on SQLite, two statements: the account (locked), then the totals read
    after it is held, so under READ COMMITTED they are the committed ones (a joined read
    locking only the account would re-check it but could still see an older totals row).
    """
    connection = session.connection()
    lock = connection.dialect.name == "postgresql"
    if lock:
        both = _LOCK_HOLDINGS.fetchone(connection, (year, psn_no))
        if both is not None:
            return _holdings(psn_no, both[:6], both[6:])
    query = _LOCK_PERSON_ACCOUNT if lock else _SELECT_PERSON_ACCOUNT
    found = query.fetchone(connection, (psn_no,))
    if found is None:
        raise PersonNotFound(f"no insured person with psn_no {psn_no[:4]}… or no account")
    totals_query = _LOCK_TOTALS if lock else _SELECT_TOTALS
    totals = totals_query.fetchone(connection, (found[0], year))
    return _holdings(psn_no, found, totals)


def _holdings(psn_no: str, found: Sequence[Any], totals: Sequence[Any] | None) -> Holdings:
    person_id, retired, birth_date, current_year_fen, past_years_fen, account_year = found
    return Holdings(
        person_id=person_id,
        psn_no=psn_no,
        person=InsuredPerson(retired=retired, birth_date=birth_date),
        balances=AccountBalances(current_year_fen, past_years_fen),
        year_to_date=YearToDate()
        if totals is None
        else YearToDate(
            self_pay_band_consumed_fen=totals[0],
            deductible_consumed_fen=totals[1],
            pooling_fund_paid_fen=totals[2],
        ),
        totals_exist=totals is not None,
        account_year=account_year,
    )


def record_settlement(
    session: Session,
    *,
    policies: PolicyBook,
    catalogue: Catalogue,
    setl_id: str,
    mdtrt_id: str,
    psn_no: str,
    fixmedins_code: str,
    visit: Visit,
    lines: Sequence[ClaimLine],
    now: dt.datetime,
) -> SettlementResult:
    """Settle and write everything in the caller's transaction; return the engine's result."""
    holdings = load_holdings(session, psn_no=psn_no, year=visit.visit_date.year)
    _row, result = write_settlement(
        session,
        holdings=holdings,
        policy=policies.for_date(visit.visit_date),
        catalogue=catalogue,
        setl_id=setl_id,
        mdtrt_id=mdtrt_id,
        fixmedins_code=fixmedins_code,
        visit=visit,
        lines=lines,
        now=now,
    )
    return result


def write_settlement(
    session: Session,
    *,
    holdings: Holdings,
    policy: Policy,
    catalogue: Catalogue,
    setl_id: str,
    mdtrt_id: str,
    fixmedins_code: str,
    visit: Visit,
    lines: Sequence[ClaimLine],
    now: dt.datetime,
) -> tuple[WrittenSettlement, SettlementResult]:
    """Run the engine on ``holdings`` (read by :func:`load_holdings` or an equivalent read
    in this transaction) and write the settlement, its lines, the balances, the year's totals
    and the ledger transaction. Returns the written row's values (with its ``id``) and the
    engine's result.

    On the driver's cursor, no ORM unit of work: one INSERT returning the id, one
    executemany per kind of line, relative UPDATEs only for what changed (a cash-only
    settlement leaves the account alone), the ledger through
    :func:`settlement.ledger.write_transaction`; on PostgreSQL all of it in one statement
    (the ledger's part from :func:`settlement.ledger.transaction_clauses`).
    """
    before = holdings.year_to_date
    result = settle(
        lines=lines,
        person=holdings.person,
        visit=visit,
        policy=policy,
        catalogue=catalogue,
        year_to_date=before,
        balances=holdings.balances,
    )
    after = result.year_to_date_after
    band_added = after.self_pay_band_consumed_fen - before.self_pay_band_consumed_fen
    deductible_added = after.deductible_consumed_fen - before.deductible_consumed_fen
    values: dict[str, Any] = {
        "setl_id": setl_id,
        "mdtrt_id": mdtrt_id,
        "person_id": holdings.person_id,
        "fixmedins_code": fixmedins_code,
        "insutype": "310",
        "visit_type": str(visit.visit_type),
        "hospital_level": int(visit.hospital_level),
        "visit_date": visit.visit_date,
        "setl_time": now,
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
        "self_pay_band_added_fen": band_added,
        "deductible_added_fen": deductible_added,
        "cancelled_at": None,
        "cancel_reason": None,
    }
    session.flush()  # pending ORM rows of the caller first (statements below bypass the ORM)
    connection = session.connection()
    year = visit.visit_date.year
    line_rows = [
        (
            number,
            line.catalogue_code,
            line.quantity,
            line.unit_price_fen,
            line.quantity * line.unit_price_fen,
        )
        for number, line in enumerate(lines, start=1)
    ]
    txn_id = f"settle:{setl_id}"
    postings = settlement_postings(result, psn_no=holdings.psn_no, fixmedins_code=fixmedins_code)
    if connection.dialect.name == "postgresql" and 0 < len(lines) <= MAX_MULTI_ROWS and postings:
        settlement_id = _write_in_one_statement(
            connection,
            holdings,
            values=values,
            line_rows=line_rows,
            result=result,
            after=after,
            year=year,
            ledger=(txn_id, postings, now),
        )
    else:
        settlement_id = _write_separately(
            connection,
            holdings,
            values=values,
            line_rows=line_rows,
            result=result,
            after=after,
            year=year,
        )
        write_transaction(
            connection,
            txn_id=txn_id,
            kind="settle",
            postings=postings,
            posted_at=now,
            settlement_id=settlement_id,
        )
    # ORM copies of the rows updated above (a caller that loaded them earlier in this session)
    # would now be stale: expire them so the next access reads the database.
    for mapped, ident in (
        (PersonalAccount, (holdings.person_id,)),
        (YearToDateTotals, (holdings.person_id, year)),
    ):
        cached = session.identity_map.get(identity_key(mapped, ident))
        if cached is not None:
            session.expire(cached)
    return WrittenSettlement(id=settlement_id, **values), result


def _totals_change(holdings: Holdings, after: YearToDate) -> tuple[int, tuple[int, int, int]]:
    """How the year's totals change (_NO_TOTALS, _NEW_TOTALS or _ADDED_TOTALS) and the three
    amounts: the new row's values, or what is added."""
    before = holdings.year_to_date
    if not holdings.totals_exist:
        new = (
            after.self_pay_band_consumed_fen,
            after.deductible_consumed_fen,
            after.pooling_fund_paid_fen,
        )
        return _NEW_TOTALS, new
    added = (
        after.self_pay_band_consumed_fen - before.self_pay_band_consumed_fen,
        after.deductible_consumed_fen - before.deductible_consumed_fen,
        after.pooling_fund_paid_fen - before.pooling_fund_paid_fen,
    )
    return (_ADDED_TOTALS if any(added) else _NO_TOTALS), added


def _write_in_one_statement(
    connection: Any,
    holdings: Holdings,
    *,
    values: dict[str, Any],
    line_rows: list[tuple[Any, ...]],
    result: SettlementResult,
    after: YearToDate,
    year: int,
    ledger: tuple[str, list[Posting], dt.datetime],
) -> int:
    """PostgreSQL: settlement, lines, debit, totals and the ledger transaction (``ledger``:
    its id, postings and time) in one round trip; the settlement id."""
    debit = bool(result.acct_pay)
    totals, amounts = _totals_change(holdings, after)
    txn_id, postings, posted_at = ledger
    # The ledger's checks first (LedgerUnbalanced before anything is written).
    ledger_params = TransactionClauses.params(
        txn_id=txn_id, kind="settle", postings=postings, posted_at=posted_at
    )
    clauses = transaction_clauses(len(postings), settlement_id_sql="(SELECT id FROM s)")
    params: list[Any] = [values[name] for name in _SETTLEMENT_COLUMNS]
    for row in line_rows:
        params.extend(row)
    if debit:
        params += [
            result.acct_detail.current_year_fen,
            result.acct_detail.past_years_fen,
            holdings.person_id,
        ]
    if totals == _NEW_TOTALS:
        params += [holdings.person_id, year, *amounts]
    elif totals == _ADDED_TOTALS:
        params += [*amounts, holdings.person_id, year]
    params += [*ledger_params, *clauses.sum_params]
    shape = _settlement_writes(len(line_rows), debit, totals, len(postings))
    written_row = shape.fetchone(connection, params)
    assert written_row is not None
    settlement_id, debited, written, stored_sum = written_row
    clauses.check(txn_id, stored_sum)
    # The account and totals the holdings were read from (locked): exactly one row each.
    assert debited == 1, debited
    assert written == 1, written
    assert isinstance(settlement_id, int), settlement_id
    return settlement_id


def _write_separately(
    connection: Any,
    holdings: Holdings,
    *,
    values: dict[str, Any],
    line_rows: list[tuple[Any, ...]],
    result: SettlementResult,
    after: YearToDate,
    year: int,
) -> int:
    """One statement per table (SQLite; PostgreSQL with no lines or very many)."""
    settlement_id = _INSERT_SETTLEMENT.insert_one(
        connection, [values[name] for name in _SETTLEMENT_COLUMNS]
    )
    if line_rows:
        _INSERT_LINE.execute(connection, [(settlement_id, *row) for row in line_rows])
    if result.acct_pay:
        debited = _DEBIT_ACCOUNT.execute(
            connection,
            (
                result.acct_detail.current_year_fen,
                result.acct_detail.past_years_fen,
                holdings.person_id,
            ),
        )
        assert debited == 1, debited  # the account the holdings were read from
    totals, amounts = _totals_change(holdings, after)
    if totals == _NEW_TOTALS:
        # First settlement of the year. Two racing first settlements both insert; the primary
        # key lets one win and the other fail with IntegrityError (the caller retries).
        _INSERT_TOTALS.execute(connection, [(holdings.person_id, year, *amounts)])
    elif totals == _ADDED_TOTALS:
        added = _ADD_TO_TOTALS.execute(connection, (*amounts, holdings.person_id, year))
        assert added == 1, added  # the totals the holdings were read from
    return settlement_id


def cancel_settlement(session: Session, *, setl_id: str, now: dt.datetime) -> None:
    """Reverse a settlement with new ledger entries and give back what it took.

    The current-year part goes back to the current-year account if that account still
    belongs to the visit's year, else (after the year-end roll-over) to the past-years
    account, where the year-end roll-over would have put it.
    """
    row = session.scalar(
        select(SettlementRow).where(SettlementRow.setl_id == setl_id).with_for_update()
    )
    if row is None:
        raise SettlementNotFound(f"no settlement {setl_id}")
    if row.status is SettlementStatus.CANCELLED:
        raise SettlementAlreadyCancelled(f"settlement {setl_id} is already cancelled")
    account = session.get(PersonalAccount, row.person_id, with_for_update=True)
    totals = session.get(
        YearToDateTotals, (row.person_id, row.visit_date.year), with_for_update=True
    )
    assert account is not None
    assert totals is not None
    rolled_back_fen = 0  # current-year money given back after its year rolled over
    if account.account_year == row.visit_date.year:
        account.current_year_fen += row.acct_pay_current_year_fen
    else:
        account.past_years_fen += row.acct_pay_current_year_fen
        rolled_back_fen = row.acct_pay_current_year_fen
    account.past_years_fen += row.acct_pay_past_years_fen
    totals.self_pay_band_consumed_fen -= row.self_pay_band_added_fen
    totals.deductible_consumed_fen -= row.deductible_added_fen
    totals.pooling_fund_paid_fen -= row.hifp_pay
    row.status = SettlementStatus.CANCELLED
    row.cancelled_at = now
    original = session.scalar(
        select(LedgerTransaction.txn_id).where(
            LedgerTransaction.settlement_id == row.id, LedgerTransaction.kind == "settle"
        )
    )
    assert original is not None
    post_transaction(
        session,
        txn_id=f"cancel:{setl_id}",
        kind="cancel",
        postings=reversal_postings(session, original),
        posted_at=now,
        settlement_id=row.id,
        reverses_txn_id=original,
    )
    if rolled_back_fen:
        # The mirror gave it back to the current-year account; the roll-over moves it on,
        # as it moved the rest of that year's balance (settlement.rollover, same postings).
        psn_no = session.scalar(
            select(InsuredPersonRow.psn_no).where(InsuredPersonRow.id == row.person_id)
        )
        assert psn_no is not None
        post_transaction(
            session,
            txn_id=f"rollover:cancel:{setl_id}",
            kind="rollover",
            postings=[
                Posting(person_account(psn_no, "current_year"), LedgerSide.DEBIT, rolled_back_fen),
                Posting(person_account(psn_no, "past_years"), LedgerSide.CREDIT, rolled_back_fen),
            ],
            posted_at=now,
            settlement_id=row.id,
        )
