"""One day's ops summary, put together from the read-only queries (one database unit)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gateway.ops import activity, hourly, remote
from gateway.ops.counters import Counters, counters_note
from gateway.ops.models import ActivityRow, CrossProvince, OpsSummary, SettlementActivity

__all__ = ["day_summary", "total_row"]

_ALL: str = "all"


def day_summary(
    session: Session, *, day: dt.date, now: dt.datetime, counters: Counters
) -> OpsSummary:
    """Runs in the database thread; ``counters`` were read before (no I/O here but SQL)."""
    remote_view = remote.remote_view(session, day)
    queue, queue_notes = remote.reversal_queue(session)
    rows = [*activity.local_activity(session, day), *remote_view.rows]
    return OpsSummary(
        date=day,
        generated_at=now,
        settlements=SettlementActivity(
            rows=rows,
            total=total_row(rows),
            cancellations=[
                *activity.cancellations(session, day),
                *remote.remote_cancellations(session, day),
            ],
        ),
        hourly=hourly.hourly_settlements(session, day),
        reconciliation=activity.reconciliation(session, day),
        counters_note=counters_note(counters.since),
        counters_since=counters.since,
        rejections=counters.rejections,
        card_auth=counters.card_auth,
        cross_province=CrossProvince(
            remote_available=remote_view.available,
            remote_by_status=remote_view.by_status,
            reversal_queue=queue,
            receivables=remote.province_receivables(session, day),
            hub_calls=counters.hub_calls,
            breaker_open_workers=counters.breaker_open_workers,
            notes=[*remote_view.notes, *queue_notes],
        ),
    )


def total_row(rows: list[ActivityRow]) -> ActivityRow:
    """Sums over every row. An amount some row lacks (a remote table without amounts) has
    no honest total: None, shown as not available."""

    def amount(name: str) -> int | None:
        values: list[int | None] = [getattr(row, name) for row in rows]
        known = [value for value in values if value is not None]
        return sum(known) if len(known) == len(values) else None

    return ActivityRow(
        route=_ALL,
        visit_type=_ALL,
        count=sum(row.count for row in rows),
        medfee_sumamt=amount("medfee_sumamt"),
        fund_pay_sumamt=amount("fund_pay_sumamt"),
        acct_pay=amount("acct_pay"),
        psn_cash_pay=amount("psn_cash_pay"),
        cancelled_count=sum(row.cancelled_count for row in rows),
    )
