"""Cross-province figures for the ops view: remote settlements, the hub reversal queue and what
Shanghai fronted for each insured province. Read-only (see gateway.ops.activity for why the
gateway reads domain tables here).

The tables ``remote_settlements`` and ``hub_reversals`` belong to ``settlement.crossprov``
(contract: docs/cross-province.md), which was built at the same time as this view. So they
are READ BY REFLECTION and may be absent (a schema before that migration): an absent table is
reported as not available, never an error. The columns read (the contract named none; they
match settlement.crossprov.store, checked by tests/gateway/test_ops_summary.py):

* ``remote_settlements``: ``status`` (``intent | confirmed | failed | unknown | reversed |
  cancelled``; ``settled`` is read as ``confirmed``); optional ``route`` and ``visit_type``;
  optional int-fen ``medfee_sumamt``, ``fund_pay_sumamt``, ``acct_pay``, ``psn_cash_pay`` (or
  the same names + ``_fen``); a day column, the first of ``created_at`` (when the message was
  first written: every status has it), ``setl_time``, ``settled_at`` (timestamps) or
  ``created_at_ms`` (unix ms). Without a day column the counts are all time (noted). Cancels
  of the day by ``cancelled_at``.
* ``hub_reversals``: a row is pending while ``status`` is not one of :data:`_DONE_STATUSES`,
  or else while the first of ``confirmed_at``, ``done_at``, ``completed_at`` is NULL; its age
  from ``created_at`` (or ``created_at_ms``).

The receivables come from the settlement ledger (accounts ``receivable:province:<admdvs>``,
contract §Gateway side), which always exists; they are zero until remote settlements post.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    func,
    inspect,
    literal,
    select,
)
from sqlalchemy.orm import Session

from dbkit import as_utc, day_bounds_utc
from gateway.ops.models import (
    ActivityRow,
    CancellationRow,
    ProvinceReceivable,
    RemoteStatusCount,
    ReversalQueue,
)
from settlement.store import LedgerEntry, LedgerSide, LedgerTransaction

__all__ = [
    "RECEIVABLE_PREFIX",
    "RemoteView",
    "province_receivables",
    "remote_cancellations",
    "remote_view",
    "reversal_queue",
]

REMOTE_TABLE: Final = "remote_settlements"
REVERSALS_TABLE: Final = "hub_reversals"
RECEIVABLE_PREFIX: Final = "receivable:province:"
# There are 34 provincial-level divisions; a few spare for test or odd accounts.
MAX_PROVINCES: Final = 64
# Distinct (route, visit type, status) groups read for one day: bounded, and far above the
# 3 routes x 4 visit types x 6 statuses that exist.
MAX_REMOTE_GROUPS: Final = 200
_AMOUNTS: Final = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
_DAY_COLUMNS: Final = ("created_at", "setl_time", "settled_at", "created_at_ms")
_DONE_STATUSES: Final = ("done", "confirmed", "reversed", "completed")
_DONE_AT_COLUMNS: Final = ("confirmed_at", "done_at", "completed_at")
# A message the hub settled and that still stands (the builder named it "confirmed").
_VALID: Final = frozenset({"confirmed", "settled"})
_CANCELLED: Final = "cancelled"
_DEFAULT_REMOTE_ROUTE: Final = "cross_province"


@dataclass(frozen=True, slots=True)
class RemoteView:
    available: bool
    rows: list[ActivityRow]
    by_status: list[RemoteStatusCount]
    notes: list[str]


def _reflect(session: Session, name: str) -> Table | None:
    connection = session.connection()
    if not inspect(connection).has_table(name):
        return None
    return Table(name, MetaData(), autoload_with=connection)


def _column(table: Table, *names: str) -> Column[Any] | None:
    for name in names:
        if name in table.c:
            return table.c[name]
    return None


def _in_day(column: Column[Any], day: dt.date) -> ColumnElement[bool] | None:
    """``column`` falls on ``day`` (Beijing): timestamps compare as instants, ``*_ms`` and
    ``*_s`` integers as unix time. None when the column's type says neither."""
    return _in_range(column, *day_bounds_utc(day))


def _in_range(
    column: Column[Any], start: dt.datetime, end: dt.datetime
) -> ColumnElement[bool] | None:
    """``column`` falls in [start, end), as :func:`_in_day` reads it."""
    if isinstance(column.type, DateTime | Date):
        return and_(column >= start, column < end)
    if isinstance(column.type, Integer):
        scale = 1000 if column.name.endswith("_ms") else 1 if column.name.endswith("_s") else 0
        if scale:
            return and_(
                column >= int(start.timestamp()) * scale, column < int(end.timestamp()) * scale
            )
    return None


def remote_view(session: Session, day: dt.date) -> RemoteView:
    table = _reflect(session, REMOTE_TABLE)
    if table is None:
        return RemoteView(False, [], [], [f"{REMOTE_TABLE}: not available (table absent)"])
    status = _column(table, "status")
    if status is None:
        return RemoteView(False, [], [], [f"{REMOTE_TABLE}: no status column; not read"])
    notes: list[str] = []
    route = _column(table, "route")
    visit_type = _column(table, "visit_type")
    amounts = [_column(table, name, f"{name}_fen") for name in _AMOUNTS]
    have_amounts = all(column is not None for column in amounts)
    if not have_amounts:
        notes.append(f"{REMOTE_TABLE}: no fen amount columns; amounts not shown")
    day_column = _column(table, *_DAY_COLUMNS)
    where = None if day_column is None else _in_day(day_column, day)
    if where is None:
        notes.append(f"{REMOTE_TABLE}: no usable day column; counts are all time")
    groups: list[Any] = [
        route if route is not None else literal(_DEFAULT_REMOTE_ROUTE, String),
        visit_type if visit_type is not None else literal("unknown", String),
        status,
    ]
    sums = [func.coalesce(func.sum(column), 0) for column in amounts if column is not None]
    query = select(*groups, func.count(), *(sums if have_amounts else []))
    if where is not None:
        query = query.where(where)
    query = query.group_by(
        *(column for column in (route, visit_type, status) if column is not None)
    )
    result = session.execute(query.limit(MAX_REMOTE_GROUPS)).all()
    return RemoteView(True, _activity_rows(result, have_amounts), _by_status(result), notes)


def _activity_rows(result: Sequence[Any], have_amounts: bool) -> list[ActivityRow]:
    rows: dict[tuple[str, str], ActivityRow] = {}
    for route, visit_type, status, count, *sums in result:
        key = (str(route), str(visit_type))
        row = rows.get(key) or ActivityRow(
            route=key[0],
            visit_type=key[1],
            count=0,
            medfee_sumamt=0 if have_amounts else None,
            fund_pay_sumamt=0 if have_amounts else None,
            acct_pay=0 if have_amounts else None,
            psn_cash_pay=0 if have_amounts else None,
            cancelled_count=0,
        )
        if status in _VALID:
            update: dict[str, Any] = {"count": row.count + int(count)}
            if have_amounts:
                for name, value in zip(_AMOUNTS, sums, strict=True):
                    update[name] = int(getattr(row, name)) + int(value)
            row = row.model_copy(update=update)
        elif status == _CANCELLED:
            row = row.model_copy(update={"cancelled_count": row.cancelled_count + int(count)})
        else:
            continue  # intent, failed, unknown, reversed: no money moved; counted by status
        rows[key] = row
    return [rows[key] for key in sorted(rows)]


def _by_status(result: Sequence[Any]) -> list[RemoteStatusCount]:
    counts: dict[str, int] = {}
    for _route, _visit_type, status, count, *_sums in result:
        counts[str(status)] = counts.get(str(status), 0) + int(count)
    return [RemoteStatusCount(status=status, count=counts[status]) for status in sorted(counts)]


def remote_cancellations(session: Session, day: dt.date) -> list[CancellationRow]:
    """Remote settlements cancelled on ``day`` (by ``cancelled_at``), by route and visit type;
    empty when the table or those columns are absent."""
    table = _reflect(session, REMOTE_TABLE)
    if table is None:
        return []
    status, cancelled_at = _column(table, "status"), _column(table, "cancelled_at")
    medfee = _column(table, "medfee_sumamt", "medfee_sumamt_fen")
    where = None if cancelled_at is None else _in_day(cancelled_at, day)
    if status is None or medfee is None or where is None:
        return []
    route = _column(table, "route")
    visit_type = _column(table, "visit_type")
    rows = session.execute(
        select(
            route if route is not None else literal(_DEFAULT_REMOTE_ROUTE, String),
            visit_type if visit_type is not None else literal("unknown", String),
            func.count(),
            func.coalesce(func.sum(medfee), 0),
        )
        .where(status == _CANCELLED, where)
        .group_by(*(column for column in (route, visit_type) if column is not None))
        .limit(MAX_REMOTE_GROUPS)
    ).all()
    return sorted(
        (
            CancellationRow(
                route=str(row_route),
                visit_type=str(row_visit_type),
                count=int(count),
                medfee_sumamt=int(amount),
            )
            for row_route, row_visit_type, count, amount in rows
        ),
        key=lambda row: (row.route, row.visit_type),
    )


def reversal_queue(session: Session) -> tuple[ReversalQueue | None, list[str]]:
    """Pending reversals, or None (with a note) when the queue table is absent."""
    table = _reflect(session, REVERSALS_TABLE)
    if table is None:
        return None, [f"{REVERSALS_TABLE}: not available (table absent)"]
    notes: list[str] = []
    status = _column(table, "status")
    done_at = _column(table, *_DONE_AT_COLUMNS)
    if status is not None:
        pending: ColumnElement[bool] | None = status.not_in(_DONE_STATUSES)
    elif done_at is not None:
        pending = done_at.is_(None)
    else:
        pending = None
        notes.append(f"{REVERSALS_TABLE}: no status column; every row counted as pending")
    created = _column(table, "created_at", "created_at_ms")
    query = select(func.count(), func.min(created) if created is not None else literal(None))
    if pending is not None:
        query = query.where(pending)
    depth, oldest = session.execute(query).one()
    return ReversalQueue(depth=int(depth), oldest_at=_instant(created, oldest)), notes


def _instant(column: Column[Any] | None, value: object) -> dt.datetime | None:
    if column is None or value is None:
        return None
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, int) and column.name.endswith("_ms"):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return None


def province_receivables(session: Session, day: dt.date) -> list[ProvinceReceivable]:
    """Debits minus credits on each ``receivable:province:*`` account: all time and on the
    day (by the ledger transaction's posting time, Beijing day)."""
    start, end = day_bounds_utc(day)
    signed = case(
        (LedgerEntry.side == LedgerSide.DEBIT, LedgerEntry.amount_fen),
        else_=-LedgerEntry.amount_fen,
    )
    on_day = and_(LedgerTransaction.posted_at >= start, LedgerTransaction.posted_at < end)
    rows = session.execute(
        select(
            LedgerEntry.account,
            func.coalesce(func.sum(signed), 0),
            func.coalesce(func.sum(case((on_day, signed), else_=0)), 0),
        )
        .join(LedgerTransaction, LedgerTransaction.txn_id == LedgerEntry.txn_id)
        .where(LedgerEntry.account.startswith(RECEIVABLE_PREFIX, autoescape=True))
        .group_by(LedgerEntry.account)
        .order_by(LedgerEntry.account)
        .limit(MAX_PROVINCES)
    ).all()
    return [
        ProvinceReceivable(
            insuplc_admdvs=account.removeprefix(RECEIVABLE_PREFIX),
            outstanding_fen=int(outstanding),
            day_net_fen=int(day_net),
        )
        for account, outstanding, day_net in rows
    ]
