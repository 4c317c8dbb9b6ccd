"""Read units of the counter: one settlement, a day's settlements (pages), a person's visits
at the institution, a settlement's or an open visit's fee lines (the national interface's
5201, 5203, 5204; 5206 reads the eligibility of settlement.counter.settle)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbkit import day_bounds_utc
from settlement.claim import ClaimLine
from settlement.counter.outcomes import Settled, SettlementPage
from settlement.counter.settle import find_settlement
from settlement.errors import AdmissionNotFound, SettlementNotFound
from settlement.store import (
    AdmissionFeeLineRow,
    AdmissionRow,
    AdmissionStatus,
    InsuredPersonRow,
    SettlementLineRow,
    SettlementRow,
    SettlementStatus,
)

__all__ = [
    "LIST_PAGE_SIZE",
    "MAX_VISITS_LISTED",
    "FeeLines",
    "VisitSummary",
    "fee_lines_of",
    "get_settlement",
    "list_settlements",
    "visits_of",
]

# Visits one 5201 answer lists (a person's visits at one institution over a query's range).
MAX_VISITS_LISTED: Final = 500

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


@dataclass(frozen=True, slots=True)
class VisitSummary:
    """One visit of a person at the institution (就诊信息): a registered visit or stay
    (``admissions``), or a settlement made without registration (pharmacy, plain outpatient),
    whose ``mdtrt_id`` is its own."""

    mdtrt_id: str
    psn_no: str
    visit_type: str
    begin_date: dt.date
    end_date: dt.date | None
    setl_id: str | None
    # "open" (在院 / registered, not settled), "settled", "cancelled" (its settlement was)
    state: str


def visits_of(
    session: Session,
    *,
    fixmedins_code: str,
    psn_no: str,
    begin: dt.date,
    end: dt.date,
    mdtrt_id: str | None = None,
) -> list[VisitSummary]:
    """This institution's visits of ``psn_no`` that began in [begin, end] (Beijing dates),
    oldest first, at most :data:`MAX_VISITS_LISTED`. A person unknown here, or with no visit
    here, has none (an institution learns nothing of other institutions' patients)."""
    person_id = session.scalar(select(InsuredPersonRow.id).where(InsuredPersonRow.psn_no == psn_no))
    if person_id is None:
        return []
    stays = select(AdmissionRow).where(
        AdmissionRow.fixmedins_code == fixmedins_code,
        AdmissionRow.person_id == person_id,
        AdmissionRow.admission_date >= begin,
        AdmissionRow.admission_date <= end,
    )
    settlements = select(SettlementRow).where(
        SettlementRow.fixmedins_code == fixmedins_code,
        SettlementRow.person_id == person_id,
        SettlementRow.visit_date >= begin,
        SettlementRow.visit_date <= end,
    )
    if mdtrt_id is not None:
        stays = stays.where(AdmissionRow.admission_id == mdtrt_id)
        settlements = settlements.where(SettlementRow.mdtrt_id == mdtrt_id)
    found: dict[str, VisitSummary] = {}
    for row in session.scalars(settlements.order_by(SettlementRow.id).limit(MAX_VISITS_LISTED)):
        # A visit settled, cancelled and settled again is listed once, as it stands now.
        found[row.mdtrt_id] = VisitSummary(
            row.mdtrt_id,
            psn_no,
            row.visit_type,
            row.visit_date,
            row.visit_date,
            row.setl_id,
            "cancelled" if row.status is SettlementStatus.CANCELLED else "settled",
        )
    for stay in session.scalars(stays.order_by(AdmissionRow.id).limit(MAX_VISITS_LISTED)):
        settled = found.get(stay.admission_id)
        if stay.status is AdmissionStatus.OPEN:
            state, setl_id = "open", None
        else:
            state = settled.state if settled is not None else "settled"
            setl_id = stay.setl_id
        found[stay.admission_id] = VisitSummary(
            stay.admission_id,
            psn_no,
            stay.visit_type,
            stay.admission_date,
            stay.discharge_date,
            setl_id,
            state,
        )
    visits = sorted(found.values(), key=lambda visit: (visit.begin_date, visit.mdtrt_id))
    return visits[:MAX_VISITS_LISTED]


@dataclass(frozen=True, slots=True)
class FeeLines:
    """A settlement's fee lines (``setl_id`` set) or an open visit's (``setl_id`` None), with
    the HIS's line numbers where the national interface sent them."""

    mdtrt_id: str
    setl_id: str | None
    psn_no: str
    lines: list[ClaimLine]
    feedetl_sns: list[str | None]


def fee_lines_of(
    session: Session, *, fixmedins_code: str, setl_id: str | None, mdtrt_id: str | None
) -> FeeLines:
    """5204: by ``setl_id``, the lines the settlement settled; else by ``mdtrt_id``, the
    lines on the registered visit or stay (open or settled; a settlement made without
    registration is named by its ``setl_id``). Another institution's is answered exactly like
    a missing one."""
    if setl_id is not None:
        settled = find_settlement(session, fixmedins_code=fixmedins_code, setl_id=setl_id)
        row = settled.record
        if mdtrt_id is not None and row.mdtrt_id != mdtrt_id:
            raise SettlementNotFound("this visit has no settlement with this setl_id")
        lines = session.scalars(
            select(SettlementLineRow)
            .where(SettlementLineRow.settlement_id == row.id)
            .order_by(SettlementLineRow.line_no)
        ).all()
        claim = [ClaimLine(x.catalogue_code, x.quantity, x.unit_price_fen) for x in lines]
        return FeeLines(row.mdtrt_id, row.setl_id, settled.psn_no, claim, [None] * len(claim))
    assert mdtrt_id is not None
    found = session.execute(
        select(AdmissionRow, InsuredPersonRow.psn_no)
        .join(InsuredPersonRow, InsuredPersonRow.id == AdmissionRow.person_id)
        .where(AdmissionRow.admission_id == mdtrt_id, AdmissionRow.fixmedins_code == fixmedins_code)
    ).first()
    if found is None:
        raise AdmissionNotFound("this institution has no visit with this mdtrt_id")
    visit, psn_no = found
    rows = session.scalars(
        select(AdmissionFeeLineRow)
        .where(AdmissionFeeLineRow.admission_id == visit.id)
        .order_by(AdmissionFeeLineRow.line_no)
    ).all()
    return FeeLines(
        visit.admission_id,
        visit.setl_id,
        psn_no,
        [ClaimLine(x.catalogue_code, x.quantity, x.unit_price_fen) for x in rows],
        [x.feedetl_sn for x in rows],
    )
