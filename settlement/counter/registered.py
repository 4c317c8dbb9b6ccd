"""Registered visits (就诊登记): an outpatient visit registered before its fees, then settled
at once; and what any open visit (this, or an inpatient stay) may undo before it is settled.

The national interface's outpatient flow is register (2201), upload fee lines in batches
(2204, settlement.counter.admissions.fee_lines with ``visit_type="outpatient"``), perhaps
cancel a batch (2205), pre-settle (2206), settle (2207); a registration with nothing settled
may be cancelled (2202). A registered outpatient visit is an ``admissions`` row of its kind
(migration st0007), so a stay's rules (one institution, one patient, the fee-line bound under
the visit's lock, one settlement that closes it) hold for it by the same code.

Units of work ``unit(session)``; the settle claims the request nonce first and stores the
door's answer under its key (settlement.keyed), as :func:`settlement.counter.settle.settle`
does. The route (local or through the hub) was decided before; these are local, and refuse a
person insured elsewhere (settlement.counter.holders.local_holdings) rather than dispatch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session

from dbkit import beijing_date
from settlement.claim import ClaimLine
from settlement.counter.admissions import open_admission, stay_lines
from settlement.counter.holders import insured_on, read_holder
from settlement.counter.outcomes import FeeLinesCancelled, Registered, Settled
from settlement.counter.ports import AtCounter, NonceClaim
from settlement.counter.settle import CounterRead, counter_read, record
from settlement.counter.visits import new_id, visit_at
from settlement.errors import AdmissionOtherPerson, InvalidClaim
from settlement.keyed import KeyedRequest, Render, Stored, answer, claim_key
from settlement.store import AdmissionFeeLineRow, AdmissionRow, AdmissionStatus

__all__ = [
    "OUTPATIENT",
    "RegisteredRead",
    "cancel_fee_batch",
    "cancel_registration",
    "register",
    "registered_read",
    "settle_registered",
]

OUTPATIENT = "outpatient"


def register(
    session: Session, *, at: AtCounter, begin_date: dt.date, now: dt.datetime
) -> Registered:
    """Register an outpatient visit (门诊挂号) for the cardholder at this hospital. Any insured
    person may be registered (as any may be admitted); where they are insured decides how the
    visit is settled."""
    today = beijing_date(now)
    at.card_check(session, today)
    visit_at(at.counter, OUTPATIENT, begin_date, today)
    holder = insured_on(read_holder(session, at.holder_id, begin_date.year), begin_date)
    row = AdmissionRow(
        admission_id=new_id("M", now),
        person_id=holder.id,
        fixmedins_code=at.counter.fixmedins_code,
        admission_date=begin_date,
        visit_type=OUTPATIENT,
        status=AdmissionStatus.OPEN,
        line_count=0,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return Registered(row.admission_id, holder.psn_no, OUTPATIENT, begin_date)


def _remove_lines(
    session: Session, row: AdmissionRow, chrg_bchno: str | None, feedetl_sn: str | None = None
) -> int:
    query = delete(AdmissionFeeLineRow).where(AdmissionFeeLineRow.admission_id == row.id)
    if chrg_bchno is not None:
        query = query.where(AdmissionFeeLineRow.chrg_bchno == chrg_bchno)
    if feedetl_sn is not None:
        query = query.where(AdmissionFeeLineRow.feedetl_sn == feedetl_sn)
    removed: int = session.execute(query).rowcount  # type: ignore[attr-defined]
    return removed


def cancel_registration(
    session: Session, *, fixmedins_code: str, mdtrt_id: str, visit_type: str = OUTPATIENT
) -> int:
    """Cancel an open registration (2202) or admission (2404) that nothing was settled on:
    it and its fee lines are deleted (no money moved, so nothing is reversed). Returns the
    fee lines removed. A settled visit is refused (ADMISSION_CLOSED): cancel its settlement
    first."""
    row = open_admission(session, fixmedins_code, mdtrt_id, visit_type=visit_type)
    removed = _remove_lines(session, row, None)
    session.delete(row)
    session.flush()
    return removed


def cancel_fee_batch(
    session: Session,
    *,
    fixmedins_code: str,
    mdtrt_id: str,
    chrg_bchno: str | None,
    visit_type: str = OUTPATIENT,
    feedetl_sn: str | None = None,
) -> FeeLinesCancelled:
    """Take a batch of fee lines (``chrg_bchno``; None: every line) off an open visit (2205
    outpatient, 2302 inpatient), or one line by the HIS's number (``feedetl_sn``, 2302). A
    batch or line the visit does not have is refused, so a mistyped number never reads as
    done."""
    row = open_admission(session, fixmedins_code, mdtrt_id, visit_type=visit_type)
    removed = _remove_lines(session, row, chrg_bchno, feedetl_sn)
    if removed == 0:
        raise InvalidClaim("this visit has no such fee lines (chrg_bchno, feedetl_sn)")
    row.line_count -= removed
    session.flush()
    return FeeLinesCancelled(row.admission_id, removed, row.line_count)


@dataclass(frozen=True, slots=True)
class RegisteredRead:
    """What a registered visit's pre-settle reads: the counter's read and its fee lines."""

    read: CounterRead
    lines: list[ClaimLine]


def _check_visit(visit: AdmissionRow, read: CounterRead) -> None:
    if visit.person_id != read.holdings.person_id:
        raise AdmissionOtherPerson("the card's holder is not this visit's patient")
    if visit.line_count == 0:
        raise InvalidClaim("no fee lines were uploaded for this visit")


def registered_read(
    session: Session,
    *,
    nonce: NonceClaim | None,
    at: AtCounter,
    mdtrt_id: str,
    now: dt.datetime,
) -> RegisteredRead:
    """Pre-settle's unit for a registered visit (2206): the request nonce, the open visit,
    the counter's reads on its date (as :func:`settlement.counter.settle.counter_read`), this
    holder's visit and its fee lines. The engine runs on it afterwards
    (settlement.counter.settle.estimate)."""
    if nonce is not None:
        nonce.claim(session)  # first: a replayed request stops here
    visit = open_admission(
        session, at.counter.fixmedins_code, mdtrt_id, lock=False, visit_type=OUTPATIENT
    )
    read = counter_read(
        session,
        nonce=None,
        at=at,
        visit_type=OUTPATIENT,
        visit_date=visit.admission_date,
        now=now,
    )
    _check_visit(visit, read)
    return RegisteredRead(read, stay_lines(session, visit))


def settle_registered(
    session: Session,
    *,
    keyed: KeyedRequest,
    nonce: NonceClaim | None,
    at: AtCounter,
    mdtrt_id: str,
    render: Render[Settled],
) -> Stored:
    """Settle a registered outpatient visit's fee lines at once and close it (2207): one unit,
    as :func:`settlement.counter.settle.settle` (the nonce first, then the key, the card, the
    visit rule, the holder, the engine, the writes and the stored answer)."""
    if nonce is not None:
        nonce.claim(session)  # first: a replayed request stops here and stores nothing
    stored = claim_key(session, keyed)
    if stored is not None:
        return stored
    now = keyed.now
    visit = open_admission(session, at.counter.fixmedins_code, mdtrt_id, visit_type=OUTPATIENT)
    read = counter_read(
        session,
        nonce=None,
        at=at,
        visit_type=OUTPATIENT,
        visit_date=visit.admission_date,
        now=now,
    )
    _check_visit(visit, read)
    settled = record(
        session,
        holdings=read.holdings,
        fixmedins_code=at.counter.fixmedins_code,
        mdtrt_id=visit.admission_id,
        visit=read.visit,
        lines=stay_lines(session, visit),
        now=now,
    )
    visit.status = AdmissionStatus.DISCHARGED
    visit.setl_id = settled.record.setl_id
    session.flush()
    return answer(session, keyed, render(settled))
