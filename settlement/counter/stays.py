"""A stay's discharge apart from its settlement (the national interface's 2402, 2405, 2303).

On /v1 a stay is discharged and settled in one step (settlement.counter.admissions.discharge).
The national interface records the discharge (出院办理, 2402) on its own, may cancel it (撤销出
院, 2405), and estimates the discharge settlement (2303) before making it (2304, the same
:func:`~settlement.counter.admissions.discharge`). These units keep the stay's rules where the
stay's other rules are: one institution's stay, found by its id, locked while it changes.

Units of work ``unit(session)``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbkit import beijing_date
from settlement.claim import ClaimLine
from settlement.counter.admissions import admit, stay_lines, stay_to_discharge
from settlement.counter.holders import local_holdings
from settlement.counter.outcomes import Registered
from settlement.counter.ports import AtCounter, Counter
from settlement.counter.settle import CounterRead
from settlement.errors import AdmissionClosed, AdmissionNotFound, InvalidVisit
from settlement.store import (
    AdmissionRow,
    AdmissionStatus,
    InsuredPersonRow,
    SettlementRow,
    SettlementStatus,
)

__all__ = [
    "Discharge",
    "StayRead",
    "admit_stay",
    "cancel_discharge",
    "record_discharge",
    "stay_read",
]

INPATIENT = "inpatient"


@dataclass(frozen=True, slots=True)
class Discharge:
    """A stay's discharge as recorded or cancelled: ``discharge_date`` None once cancelled;
    ``reopened`` when cancelling it reopened a stay whose settlement was cancelled."""

    admission_id: str
    discharge_date: dt.date | None
    reopened: bool = False


def admit_stay(
    session: Session, *, holder_id: int, counter: Counter, admission_date: dt.date, now: dt.datetime
) -> Registered:
    """Admission (2401): :func:`settlement.counter.admissions.admit` (as POST /v1/admissions),
    answered with the patient's ``psn_no`` as the national interface answers it."""
    row = admit(
        session, holder_id=holder_id, counter=counter, admission_date=admission_date, now=now
    )
    person = session.get(InsuredPersonRow, row.person_id)
    assert person is not None  # admit read it
    return Registered(row.admission_id, person.psn_no, INPATIENT, admission_date)


def _stay(session: Session, fixmedins_code: str, admission_id: str) -> AdmissionRow:
    row = session.scalar(
        select(AdmissionRow)
        .where(
            AdmissionRow.admission_id == admission_id,
            AdmissionRow.fixmedins_code == fixmedins_code,
            AdmissionRow.visit_type == INPATIENT,
        )
        .with_for_update()
    )
    if row is None:
        raise AdmissionNotFound("this hospital has no admission with this admission_id")
    return row


def record_discharge(
    session: Session,
    *,
    fixmedins_code: str,
    admission_id: str,
    discharge_date: dt.date,
    now: dt.datetime,
) -> Discharge:
    """Record an open stay's discharge (2402): on or after its admission, not in the future.
    Recorded again, the later date wins (a corrected discharge). A stay already settled at
    discharge keeps its date: the same date is acknowledged, another refused."""
    row = _stay(session, fixmedins_code, admission_id)
    if row.status is not AdmissionStatus.OPEN:
        if row.discharge_date == discharge_date:
            return Discharge(row.admission_id, discharge_date)
        raise AdmissionClosed(
            "the stay was settled at discharge on another date; cancel the settlement first"
        )
    if discharge_date < row.admission_date:
        raise InvalidVisit("the discharge date is before the admission date")
    if discharge_date > beijing_date(now):
        raise InvalidVisit("the discharge date is in the future")
    row.discharge_date = discharge_date
    session.flush()
    return Discharge(row.admission_id, discharge_date)


def cancel_discharge(session: Session, *, fixmedins_code: str, admission_id: str) -> Discharge:
    """Cancel a stay's discharge (2405). An open stay forgets its recorded discharge. A stay
    whose settlement at discharge was cancelled (2305) is reopened: fee lines may be changed
    and it is settled again. A stay whose settlement stands is refused (cancel that first),
    as is a stay settled through the hub (its cancel there does not reopen it)."""
    row = _stay(session, fixmedins_code, admission_id)
    if row.status is AdmissionStatus.OPEN:
        if row.discharge_date is None:
            raise InvalidVisit("the stay has no discharge to cancel")
        row.discharge_date = None
        session.flush()
        return Discharge(row.admission_id, None)
    if row.setl_id is None:
        raise AdmissionClosed("a stay settled through the hub is not reopened")
    status = session.scalar(
        select(SettlementRow.status).where(SettlementRow.setl_id == row.setl_id)
    )
    if status is not SettlementStatus.CANCELLED:
        raise AdmissionClosed("the stay's settlement stands: cancel it (2305) first")
    row.status = AdmissionStatus.OPEN
    row.setl_id = None
    row.discharge_date = None
    session.flush()
    return Discharge(row.admission_id, None, reopened=True)


@dataclass(frozen=True, slots=True)
class StayRead:
    """What a discharge estimate (2303) reads: the counter's read on the discharge date and
    the stay's lines. The engine runs on it afterwards (settlement.counter.settle.estimate)."""

    read: CounterRead
    lines: list[ClaimLine]
    discharge_date: dt.date


def stay_read(session: Session, *, at: AtCounter, admission_id: str, now: dt.datetime) -> StayRead:
    """The discharge's checks (admissions.stay_to_discharge, locking nothing) on the date
    the settlement would use, the holder's local holdings and the stay's lines."""
    stay = stay_to_discharge(
        session, at=at, admission_id=admission_id, discharge_date=None, now=now, lock=False
    )
    holdings = local_holdings(stay.holder, stay.discharge_date)
    read = CounterRead(stay.visit, holdings, beijing_date(now).year)
    return StayRead(read, stay_lines(session, stay.admission), stay.discharge_date)
