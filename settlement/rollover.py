"""The year-end roll-over (结转, DOMAIN §6): at 00:00 Beijing time on 1 January, what is left in
each current-year personal account (当年账户) moves to the past-years account (历年账户).

Once, whoever runs it. A personal account carries the year its current-year balance belongs
to (``personal_accounts.account_year``). Rolling accounts over is one step in the caller's
transaction (:func:`roll_accounts`, a few statements for a whole batch): insert each one's
:class:`~settlement.store.AccountRollover` row, whose primary key (person, ended year) lets
exactly one of two racing runs win; move the balance with a relative UPDATE conditional on
``account_year`` still being an ended year; post one balanced ledger transaction each
(debit ``person:<psn_no>:current_year``, credit ``person:<psn_no>:past_years``: money leaving
an account is a debit, as when a settlement spends it). Two places roll an account over, and
both may run at any time:

* the year-end job (:func:`roll_over_year`, from the gateway's housekeeping on every worker
  and from ``python -m gateway admin rollover --year Y``) walks the accounts still in an ended
  year in bounded batches, one transaction each, and writes the year's
  :class:`~settlement.store.RolloverYear` row once nothing is left;
* a settlement (:func:`roll_over_due`, inside its own transaction, under the account's row
  lock) that finds the person's account still in an ended year rolls it first. So a settle
  after midnight always sees the new year's accounts, however late the job runs, and a
  balance is never spent while it is being moved.

Which money a visit may spend (:func:`spendable`): the policy and the year's totals are the
visit date's year; the current-year account only if it is that year's account. A visit of an
ended year settled after the roll-over (a stay discharged in January, admitted in December)
pays from the past-years account, where its year's current-year money now is; a settlement
cancelled after the roll-over gives its current-year part back to the past-years account
(settlement.recording.cancel_settlement). A settle at 23:59:59.9 Beijing time belongs to the
old year: it spends the old current-year account, and the roll-over moves what it left.

Concurrency. SQLite runs one write transaction at a time (``BEGIN IMMEDIATE``), so a
settlement and a batch of the job never interleave. On PostgreSQL a settlement locks its
person's account row first (``FOR UPDATE``, settlement.recording.load_holdings); the job
locks its batch ``FOR UPDATE SKIP LOCKED``, so it never waits on (nor deadlocks with) a
settlement: an account being settled is skipped and rolled by the next batch, or by the
settlement itself. The UPDATE's ``WHERE account_year = ?`` and the primary key hold the line
even for a caller that forgot the lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from dbkit import DriverInsert, beijing_date
from settlement.claim import AccountBalances
from settlement.errors import RolloverNotDue
from settlement.ledger import NewTransaction, Posting, person_account, write_transactions
from settlement.recording import Holdings
from settlement.store import (
    AccountRollover,
    InsuredPersonRow,
    LedgerSide,
    PersonalAccount,
    RolloverYear,
)

__all__ = [
    "MAX_ROLLOVER_BATCH",
    "ROLLOVER_KIND",
    "DueAccount",
    "RolloverProgress",
    "RolloverStatus",
    "accounts_pending_rollover",
    "as_rolled",
    "last_ended_year",
    "require_ended",
    "roll_accounts",
    "roll_over_due",
    "roll_over_year",
    "rollover_completed",
    "rollover_postings",
    "rollover_status",
    "spendable",
]

# Accounts rolled in one transaction at most: bounds how long one batch holds SQLite's write
# lock (a batch is 6 statements whatever its size; docs/operations.md gives measured times).
MAX_ROLLOVER_BATCH: Final = 10_000
ROLLOVER_KIND: Final = "rollover"

_ACCOUNTS: Final[Table] = PersonalAccount.__table__  # type: ignore[assignment]
_PERSONS: Final[Table] = InsuredPersonRow.__table__  # type: ignore[assignment]
_ROLLED: Final[Table] = AccountRollover.__table__  # type: ignore[assignment]
_YEARS: Final[Table] = RolloverYear.__table__  # type: ignore[assignment]


def last_ended_year(now: dt.datetime) -> int:
    """The last year that has ended in Beijing time: the one whose roll-over is due."""
    return beijing_date(now).year - 1


def rollover_postings(psn_no: str, amount_fen: int) -> list[Posting]:
    """Move ``amount_fen`` from the person's current-year account to their past-years one."""
    assert amount_fen > 0, amount_fen
    return [
        Posting(person_account(psn_no, "current_year"), LedgerSide.DEBIT, amount_fen),
        Posting(person_account(psn_no, "past_years"), LedgerSide.CREDIT, amount_fen),
    ]


@dataclass(frozen=True, slots=True)
class DueAccount:
    """An account to roll over: its current-year balance ``amount_fen`` of ``from_year``, as
    read under the caller's row lock (or inside SQLite's one write transaction)."""

    person_id: int
    psn_no: str
    from_year: int
    amount_fen: int


_INSERT_ROLLOVER: Final = DriverInsert(
    _ROLLED, ("person_id", "from_year", "to_year", "amount_fen", "rolled_at")
)


def roll_accounts(
    connection: Connection, due: Sequence[DueAccount], *, to_year: int, now: dt.datetime
) -> None:
    """Roll ``due`` over into ``to_year`` in the caller's transaction, in a few statements
    whatever their number: the roll-over rows first (a second run for one (person, year) fails
    there, IntegrityError, before anything moves), then ONE relative UPDATE of the accounts
    still in an ended year, then the ledger transactions of those that had money left."""
    if not due:
        return
    assert all(account.from_year < to_year for account in due), to_year
    _INSERT_ROLLOVER.execute(
        connection,
        [(a.person_id, a.from_year, to_year, a.amount_fen, now) for a in due],
    )
    moved = connection.execute(
        _ACCOUNTS.update()
        .where(
            _ACCOUNTS.c.person_id.in_([a.person_id for a in due]),
            _ACCOUNTS.c.account_year < to_year,
        )
        .values(
            past_years_fen=_ACCOUNTS.c.past_years_fen + _ACCOUNTS.c.current_year_fen,
            current_year_fen=0,
            account_year=to_year,
        )
    ).rowcount
    assert moved == len(due), (moved, len(due))  # the rows read under the lock
    write_transactions(
        connection,
        [
            NewTransaction(
                txn_id=f"{ROLLOVER_KIND}:{a.from_year}:{a.psn_no}",
                kind=ROLLOVER_KIND,
                postings=rollover_postings(a.psn_no, a.amount_fen),
            )
            for a in due
            if a.amount_fen
        ],
        posted_at=now,
    )


def as_rolled(holdings: Holdings, this_year: int) -> Holdings:
    """The holdings as they are once the roll-over due by ``this_year`` has run (pure: what
    eligibility and a pre-settle show before the job reached this account)."""
    if holdings.account_year >= this_year:
        return holdings
    balances = holdings.balances
    return replace(
        holdings,
        account_year=this_year,
        balances=AccountBalances(0, balances.current_year_fen + balances.past_years_fen),
    )


def spendable(holdings: Holdings, visit_year: int) -> Holdings:
    """What a visit of ``visit_year`` may spend: the current-year account only if it is that
    year's account (module docstring)."""
    if holdings.account_year == visit_year:
        return holdings
    return replace(holdings, balances=AccountBalances(0, holdings.balances.past_years_fen))


def roll_over_due(session: Session, holdings: Holdings, *, now: dt.datetime) -> Holdings:
    """Inside a settlement, after the account row is locked (PostgreSQL) or read in the one
    write transaction (SQLite): roll the account over if its year has ended, and return the
    holdings as they now are."""
    this_year = beijing_date(now).year
    if holdings.account_year >= this_year:
        return holdings
    session.flush()  # pending ORM rows first: the statements below bypass the ORM
    account = DueAccount(
        person_id=holdings.person_id,
        psn_no=holdings.psn_no,
        from_year=holdings.account_year,
        amount_fen=holdings.balances.current_year_fen,
    )
    roll_accounts(session.connection(), [account], to_year=this_year, now=now)
    return as_rolled(holdings, this_year)


@dataclass(frozen=True, slots=True)
class RolloverProgress:
    """What one call of :func:`roll_over_year` did: ``rolled`` accounts moving ``amount_fen``,
    and whether the year is now complete (its :class:`RolloverYear` row exists)."""

    year: int
    rolled: int
    amount_fen: int
    completed: bool


def require_ended(year: int, now: dt.datetime) -> None:
    """Raise ROLLOVER_NOT_DUE unless ``year`` has ended in Beijing time at ``now``."""
    today = beijing_date(now)
    if today.year <= year:
        raise RolloverNotDue(
            f"the year {year} has not ended: it is {today.isoformat()} in Beijing, and its "
            f"roll-over runs from {year + 1}-01-01 00:00 Beijing time (UTC+8)"
        )


def roll_over_year(
    session: Session, *, year: int, now: dt.datetime, batch: int
) -> RolloverProgress:
    """One batch of the year-end roll-over of ``year`` (a unit of work: one transaction).

    Rolls up to ``batch`` accounts still in ``year`` or an earlier year into the current
    (Beijing) year. Once none is left, writes the year's RolloverYear row (once: the primary
    key, inserted only if absent). Refuses a year that has not ended with ROLLOVER_NOT_DUE,
    changing nothing. Call it again until ``completed``; a call after that changes nothing.
    """
    assert 1 <= batch <= MAX_ROLLOVER_BATCH, batch
    require_ended(year, now)
    to_year = beijing_date(now).year
    connection = session.connection()
    accounts, persons = _ACCOUNTS, _PERSONS
    query = (
        select(
            accounts.c.person_id,
            persons.c.psn_no,
            accounts.c.account_year,
            accounts.c.current_year_fen,
        )
        .join(persons, persons.c.id == accounts.c.person_id)
        .where(accounts.c.account_year <= year)
        .order_by(accounts.c.account_year, accounts.c.person_id)
        .limit(batch)
    )
    if connection.dialect.name == "postgresql":
        # Skip the accounts a settlement holds: it rolls them itself, or the next batch does.
        query = query.with_for_update(of=accounts, skip_locked=True)
    due = [DueAccount(*row) for row in connection.execute(query)]
    roll_accounts(connection, due, to_year=to_year, now=now)
    completed = _complete_if_done(connection, year=year, now=now)
    return RolloverProgress(
        year=year,
        rolled=len(due),
        amount_fen=sum(account.amount_fen for account in due),
        completed=completed,
    )


def _complete_if_done(connection: Connection, *, year: int, now: dt.datetime) -> bool:
    accounts = _ACCOUNTS
    left = connection.execute(
        select(accounts.c.person_id).where(accounts.c.account_year <= year).limit(1)
    ).first()
    if left is not None:
        return False
    rolled = _ROLLED
    count, amount_fen = connection.execute(
        select(func.count(), func.coalesce(func.sum(rolled.c.amount_fen), 0)).where(
            rolled.c.from_year == year
        )
    ).one()
    values = {"year": year, "accounts": count, "amount_fen": amount_fen, "completed_at": now}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    # Two runs finishing together both get here: the row is written once, by either.
    connection.execute(dialect.insert(_YEARS).values(values).on_conflict_do_nothing())
    return True


@dataclass(frozen=True, slots=True)
class RolloverStatus:
    """Where the roll-over of ``year`` stands: ``completed_at`` once finished, the accounts
    rolled and the amount moved so far, and the accounts still in ``year`` or before."""

    year: int
    completed_at: dt.datetime | None
    accounts: int
    amount_fen: int
    remaining: int


def rollover_completed(session: Session, *, year: int) -> bool:
    """A read unit: whether the roll-over of ``year`` has finished (one primary-key read)."""
    return session.get(RolloverYear, year) is not None


def accounts_pending_rollover(session: Session, *, year: int) -> int:
    """A read unit: the accounts still in ``year`` or before, 0 once its roll-over is complete.

    Cheap enough for a periodic check on every worker: once the year is complete, one
    primary-key read; before, a count over ix_personal_accounts_account_year_person_id's
    leading column (index only), which runs only in the hours the job is working or stuck."""
    if rollover_completed(session, year=year):
        return 0
    return int(
        session.scalar(
            select(func.count())
            .select_from(PersonalAccount)
            .where(PersonalAccount.account_year <= year)
        )
        or 0
    )


def rollover_status(session: Session, *, year: int) -> RolloverStatus:
    """A read unit: the roll-over of ``year`` as it stands."""
    completed = session.get(RolloverYear, year)
    count, amount_fen = session.execute(
        select(func.count(), func.coalesce(func.sum(AccountRollover.amount_fen), 0)).where(
            AccountRollover.from_year == year
        )
    ).one()
    remaining = session.scalar(
        select(func.count())
        .select_from(PersonalAccount)
        .where(PersonalAccount.account_year <= year)
    )
    return RolloverStatus(
        year=year,
        completed_at=None if completed is None else completed.completed_at,
        accounts=int(count),
        amount_fen=int(amount_fen),
        remaining=int(remaining or 0),
    )
