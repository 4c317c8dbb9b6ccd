"""The institutions behind a settlement figure of the ops page: for a day and optionally one
route, one visit type and one Beijing hour, each institution's valid settlements and their
total and how many were cancelled since (the activity table's figures, split by
``fixmedins_code``), the busiest first; the rest summed. Read-only.

Bounded: one GROUP BY per table, whose rows are bounded by the number of institutions (capped
at :data:`MAX_INSTITUTIONS`, with a note when reached); the answer lists
:data:`TOP_INSTITUTIONS`. Institutions are not personal data: a code, a name, a kind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import and_, func, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from dbkit import day_bounds_utc
from gateway.ops import remote
from gateway.ops.activity import LOCAL_ROUTE
from gateway.ops.models import InstitutionBreakdown, InstitutionFigures
from gateway.store import Institution
from settlement.store import SettlementRow, SettlementStatus

__all__ = [
    "ALL",
    "MAX_INSTITUTIONS",
    "ROUTES",
    "TOP_INSTITUTIONS",
    "Scope",
    "settlements_by_institution",
]

ALL: Final = "all"
ROUTES: Final = frozenset({ALL, LOCAL_ROUTE, "in_province_remote", "cross_province"})
TOP_INSTITUTIONS: Final = 20
MAX_INSTITUTIONS: Final = 20_000
_OTHERS: Final = "others"


@dataclass(frozen=True, slots=True)
class Scope:
    """What the figure was: a day, and optionally a route, a visit type and an hour."""

    day: dt.date
    route: str = ALL
    visit_type: str = ALL
    hour: int | None = None

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        start, end = day_bounds_utc(self.day)
        if self.hour is None:
            return start, end
        begin = start + dt.timedelta(hours=self.hour)
        return begin, begin + dt.timedelta(hours=1)


@dataclass(slots=True)
class _Figures:
    count: int = 0
    medfee: int | None = 0
    cancelled: int = 0

    def add(self, valid: bool, count: int, medfee: int | None) -> None:
        if valid:
            self.count += count
            self.medfee = None if self.medfee is None or medfee is None else self.medfee + medfee
        else:
            self.cancelled += count


def settlements_by_institution(session: Session, scope: Scope) -> InstitutionBreakdown:
    figures: dict[str, _Figures] = {}
    notes: list[str] = []
    if scope.route in (ALL, LOCAL_ROUTE):
        _merge(figures, _local(session, scope))
    if scope.route != LOCAL_ROUTE:
        _merge(figures, _remote(session, scope, notes))
    if len(figures) >= MAX_INSTITUTIONS:
        notes.append(f"only the first {MAX_INSTITUTIONS} institutions were read")
    ranked = sorted(
        (code for code, f in figures.items() if f.count or f.cancelled),
        key=lambda code: (-figures[code].count, -(figures[code].medfee or 0), code),
    )
    top, rest = ranked[:TOP_INSTITUTIONS], ranked[TOP_INSTITUTIONS:]
    names = _names(session, top)
    others = None
    if rest:
        summed = _Figures()
        for code in rest:
            f = figures[code]
            summed.add(True, f.count, f.medfee)
            summed.add(False, f.cancelled, None)
        others = _out(_OTHERS, None, summed)
    return InstitutionBreakdown(
        date=scope.day,
        route=scope.route,
        visit_type=scope.visit_type,
        hour=scope.hour,
        institution_count=len(ranked),
        institutions=[_out(code, names.get(code), figures[code]) for code in top],
        others=others,
        notes=notes,
    )


def _out(code: str, named: tuple[str, str] | None, f: _Figures) -> InstitutionFigures:
    return InstitutionFigures(
        fixmedins_code=code,
        name=None if named is None else named[0],
        kind=None if named is None else named[1],
        count=f.count,
        medfee_sumamt=f.medfee,
        cancelled_count=f.cancelled,
    )


def _merge(into: dict[str, _Figures], rows: Iterable[tuple[str, bool, int, int | None]]) -> None:
    for code, valid, count, medfee in rows:
        into.setdefault(code, _Figures()).add(valid, count, medfee)


def _local(session: Session, scope: Scope) -> list[tuple[str, bool, int, int | None]]:
    start, end = scope.bounds()
    where: list[ColumnElement[bool]] = [
        SettlementRow.setl_time >= start,
        SettlementRow.setl_time < end,
    ]
    if scope.visit_type != ALL:
        where.append(SettlementRow.visit_type == scope.visit_type)
    rows = session.execute(
        select(
            SettlementRow.fixmedins_code,
            SettlementRow.status,
            func.count(),
            func.coalesce(func.sum(SettlementRow.medfee_sumamt), 0),
        )
        .where(*where)
        .group_by(SettlementRow.fixmedins_code, SettlementRow.status)
        .limit(2 * MAX_INSTITUTIONS)
    ).all()
    return [
        (str(code), status is SettlementStatus.SETTLED, int(count), int(medfee))
        for code, status, count, medfee in rows
        if status in (SettlementStatus.SETTLED, SettlementStatus.CANCELLED)
    ]


def _remote(
    session: Session, scope: Scope, notes: list[str]
) -> list[tuple[str, bool, int, int | None]]:
    table = remote._reflect(session, remote.REMOTE_TABLE)
    if table is None:
        return []
    code = remote._column(table, "fixmedins_code")
    status = remote._column(table, "status")
    day_column = remote._column(table, *remote._DAY_COLUMNS)
    if code is None or status is None or day_column is None:
        notes.append(f"{remote.REMOTE_TABLE}: no institution, status or day column; not read")
        return []
    start, end = scope.bounds()
    in_range = remote._in_range(day_column, start, end)
    if in_range is None:
        notes.append(f"{remote.REMOTE_TABLE}: no usable day column; not read")
        return []
    where: list[ColumnElement[bool]] = [in_range]
    route = remote._column(table, "route")
    if scope.route != ALL:
        if route is not None:
            where.append(route == scope.route)
        elif scope.route != remote._DEFAULT_REMOTE_ROUTE:
            return []
    visit_type = remote._column(table, "visit_type")
    if scope.visit_type != ALL:
        if visit_type is None:
            notes.append(f"{remote.REMOTE_TABLE}: no visit_type column; not filtered by it")
        else:
            where.append(visit_type == scope.visit_type)
    medfee = remote._column(table, "medfee_sumamt", "medfee_sumamt_fen")
    amount: Any = func.sum(medfee) if medfee is not None else literal_column("NULL")
    rows = session.execute(
        select(code, status, func.count(), amount)
        .where(and_(*where))
        .group_by(code, status)
        .limit(2 * MAX_INSTITUTIONS)
    ).all()
    out: list[tuple[str, bool, int, int | None]] = []
    for row_code, row_status, count, fen in rows:
        if str(row_status) in remote._VALID:
            out.append((str(row_code), True, int(count), None if fen is None else int(fen)))
        elif str(row_status) == remote._CANCELLED:
            out.append((str(row_code), False, int(count), None))
    return out


def _names(session: Session, codes: list[str]) -> dict[str, tuple[str, str]]:
    if not codes:
        return {}
    rows = session.execute(
        select(Institution.code, Institution.name, Institution.kind).where(
            Institution.code.in_(codes)
        )
    ).all()
    return {code: (name, kind) for code, name, kind in rows}
