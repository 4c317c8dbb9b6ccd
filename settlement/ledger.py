"""The append-only double-entry ledger (记账): balanced transactions in the caller's session.

Every movement of money is one :class:`~settlement.store.LedgerTransaction` whose entries
sum to zero (total debits = total credits). A posted entry is never edited: a cancellation
posts the mirror transaction (:func:`reversal_postings`). :func:`post_transaction` refuses an
unbalanced transaction with ``LEDGER_UNBALANCED`` and then checks the sum of what it stored with
one aggregate on the new transaction id, inside the caller's transaction (never commits).

Chart of accounts (account names are strings, one per holder of money)::

    fund:pooling                        统筹基金          pays hifp_pay
    fund:supplementary                  附加基金          pays hifob_pay
    person:<psn_no>:current_year        当年账户          pays acct_pay (current-year part)
    person:<psn_no>:past_years          历年账户          pays acct_pay (past-years part)
    institution:<code>:cash             cash the institution collected from the patient
    institution:<code>:fees             the institution's medical fees (credit = medfee_sumamt)

A settlement debits each paying account with its share and credits the institution's fees
with the total, so ``medfee_sumamt = fund + account + cash`` is what makes it balance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Table, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Case

from dbkit import DriverInsert, DriverSQL
from settlement.errors import LedgerUnbalanced
from settlement.money import is_fen
from settlement.result import SettlementResult
from settlement.store import (
    LedgerEntry,
    LedgerSide,
    LedgerTransaction,
)

__all__ = [
    "FUND_POOLING_ACCOUNT",
    "FUND_SUPPLEMENTARY_ACCOUNT",
    "NewTransaction",
    "Posting",
    "TransactionClauses",
    "account_balance_fen",
    "institution_account",
    "person_account",
    "post_transaction",
    "reversal_postings",
    "settlement_postings",
    "transaction_clauses",
    "unbalanced_transactions",
    "write_transaction",
    "write_transactions",
]

MAX_POSTINGS: Final = 64
FUND_POOLING_ACCOUNT: Final = "fund:pooling"
FUND_SUPPLEMENTARY_ACCOUNT: Final = "fund:supplementary"


def person_account(psn_no: str, which: str) -> str:
    assert which in {"current_year", "past_years"}, which
    return f"person:{psn_no}:{which}"


def institution_account(fixmedins_code: str, which: str) -> str:
    assert which in {"cash", "fees"}, which
    return f"institution:{fixmedins_code}:{which}"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    side: LedgerSide
    amount_fen: int


def _debits_minus_credits_fen(postings: Sequence[Posting]) -> int:
    return sum(
        posting.amount_fen if posting.side is LedgerSide.DEBIT else -posting.amount_fen
        for posting in postings
    )


def settlement_postings(
    result: SettlementResult, *, psn_no: str, fixmedins_code: str
) -> list[Posting]:
    """The balanced postings of one settlement (zero shares are left out)."""
    debits = (
        (FUND_POOLING_ACCOUNT, result.hifp_pay),
        (FUND_SUPPLEMENTARY_ACCOUNT, result.hifob_pay),
        (person_account(psn_no, "current_year"), result.acct_detail.current_year_fen),
        (person_account(psn_no, "past_years"), result.acct_detail.past_years_fen),
        (institution_account(fixmedins_code, "cash"), result.psn_cash_pay),
    )
    postings = [
        Posting(account, LedgerSide.DEBIT, amount_fen)
        for account, amount_fen in debits
        if amount_fen
    ]
    if result.medfee_sumamt:
        postings.append(
            Posting(
                institution_account(fixmedins_code, "fees"), LedgerSide.CREDIT, result.medfee_sumamt
            )
        )
    assert _debits_minus_credits_fen(postings) == 0
    return postings


def reversal_postings(session: Session, txn_id: str) -> list[Posting]:
    """The mirror of a posted transaction: same accounts and amounts, sides swapped."""
    entries = session.scalars(
        select(LedgerEntry).where(LedgerEntry.txn_id == txn_id).order_by(LedgerEntry.id)
    ).all()
    swapped = {LedgerSide.DEBIT: LedgerSide.CREDIT, LedgerSide.CREDIT: LedgerSide.DEBIT}
    return [Posting(entry.account, swapped[entry.side], entry.amount_fen) for entry in entries]


def post_transaction(
    session: Session,
    *,
    txn_id: str,
    kind: str,
    postings: Sequence[Posting],
    posted_at: dt.datetime,
    settlement_id: int | None = None,
    reverses_txn_id: str | None = None,
) -> None:
    """Write one balanced transaction in the caller's session (flush, no commit).

    Raises LedgerUnbalanced if the postings do not sum to zero or an amount is not a positive
    int; the database refuses a second posting of the same (kind, settlement) or a second
    reversal of one transaction (IntegrityError).
    """
    # Pending ORM objects the rows refer to (a new settlement) are flushed first: the writes
    # below bypass the ORM.
    session.flush()
    write_transaction(
        session.connection(),
        txn_id=txn_id,
        kind=kind,
        postings=postings,
        posted_at=posted_at,
        settlement_id=settlement_id,
        reverses_txn_id=reverses_txn_id,
    )


def write_transaction(
    connection: Connection,
    *,
    txn_id: str,
    kind: str,
    postings: Sequence[Posting],
    posted_at: dt.datetime,
    settlement_id: int | None = None,
    reverses_txn_id: str | None = None,
) -> None:
    """:func:`post_transaction` on the session's connection, for a caller that has flushed
    the session and holds its connection already (settlement.recording.write_settlement)."""
    _check_postings(txn_id, postings)
    # Straight on the driver's cursor (one row, then one executemany, then the read-back;
    # dbkit.DriverInsert and DriverSQL), not ORM units of work or Core: the same
    # rows at a fraction of the CPU.
    _INSERT_TRANSACTION.execute(
        connection, [(txn_id, kind, settlement_id, reverses_txn_id, posted_at)]
    )
    if postings:
        _INSERT_ENTRY.execute(
            connection,
            [(txn_id, posting.account, posting.side, posting.amount_fen) for posting in postings],
        )
    # Postcondition, read back from the database (one aggregate on the txn_id index): what was
    # stored sums to zero, whatever the driver or a trigger did to the rows on the way.
    stored = _STORED_SUM.fetchone(connection, (LedgerSide.DEBIT, txn_id))
    assert stored is not None
    assert stored[0] == 0, (txn_id, stored[0])


@dataclass(frozen=True, slots=True)
class TransactionClauses:
    """PostgreSQL: :func:`write_transaction` as WITH clauses of a caller's own statement
    (settlement.recording writes a settlement and its ledger transaction in ONE statement:
    two round trips fewer than three statements of their own, on every settle).

    ``ctes`` insert the transaction and its entries; ``stored_sum`` is a select-list
    expression of what those inserts stored (debits minus credits, from their RETURNING: the
    rows as written, after defaults and triggers), which :meth:`check` wants to be 0, the
    postcondition :func:`write_transaction` reads back. Binds in statement order: ``binds``
    for the clauses (values from :meth:`params`), ``sum_binds`` for the expression (values
    ``sum_params``).
    """

    ctes: tuple[str, ...]
    binds: tuple[Any, ...]
    stored_sum: str
    sum_binds: tuple[Any, ...]
    sum_params: tuple[Any, ...] = (LedgerSide.DEBIT,)

    @staticmethod
    def params(
        *, txn_id: str, kind: str, postings: Sequence[Posting], posted_at: dt.datetime
    ) -> list[Any]:
        """The clauses' values, after the checks of :func:`write_transaction`."""
        _check_postings(txn_id, postings)
        values: list[Any] = [txn_id, kind, posted_at]
        for posting in postings:
            values += [posting.account, posting.side, posting.amount_fen]
        return values

    @staticmethod
    def check(txn_id: str, stored_sum: int) -> None:
        assert stored_sum == 0, (txn_id, stored_sum)


# One entry per (number of entries, settlement id expression): at most MAX_POSTINGS per
# caller's expression (the one caller has one).
_CLAUSES: dict[tuple[int, str], TransactionClauses] = {}


def transaction_clauses(entries: int, *, settlement_id_sql: str) -> TransactionClauses:
    """The clauses for a transaction of ``entries`` postings (1 to MAX_POSTINGS) that belongs
    to the settlement whose id the caller's SQL expression ``settlement_id_sql`` gives."""
    assert 0 < entries <= MAX_POSTINGS, entries
    key = (entries, settlement_id_sql)
    found = _CLAUSES.get(key)
    if found is not None:
        return found
    entry = "((SELECT txn_id FROM lt), ?, ?, ?)"
    # Identifiers from the table definitions and this module, never from input.
    found = _CLAUSES[key] = TransactionClauses(
        ctes=(
            "lt AS (INSERT INTO ledger_transactions (txn_id, kind, settlement_id, posted_at) "  # noqa: S608
            f"VALUES (?, ?, {settlement_id_sql}, ?) RETURNING txn_id)",
            "le AS (INSERT INTO ledger_entries (txn_id, account, side, amount_fen) "  # noqa: S608
            f"VALUES {', '.join([entry] * entries)} RETURNING side, amount_fen)",
        ),
        binds=(
            _TRANSACTIONS.c.txn_id,
            _TRANSACTIONS.c.kind,
            _TRANSACTIONS.c.posted_at,
            *(_ENTRIES.c.account, _ENTRIES.c.side, _ENTRIES.c.amount_fen) * entries,
        ),
        stored_sum="(SELECT COALESCE(SUM(CASE WHEN side = ? THEN amount_fen "
        "ELSE -amount_fen END), 0) FROM le)",
        sum_binds=(_ENTRIES.c.side,),
    )
    return found


def _check_postings(txn_id: str, postings: Sequence[Posting]) -> None:
    if len(postings) > MAX_POSTINGS:
        raise LedgerUnbalanced(
            f"{len(postings)} postings in one transaction (at most {MAX_POSTINGS})"
        )
    for posting in postings:
        if not is_fen(posting.amount_fen) or posting.amount_fen <= 0:
            raise LedgerUnbalanced(f"posting amount must be a positive int fen: {posting!r}")
    imbalance_fen = _debits_minus_credits_fen(postings)
    if imbalance_fen != 0:
        raise LedgerUnbalanced(f"transaction {txn_id} is off by {imbalance_fen} fen")


@dataclass(frozen=True, slots=True)
class NewTransaction:
    """One transaction of :func:`write_transactions` (no settlement, reverses nothing)."""

    txn_id: str
    kind: str
    postings: Sequence[Posting]


def write_transactions(
    connection: Connection, transactions: Sequence[NewTransaction], *, posted_at: dt.datetime
) -> None:
    """Many balanced transactions at once, for a caller that writes them in bulk (the year-end
    roll-over's batches, settlement.rollover): the checks of :func:`write_transaction` on each,
    then two multi-row INSERTs and ONE read-back over all of them, instead of three
    statements a transaction."""
    if not transactions:
        return
    for transaction in transactions:
        _check_postings(transaction.txn_id, transaction.postings)
    _INSERT_TRANSACTION.execute(
        connection, [(t.txn_id, t.kind, None, None, posted_at) for t in transactions]
    )
    _INSERT_ENTRY.execute(
        connection,
        [
            (t.txn_id, posting.account, posting.side, posting.amount_fen)
            for t in transactions
            for posting in t.postings
        ],
    )
    # Postcondition, read back from the database: none of them is off.
    off = connection.execute(
        select(LedgerEntry.txn_id)
        .where(LedgerEntry.txn_id.in_([t.txn_id for t in transactions]))
        .group_by(LedgerEntry.txn_id)
        .having(func.sum(_signed_amount()) != 0)
        .limit(1)
    ).first()
    assert off is None, off


def _signed_amount() -> Case[int]:
    # A debit counts positive, a credit negative: each transaction sums to zero.
    return case(
        (LedgerEntry.side == LedgerSide.DEBIT, LedgerEntry.amount_fen),
        else_=-LedgerEntry.amount_fen,
    )


_INSERT_TRANSACTION: Final = DriverInsert(
    LedgerTransaction.__table__,  # type: ignore[arg-type]
    ("txn_id", "kind", "settlement_id", "reverses_txn_id", "posted_at"),
)
_TRANSACTIONS: Final[Table] = LedgerTransaction.__table__  # type: ignore[assignment]
_ENTRIES: Final[Table] = LedgerEntry.__table__  # type: ignore[assignment]
_INSERT_ENTRY: Final = DriverInsert(
    _ENTRIES,
    ("txn_id", "account", "side", "amount_fen"),
)
# The same sum as _signed_amount() (the side bound through its Enum type, as SQLAlchemy binds
# it), on the driver's cursor: it runs on every settle.
_STORED_SUM: Final = DriverSQL(
    "SELECT COALESCE(SUM(CASE WHEN side = ? THEN amount_fen ELSE -amount_fen END), 0) "
    "FROM ledger_entries WHERE txn_id = ?",
    binds=(_ENTRIES.c.side, _ENTRIES.c.txn_id),
)


def account_balance_fen(session: Session, account: str) -> int:
    """Debits minus credits over every entry of ``account``."""
    balance = session.scalar(
        select(func.coalesce(func.sum(_signed_amount()), 0)).where(LedgerEntry.account == account)
    )
    return int(balance or 0)


def unbalanced_transactions(session: Session, *, limit: int = 100) -> list[str]:
    """Transactions whose entries do not sum to zero (should always be empty)."""
    rows = session.execute(
        select(LedgerEntry.txn_id)
        .group_by(LedgerEntry.txn_id)
        .having(func.sum(_signed_amount()) != 0)
        .limit(limit)
    )
    return [row.txn_id for row in rows]
