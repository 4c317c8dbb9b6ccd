"""The day's settlements hour by hour (Beijing time), from the database: the ops page's trend
chart. The same settlements the activity table counts (valid ones with their total, and those
cancelled since), bucketed by their settle time's hour; remote settlements by their day column
(gateway.ops.remote). Read-only, one GROUP BY per table, at most 24 x 2 rows each.

The hour is computed in SQL, so only the buckets leave the database: SQLite stores the
instants as UTC text (``strftime('%H', t, '+8 hours')``), PostgreSQL as timestamptz (the UTC
wall time plus 8 hours). Beijing has had no daylight saving time since 1991: a fixed +8 is
exact, as in settlement.reconciliation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import DateTime, Integer, cast, func, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from dbkit import day_bounds_utc
from gateway.ops import remote
from gateway.ops.models import HourRow
from settlement.store import SettlementRow, SettlementStatus

__all__ = ["HOURS", "beijing_hour", "hourly_settlements"]

HOURS: Final = 24


def beijing_hour(column: Any, dialect: str) -> ColumnElement[int]:
    """The Beijing hour (0-23) of a timestamp column, in SQL."""
    if dialect == "sqlite":
        return cast(func.strftime("%H", column, "+8 hours"), Integer)
    return cast(
        func.extract("hour", func.timezone("UTC", column) + literal_column("interval '8 hours'")),
        Integer,
    )


class _Buckets:
    def __init__(self) -> None:
        self.count = [0] * HOURS
        self.cancelled = [0] * HOURS
        self.medfee: list[int | None] = [0] * HOURS

    def add(self, rows: Iterable[Any], *, valid: frozenset[str], cancelled: str) -> None:
        for hour, status, count, medfee in rows:
            if hour is None or not 0 <= int(hour) < HOURS:
                continue  # a NULL settle time: nothing to place
            h = int(hour)
            if str(status) in valid:
                self.count[h] += int(count)
                now = self.medfee[h]
                self.medfee[h] = None if now is None or medfee is None else now + int(medfee)
            elif str(status) == cancelled:
                self.cancelled[h] += int(count)

    def no_amounts(self) -> None:
        self.medfee = [None] * HOURS

    def rows(self) -> list[HourRow]:
        return [
            HourRow(
                hour=h,
                count=self.count[h],
                medfee_sumamt=self.medfee[h],
                cancelled_count=self.cancelled[h],
            )
            for h in range(HOURS)
        ]


def hourly_settlements(session: Session, day: dt.date) -> list[HourRow]:
    """24 rows, hour 0 to 23 of ``day`` (Beijing), every route."""
    dialect = session.get_bind().dialect.name
    start, end = day_bounds_utc(day)
    buckets = _Buckets()
    hour = beijing_hour(SettlementRow.setl_time, dialect)
    local = session.execute(
        select(
            hour,
            SettlementRow.status,
            func.count(),
            func.coalesce(func.sum(SettlementRow.medfee_sumamt), 0),
        )
        .where(SettlementRow.setl_time >= start, SettlementRow.setl_time < end)
        .group_by(hour, SettlementRow.status)
    ).all()
    buckets.add(
        ((h, status.value, n, fen) for h, status, n, fen in local),
        valid=frozenset({SettlementStatus.SETTLED.value}),
        cancelled=SettlementStatus.CANCELLED.value,
    )
    _remote_hours(session, day, dialect, buckets)
    return buckets.rows()


def _remote_hours(session: Session, day: dt.date, dialect: str, buckets: _Buckets) -> None:
    table = remote._reflect(session, remote.REMOTE_TABLE)
    if table is None:
        return
    status = remote._column(table, "status")
    day_column = remote._column(table, *remote._DAY_COLUMNS)
    if status is None or day_column is None or not isinstance(day_column.type, DateTime):
        return  # remote_view says why in its notes; no hour to place them in here
    in_day = remote._in_day(day_column, day)
    if in_day is None:
        return
    medfee = remote._column(table, "medfee_sumamt", "medfee_sumamt_fen")
    hour = beijing_hour(day_column, dialect)
    rows = session.execute(
        select(
            hour,
            status,
            func.count(),
            func.sum(medfee) if medfee is not None else literal_column("NULL"),
        )
        .where(in_day)
        .group_by(hour, status)
    ).all()
    if medfee is None and any(str(row[1]) in remote._VALID for row in rows):
        buckets.no_amounts()
    buckets.add(rows, valid=remote._VALID, cancelled=remote._CANCELLED)
