"""Inpatient stays (住院): admission (2401), fee lines (2301), discharge settlement (2304).

Units of work ``unit(session)``. A stay gathers fee lines while it is open; its discharge
settles all of them at once and closes it. A stay of a person insured elsewhere is discharged
through the hub (settlement.crossprov.flows); :func:`stay_to_discharge` holds the checks both
routes make before anything is settled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbkit import beijing_date
from settlement.claim import MAX_CLAIM_LINES, ClaimLine, Visit
from settlement.counter.holders import HolderRow, insured_on, local_holdings, read_holder
from settlement.counter.outcomes import FeeLinesAdded, Settled
from settlement.counter.ports import AtCounter, Counter
from settlement.counter.settle import record
from settlement.counter.visits import new_id, visit_at
from settlement.errors import (
    AdmissionClosed,
    AdmissionNotFound,
    AdmissionOtherPerson,
    InvalidClaim,
    InvalidVisit,
    PersonNotFound,
    TooManyLines,
)
from settlement.keyed import KeyedRequest, Render, Stored, answer, claim_key
from settlement.store import AdmissionFeeLineRow, AdmissionRow, AdmissionStatus

__all__ = [
    "MAX_STAY_LINES",
    "StayToDischarge",
    "admit",
    "discharge",
    "fee_lines",
    "keyed_fee_lines",
    "stay_lines",
    "stay_lines_digest",
    "stay_to_discharge",
]

# Fee lines one stay gathers over its uploads: the engine's bound on one claim.
MAX_STAY_LINES: Final = MAX_CLAIM_LINES


def admit(
    session: Session, *, holder_id: int, counter: Counter, admission_date: dt.date, now: dt.datetime
) -> AdmissionRow:
    """Open a stay for the cardholder at this hospital. Any insured person may be admitted;
    where they are insured decides how the stay is settled at discharge."""
    visit_at(counter, "inpatient", admission_date, beijing_date(now), via_admission=True)
    holder = insured_on(read_holder(session, holder_id, admission_date.year), admission_date)
    row = AdmissionRow(
        admission_id=new_id("A", now),
        person_id=holder.id,
        fixmedins_code=counter.fixmedins_code,
        admission_date=admission_date,
        status=AdmissionStatus.OPEN,
        line_count=0,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def open_admission(
    session: Session,
    fixmedins_code: str,
    admission_id: str,
    *,
    lock: bool = True,
    visit_type: str = "inpatient",
) -> AdmissionRow:
    """This hospital's open stay ``admission_id`` (locked for the rest of the unit); with
    ``visit_type="outpatient"``, its open registered outpatient visit instead (2201). A visit
    of the other kind answers exactly like a missing one."""
    query = select(AdmissionRow).where(
        AdmissionRow.admission_id == admission_id,
        AdmissionRow.fixmedins_code == fixmedins_code,
        AdmissionRow.visit_type == visit_type,
    )
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise AdmissionNotFound("this hospital has no admission with this admission_id")
    if row.status is not AdmissionStatus.OPEN:
        raise AdmissionClosed("the stay was already settled at discharge")
    return row


def fee_lines(
    session: Session,
    *,
    fixmedins_code: str,
    admission_id: str,
    lines: Sequence[ClaimLine],
    visit_type: str = "inpatient",
    chrg_bchno: str | None = None,
    feedetl_sns: Sequence[str] | None = None,
) -> FeeLinesAdded:
    """Append fee lines to an open stay, or to an open registered outpatient visit
    (``visit_type``), bounded by :data:`MAX_STAY_LINES` under its lock. ``chrg_bchno`` names
    the upload's batch and ``feedetl_sns`` the HIS's line numbers (the national interface)."""
    assert feedetl_sns is None or len(feedetl_sns) == len(lines)
    row = open_admission(session, fixmedins_code, admission_id, visit_type=visit_type)
    if row.line_count + len(lines) > MAX_STAY_LINES:
        raise TooManyLines(f"a visit holds at most {MAX_STAY_LINES} fee lines")
    # Numbered after the highest line ever stored: a cancelled batch leaves a gap, never a
    # number used twice. One read of the primary key's prefix, under the visit's lock.
    last_no = session.scalar(
        select(func.coalesce(func.max(AdmissionFeeLineRow.line_no), 0)).where(
            AdmissionFeeLineRow.admission_id == row.id
        )
    )
    session.add_all(
        AdmissionFeeLineRow(
            admission_id=row.id,
            line_no=int(last_no or 0) + number,
            catalogue_code=line.catalogue_code,
            quantity=line.quantity,
            unit_price_fen=line.unit_price_fen,
            chrg_bchno=chrg_bchno,
            feedetl_sn=None if feedetl_sns is None else feedetl_sns[number - 1],
        )
        for number, line in enumerate(lines, start=1)
    )
    row.line_count += len(lines)
    session.flush()
    return FeeLinesAdded(row.admission_id, len(lines), row.line_count)


def keyed_fee_lines(
    session: Session,
    *,
    keyed: KeyedRequest,
    fixmedins_code: str,
    admission_id: str,
    lines: Sequence[ClaimLine],
    render: Render[FeeLinesAdded],
    visit_type: str = "inpatient",
    chrg_bchno: str | None = None,
    feedetl_sns: Sequence[str] | None = None,
) -> Stored:
    """Fee lines under an idempotency key: a retried upload adds its lines once."""
    stored = claim_key(session, keyed)
    if stored is not None:
        return stored
    added = fee_lines(
        session,
        fixmedins_code=fixmedins_code,
        admission_id=admission_id,
        lines=lines,
        visit_type=visit_type,
        chrg_bchno=chrg_bchno,
        feedetl_sns=feedetl_sns,
    )
    return answer(session, keyed, render(added))


@dataclass(frozen=True, slots=True)
class StayToDischarge:
    """An open stay that may be discharged now, by this cardholder, with its visit."""

    admission: AdmissionRow
    holder: HolderRow
    visit: Visit
    discharge_date: dt.date


def stay_to_discharge(
    session: Session,
    *,
    at: AtCounter,
    admission_id: str,
    discharge_date: dt.date | None,
    now: dt.datetime,
    lock: bool = True,
) -> StayToDischarge:
    """The checks every discharge makes, in order: card usable, the stay open here (locked
    in a write unit), the card's holder its patient, the dates, at least one fee line, the
    visit allowed, the person insured on the discharge date. ``discharge_date`` None: the
    discharge the stay recorded (2402), else today (Beijing)."""
    today = beijing_date(now)
    at.card_check(session, today)
    admission = open_admission(session, at.counter.fixmedins_code, admission_id, lock=lock)
    if discharge_date is None:
        discharge_date = admission.discharge_date or today
    holder = read_holder(session, at.holder_id, discharge_date.year)
    if holder is None:
        raise PersonNotFound("no insured person is linked to this cardholder")
    if admission.person_id != holder.id:
        raise AdmissionOtherPerson("the card session's holder is not this admission's patient")
    if discharge_date < admission.admission_date:
        raise InvalidVisit("the discharge date is before the admission date")
    if admission.line_count == 0:
        raise InvalidClaim("no fee lines were uploaded for this stay")
    visit = visit_at(at.counter, "inpatient", discharge_date, today, via_admission=True)
    return StayToDischarge(admission, insured_on(holder, discharge_date), visit, discharge_date)


def _fee_rows(session: Session, admission: AdmissionRow) -> Sequence[AdmissionFeeLineRow]:
    return session.scalars(
        select(AdmissionFeeLineRow)
        .where(AdmissionFeeLineRow.admission_id == admission.id)
        .order_by(AdmissionFeeLineRow.line_no)
    ).all()


def stay_lines(session: Session, admission: AdmissionRow) -> list[ClaimLine]:
    """Every fee line of the stay, in upload order."""
    return [
        ClaimLine(f.catalogue_code, f.quantity, f.unit_price_fen)
        for f in _fee_rows(session, admission)
    ]


def stay_lines_digest(session: Session, admission: AdmissionRow) -> tuple[list[ClaimLine], str]:
    """The stay's fee lines (as :func:`stay_lines`) and an SHA-256 of exactly which lines
    they are: each line's number, HIS number, code, quantity and price. Lines are cancelled
    (2205, 2302) as well as added, so an equal count no longer means the same lines: a
    settlement over lines read earlier compares this digest, never the count."""
    rows = _fee_rows(session, admission)
    lines = [ClaimLine(f.catalogue_code, f.quantity, f.unit_price_fen) for f in rows]
    identity = [
        [f.line_no, f.feedetl_sn, f.catalogue_code, f.quantity, f.unit_price_fen] for f in rows
    ]
    text = json.dumps(identity, ensure_ascii=False, separators=(",", ":"))
    return lines, hashlib.sha256(text.encode()).hexdigest()


def discharge(
    session: Session,
    *,
    keyed: KeyedRequest,
    at: AtCounter,
    admission_id: str,
    discharge_date: dt.date | None,
    render: Render[Settled],
) -> Stored:
    """Discharge a locally insured patient: settle every fee line and close the stay, on
    ``discharge_date`` (None: as :func:`stay_to_discharge` resolves it), which it records."""
    stored = claim_key(session, keyed)
    if stored is not None:
        return stored
    stay = stay_to_discharge(
        session,
        at=at,
        admission_id=admission_id,
        discharge_date=discharge_date,
        now=keyed.now,
    )
    discharge_date = stay.discharge_date
    holdings = local_holdings(stay.holder, discharge_date)
    settled = record(
        session,
        holdings=holdings,
        fixmedins_code=at.counter.fixmedins_code,
        mdtrt_id=stay.admission.admission_id,
        visit=stay.visit,
        lines=stay_lines(session, stay.admission),
        now=keyed.now,
    )
    stay.admission.status = AdmissionStatus.DISCHARGED
    stay.admission.setl_id = settled.record.setl_id
    stay.admission.discharge_date = discharge_date
    session.flush()
    return answer(session, keyed, render(settled))
