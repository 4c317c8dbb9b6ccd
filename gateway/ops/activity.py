"""A day's local settlement activity, cancellations and reconciliation runs (read-only).

Why these queries live in the gateway and not in ``settlement``: the ops view is a read-only
report that puts several packages' tables side by side (settlement's, the cross-province
tables, the gateway's own counters) and shapes them for one page. It writes nothing and
decides nothing, so it cannot break a domain rule; the day boundaries and the notion of a
valid settlement are reused from :mod:`settlement.reconciliation`, so the dashboard counts what
reconciliation counts. If the queries grow into something a domain decision depends on, they
move into the domain package.

Every query is an aggregate over one Beijing day (bounded by GROUP BY on a handful of visit
types) or carries a LIMIT.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbkit import as_utc, day_bounds_utc
from gateway.ops.models import (
    ActivityRow,
    CancellationRow,
    MismatchDifference,
    MismatchRow,
    ReconciliationSummary,
)
from settlement.store import ReconciliationRun, SettlementRow, SettlementStatus

__all__ = [
    "LOCAL_ROUTE",
    "MAX_DIFFERENCES_SHOWN",
    "MAX_MISMATCHES_SHOWN",
    "cancellations",
    "local_activity",
    "reconciliation",
]

LOCAL_ROUTE: Final = "local"
# The page lists this many mismatching runs; the rest are counted, and listed by
# GET /v1/reconciliation/mismatches?scope=all.
MAX_MISMATCHES_SHOWN: Final = 50
# Differences shown per 3202 run (the stored answer holds up to 1,000).
MAX_DIFFERENCES_SHOWN: Final = 20


@dataclass(frozen=True, slots=True)
class _Sums:
    count: int
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int


def _sums_columns() -> tuple[Any, ...]:
    return (
        func.count(),
        func.coalesce(func.sum(SettlementRow.medfee_sumamt), 0),
        func.coalesce(func.sum(SettlementRow.fund_pay_sumamt), 0),
        func.coalesce(func.sum(SettlementRow.acct_pay), 0),
        func.coalesce(func.sum(SettlementRow.psn_cash_pay), 0),
    )


def local_activity(session: Session, day: dt.date) -> list[ActivityRow]:
    """Settlements whose settle time falls on ``day`` (Beijing), by visit type: valid ones
    with their amounts, and how many of them were cancelled since."""
    start, end = day_bounds_utc(day)
    rows = session.execute(
        select(SettlementRow.visit_type, SettlementRow.status, *_sums_columns())
        .where(SettlementRow.setl_time >= start, SettlementRow.setl_time < end)
        .group_by(SettlementRow.visit_type, SettlementRow.status)
    ).all()
    valid: dict[str, _Sums] = {}
    cancelled: dict[str, int] = {}
    for visit_type, status, *sums in rows:
        if status == SettlementStatus.SETTLED:
            valid[visit_type] = _Sums(*(int(value) for value in sums))
        else:
            cancelled[visit_type] = cancelled.get(visit_type, 0) + int(sums[0])
    empty = _Sums(0, 0, 0, 0, 0)
    return [
        ActivityRow(
            route=LOCAL_ROUTE,
            visit_type=visit_type,
            count=valid.get(visit_type, empty).count,
            medfee_sumamt=valid.get(visit_type, empty).medfee_sumamt,
            fund_pay_sumamt=valid.get(visit_type, empty).fund_pay_sumamt,
            acct_pay=valid.get(visit_type, empty).acct_pay,
            psn_cash_pay=valid.get(visit_type, empty).psn_cash_pay,
            cancelled_count=cancelled.get(visit_type, 0),
        )
        for visit_type in sorted(set(valid) | set(cancelled))
    ]


def cancellations(session: Session, day: dt.date) -> list[CancellationRow]:
    """Cancels made on ``day`` (Beijing, by cancel time), by visit type."""
    start, end = day_bounds_utc(day)
    rows = session.execute(
        select(
            SettlementRow.visit_type,
            func.count(),
            func.coalesce(func.sum(SettlementRow.medfee_sumamt), 0),
        )
        .where(
            SettlementRow.status == SettlementStatus.CANCELLED,
            SettlementRow.cancelled_at >= start,
            SettlementRow.cancelled_at < end,
        )
        .group_by(SettlementRow.visit_type)
        .order_by(SettlementRow.visit_type)
    ).all()
    return [
        CancellationRow(
            route=LOCAL_ROUTE, visit_type=visit_type, count=int(count), medfee_sumamt=int(amount)
        )
        for visit_type, count, amount in rows
    ]


def reconciliation(session: Session, day: dt.date) -> ReconciliationSummary:
    """Runs whose statement day is ``day``: how many matched, and the first mismatches."""
    counts = {
        bool(was_matched): int(count)
        for was_matched, count in session.execute(
            select(ReconciliationRun.matched, func.count())
            .where(ReconciliationRun.stmt_date == day)
            .group_by(ReconciliationRun.matched)
        )
    }
    matched, mismatched = counts.get(True, 0), counts.get(False, 0)
    runs = session.scalars(
        select(ReconciliationRun)
        .where(ReconciliationRun.stmt_date == day, ReconciliationRun.matched.is_(False))
        .order_by(ReconciliationRun.id)
        .limit(MAX_MISMATCHES_SHOWN)
    ).all()
    return ReconciliationSummary(
        runs=matched + mismatched,
        matched=matched,
        mismatched=mismatched,
        mismatches=[_mismatch(run) for run in runs],
        mismatches_truncated=mismatched > len(runs),
    )


def _mismatch(run: ReconciliationRun) -> MismatchRow:
    figures = _figures(run.figures)
    difference_count = figures.get("difference_count")
    institution = figures.get("institution")
    gateway = figures.get("gateway")
    return MismatchRow(
        fixmedins_code=run.fixmedins_code,
        clr_type=run.clr_type,
        kind="details" if run.kind == "details" else "totals",
        checked_at=as_utc(run.created_at),
        difference_count=difference_count if type(difference_count) is int else None,
        differences=_differences(figures.get("differences")),
        institution_medfee_sumamt=_medfee(institution),
        gateway_medfee_sumamt=_medfee(gateway),
    )


def _differences(raw: object) -> list[MismatchDifference]:
    """The first :data:`MAX_DIFFERENCES_SHOWN` of a 3202 answer's differences, as stored."""
    if not isinstance(raw, list):
        return []
    shown: list[MismatchDifference] = []
    for item in raw[:MAX_DIFFERENCES_SHOWN]:
        if isinstance(item, dict) and isinstance(item.get("setl_id"), str):
            shown.append(
                MismatchDifference(
                    setl_id=item["setl_id"],
                    reason=str(item.get("reason", "")),
                    institution_medfee_sumamt=_medfee(item.get("institution")),
                    gateway_medfee_sumamt=_medfee(item.get("gateway")),
                )
            )
    return shown


def _figures(raw: str) -> dict[str, Any]:
    # The stored answer is the gateway's own JSON; tolerate anything else rather than fail the
    # whole page over one odd row.
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _medfee(side: object) -> int | None:
    if isinstance(side, dict):
        value = side.get("medfee_sumamt")
        if type(value) is int:
            return value
    return None
