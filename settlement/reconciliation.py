"""Reconciliation (对账): an institution's figures for a day against the gateway's ledger.

Two national transactions, both per institution, statement day and clearing type
(``clr_type``: 11 outpatient incl. emergency, 21 inpatient, 41 pharmacy):

* 3201 totals (总额对账): count, total, fund, account and cash of the day's settlements;
* 3202 details (明细对账): settlement by settlement, listing those that differ.

What counts: settlements of the institution whose ``setl_time`` falls on the statement day
(Beijing time, UTC+8, the day a clerk means) and that are not cancelled. A settlement and
its cancel therefore net out of the statement altogether, the way both sides' detail files
list valid settlements only [code: HIS integrations; our reading].

Reads only; the caller decides what to store (the gateway keeps each run for operations).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbkit import day_bounds_utc
from settlement.errors import StatementDateOutOfWindow, StatementFiguresInconsistent
from settlement.store import SettlementRow, SettlementStatus

__all__ = [
    "CLR_TYPE_VISIT_TYPES",
    "STATEMENT_WINDOW_DAYS",
    "DetailDifference",
    "Figures",
    "check_figures",
    "check_statement_date",
    "compare_details",
    "gateway_details",
    "gateway_totals",
]

# How far back a statement day may be (Beijing days before today). Reconciliation is daily; a
# year covers an institution catching up after an outage or a year-end audit, and bounds what
# one request may make the gateway read. Not from any source: our choice (docs/domain.md §4).
STATEMENT_WINDOW_DAYS: Final = 366

# clr_type → the visit types it clears (national clearing types) [code].
CLR_TYPE_VISIT_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "11": ("outpatient", "emergency"),
    "21": ("inpatient",),
    "41": ("pharmacy",),
}


@dataclass(frozen=True, slots=True)
class Figures:
    """One side's figures (all int fen). For one settlement ``count`` is 1."""

    count: int
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def adds_up(self) -> bool:
        """Total = fund + account + cash, the identity every settlement keeps."""
        return self.medfee_sumamt == self.fund_pay_sumamt + self.acct_pay + self.psn_cash_pay


def check_statement_date(stmt_date: dt.date, today: dt.date) -> None:
    """A statement day in the window: not after today (Beijing), at most
    :data:`STATEMENT_WINDOW_DAYS` before it."""
    if stmt_date > today:
        raise StatementDateOutOfWindow(
            f"stmt_date {stmt_date.isoformat()} is after today ({today.isoformat()}, Beijing): "
            "a day can be reconciled once it has begun"
        )
    if (today - stmt_date).days > STATEMENT_WINDOW_DAYS:
        raise StatementDateOutOfWindow(
            f"stmt_date {stmt_date.isoformat()} is more than {STATEMENT_WINDOW_DAYS} days "
            f"before today ({today.isoformat()}, Beijing)"
        )


def check_figures(figures: Figures, *, where: str) -> None:
    """The institution's figures must keep total = fund + account + cash; the detail names
    where, never the amounts."""
    if not figures.adds_up:
        raise StatementFiguresInconsistent(
            f"{where}: medfee_sumamt is not fund_pay_sumamt + acct_pay + psn_cash_pay"
        )


@dataclass(frozen=True, slots=True)
class DetailDifference:
    setl_id: str
    # missing_at_gateway | missing_at_institution | amounts_differ | listed_twice
    reason: str
    institution: Figures | None
    gateway: Figures | None


def _day_filter(fixmedins_code: str, day: dt.date, clr_type: str) -> tuple[object, ...]:
    start, end = day_bounds_utc(day)
    return (
        SettlementRow.fixmedins_code == fixmedins_code,
        SettlementRow.setl_time >= start,
        SettlementRow.setl_time < end,
        SettlementRow.visit_type.in_(CLR_TYPE_VISIT_TYPES[clr_type]),
        SettlementRow.status == SettlementStatus.SETTLED,
    )


def gateway_totals(
    session: Session, *, fixmedins_code: str, day: dt.date, clr_type: str
) -> Figures:
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(SettlementRow.medfee_sumamt), 0),
            func.coalesce(func.sum(SettlementRow.fund_pay_sumamt), 0),
            func.coalesce(func.sum(SettlementRow.acct_pay), 0),
            func.coalesce(func.sum(SettlementRow.psn_cash_pay), 0),
        ).where(*_day_filter(fixmedins_code, day, clr_type))  # type: ignore[arg-type]
    ).one()
    return Figures(*(int(value) for value in row))


def gateway_details(
    session: Session, *, fixmedins_code: str, day: dt.date, clr_type: str, limit: int
) -> dict[str, Figures]:
    """The day's valid settlements by setl_id, at most ``limit`` (the caller bounds it)."""
    rows = session.execute(
        select(
            SettlementRow.setl_id,
            SettlementRow.medfee_sumamt,
            SettlementRow.fund_pay_sumamt,
            SettlementRow.acct_pay,
            SettlementRow.psn_cash_pay,
        )
        .where(*_day_filter(fixmedins_code, day, clr_type))  # type: ignore[arg-type]
        .order_by(SettlementRow.id)
        .limit(limit)
    )
    return {
        row.setl_id: Figures(
            1, row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay, row.psn_cash_pay
        )
        for row in rows
    }


def compare_details(
    institution: Mapping[str, Figures],
    gateway: Mapping[str, Figures],
    listed_twice: Mapping[str, Figures] | None = None,
) -> list[DetailDifference]:
    """Every settlement that is on one side only or whose amounts differ, by setl_id; and
    every setl_id the institution listed more than once (``listed_twice``: its repeat's
    figures), reported as such beside whatever its first listing gives."""
    differences: list[DetailDifference] = [
        DetailDifference(setl_id, "listed_twice", theirs, gateway.get(setl_id))
        for setl_id, theirs in sorted((listed_twice or {}).items())
    ]
    setl_ids: Iterable[str] = sorted(set(institution) | set(gateway))
    for setl_id in setl_ids:
        ours, theirs = gateway.get(setl_id), institution.get(setl_id)
        if ours is None:
            differences.append(DetailDifference(setl_id, "missing_at_gateway", theirs, None))
        elif theirs is None:
            differences.append(DetailDifference(setl_id, "missing_at_institution", None, ours))
        elif ours != theirs:
            differences.append(DetailDifference(setl_id, "amounts_differ", theirs, ours))
    return differences
