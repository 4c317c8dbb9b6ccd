"""Read units of the counter: one settlement, a day's settlements (pages)."""

from __future__ import annotations

import datetime as dt
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbkit import day_bounds_utc
from settlement.counter.outcomes import Settled, SettlementPage
from settlement.counter.settle import find_settlement
from settlement.store import InsuredPersonRow, SettlementRow

__all__ = ["LIST_PAGE_SIZE", "get_settlement", "list_settlements"]

# Settlements one page lists: a busy hospital's day is a few thousand, so a few dozen pages.
LIST_PAGE_SIZE: Final = 200


def get_settlement(session: Session, *, fixmedins_code: str, setl_id: str) -> Settled:
    return find_settlement(session, fixmedins_code=fixmedins_code, setl_id=setl_id)


def list_settlements(
    session: Session, *, fixmedins_code: str, day: dt.date, after_id: int
) -> SettlementPage:
    """This institution's settlements of ``day`` (Beijing time), after ``after_id``."""
    start, end = day_bounds_utc(day)
    rows = session.execute(
        select(SettlementRow, InsuredPersonRow.psn_no)
        .join(InsuredPersonRow, InsuredPersonRow.id == SettlementRow.person_id)
        .where(
            SettlementRow.fixmedins_code == fixmedins_code,
            SettlementRow.setl_time >= start,
            SettlementRow.setl_time < end,
            SettlementRow.id > after_id,
        )
        .order_by(SettlementRow.id)
        .limit(LIST_PAGE_SIZE + 1)
    ).all()
    page = rows[:LIST_PAGE_SIZE]
    more = len(rows) > LIST_PAGE_SIZE
    return SettlementPage(
        day=day,
        items=[Settled(row, psn_no) for row, psn_no in page],
        next_after_id=page[-1][0].id if more else None,
    )
