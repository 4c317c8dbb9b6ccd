"""Settling a person insured elsewhere through the hub (异地就医结算): settle and discharge.

The route was decided before this runs (the card session carries it). A settle is a short read
and three short steps, never one long transaction (the hub call must not hold the database's
write lock):

0. **plan** (a read): the key's stored answer if this is a retry (answered at once, as the
   local path answers it); else the same checks the local path makes (card usable, visit
   allowed here, the person insured on the visit date; for a discharge, the stay) and the
   filing the visit settles under (FILING_REQUIRED otherwise).
1. **intent** (one write): the request nonce, the Idempotency-Key claimed, and
   ``remote_settlements`` inserted with status ``intent`` and the input about to be sent.
   Committed before anything leaves.
2. **call** the hub: bounded attempts with the same msgid (settlement.crossprov.calls).
3. **outcome** (one write): ``confirmed`` + setlinfo verbatim + ledger + the stored answer
   (+ for a discharge, the admission closed with the message's id, ``remote_msgid``); or
   ``failed`` (key released, like a local 4xx); or ``unknown`` + a reversal queued + key
   released, answered 503 HUB_OUTCOME_UNKNOWN so the terminal's retry with the same key
   settles afresh under a new msgid.

A crash between 1 and 3 leaves an ``intent`` (and an in-progress key, so a retry meanwhile
gets 409): the reversal task turns it into ``unknown`` once older than the longest call,
queues its reversal and releases the key.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dbkit import beijing_date
from settlement.claim import ClaimLine
from settlement.counter.admissions import open_admission, stay_lines_digest, stay_to_discharge
from settlement.counter.holders import insured_place, read_holder
from settlement.counter.ports import AtCounter, Counter, NonceClaim
from settlement.counter.visits import visit_at
from settlement.crossprov import remote, wire
from settlement.crossprov.calls import CallOutcome
from settlement.crossprov.filings import filing_for_visit, filings_of
from settlement.crossprov.ports import Hub, Units, require_client, unavailable
from settlement.crossprov.routing import InsuredPlace
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus
from settlement.errors import (
    AdmissionClosed,
    AdmissionNotFound,
    AdmissionOtherPerson,
    HubOutcomeUnknown,
    HubRefused,
    InvalidClaim,
    VisitTypeNotAllowed,
)
from settlement.idempotency import begin_request, release_request
from settlement.keyed import KeyedRequest, Render, Stored, answer_owned, stored_answer
from settlement.store import AdmissionRow, AdmissionStatus, InsuredPersonRow

__all__ = [
    "RemoteSettled",
    "Stay",
    "StayChanged",
    "discharge_remote",
    "refuse_pre_settle",
    "require_stay_not_discharged",
    "settle_registered_remote",
    "settle_remote",
]

_MSGID_DRAWS: Final = 3


@dataclass(frozen=True, slots=True)
class RemoteSettled:
    """A settlement the hub confirmed, for the door to render: the row, the hub's setlinfo
    verbatim, and the route it went."""

    row: RemoteSettlementRow
    setlinfo: Mapping[str, Any]
    route: str


@dataclass(frozen=True, slots=True)
class _Plan:
    place: InsuredPlace
    filing_type: str


def _plan(
    session: Session,
    *,
    at: AtCounter,
    visit_type: str,
    visit_date: dt.date,
    now: dt.datetime,
) -> _Plan:
    """The local path's checks, in its order, then the filing this visit settles under."""
    today = beijing_date(now)
    at.card_check(session, today)
    visit_at(at.counter, visit_type, visit_date, today)
    place = insured_place(read_holder(session, at.holder_id, visit_date.year), visit_date)
    filing = filing_for_visit(
        filings_of(session, place.psn_no),
        visit_type=visit_type,
        visit_date=visit_date,
        fixmedins_code=at.counter.fixmedins_code,
    )
    return _Plan(place, filing.value)


def refuse_pre_settle(
    session: Session,
    *,
    at: AtCounter,
    visit_type: str,
    visit_date: dt.date,
    now: dt.datetime,
) -> None:
    """A read unit. No estimate for a person insured elsewhere: the insured place computes the
    split only when it settles (the hub offers no pre-settlement). The checks and the filing
    are made, so the clerk learns before settling if something is missing."""
    plan = _plan(
        session,
        at=at,
        visit_type=visit_type,
        visit_date=visit_date,
        now=now,
    )
    raise VisitTypeNotAllowed(
        f"no pre-settlement for a person insured at {plan.place.insuplc_admdvs}: the insured "
        "place computes the split when the visit is settled"
    )


def _plan_settle(session: Session, *, keyed: KeyedRequest, **checks: Any) -> Stored | _Plan:
    stored = stored_answer(session, keyed)
    if stored is not None:
        return stored
    return _plan(session, now=keyed.now, **checks)


_STANDING: Final = (
    RemoteStatus.INTENT,
    RemoteStatus.UNKNOWN,
    RemoteStatus.CONFIRMED,
    RemoteStatus.CANCELLED,
)


def require_stay_not_discharged(
    session: Session, *, fixmedins_code: str, admission_id: str, lock: bool
) -> AdmissionRow:
    """The admission, unless a discharge through the hub already settled it (or may have:
    intent), or settled it and was cancelled since: a cancelled local discharge leaves its
    admission discharged too, so neither can be discharged again (ADMISSION_CLOSED). While an
    earlier discharge is ``unknown`` (being reversed) the answer is the retryable
    HUB_OUTCOME_UNKNOWN. Only ``failed`` and ``reversed`` (nothing stands at the hub) let the
    stay be discharged anew. A confirmed discharge also closes the admission row itself
    (``remote_msgid``, booked with the confirmation), but the row is still ``open`` while a
    discharge is ``intent`` or ``unknown``: this check is what keeps a second discharge from
    settling the stay twice then; ``lock`` (in the intent's transaction) makes two concurrent
    discharges of one stay take turns, so the second sees the first's intent."""
    query = select(AdmissionRow).where(
        AdmissionRow.admission_id == admission_id,
        AdmissionRow.fixmedins_code == fixmedins_code,
    )
    admission = session.scalar(query.with_for_update() if lock else query)
    if admission is None:
        # The plan found it, but a registration (2202) or admission (2404) may be cancelled
        # since, which deletes it. Nothing was sent yet: refused, nothing written.
        raise AdmissionNotFound("this hospital has no admission with this admission_id")
    standing = set(
        session.scalars(
            select(RemoteSettlementRow.status).where(
                RemoteSettlementRow.mdtrt_id == admission_id,
                RemoteSettlementRow.fixmedins_code == fixmedins_code,
                RemoteSettlementRow.status.in_(_STANDING),
            )
        )
    )
    closing = sorted(status.value for status in standing - {RemoteStatus.UNKNOWN})
    if closing:
        raise AdmissionClosed(f"the stay was already settled through the hub ({closing[0]})")
    if standing:
        # An earlier discharge's outcome is unknown: its reversal (queued, final at the hub)
        # is on its way, after which the stay may be discharged again. Retryable, unlike 409.
        raise HubOutcomeUnknown(
            "an earlier discharge of this stay was not confirmed and is being reversed"
        )
    return admission


@dataclass(frozen=True, slots=True)
class _StayPlan:
    plan: _Plan
    lines: list[ClaimLine]
    lines_sha256: str
    discharge_date: dt.date


def _plan_discharge(
    session: Session,
    *,
    keyed: KeyedRequest,
    at: AtCounter,
    admission_id: str,
    discharge_date: dt.date | None,
) -> Stored | _StayPlan:
    """A discharge's plan: the local discharge's checks, the stay not already settled through
    the hub (checked again under the admission's lock in the intent), its fee lines."""
    stored = stored_answer(session, keyed)
    if stored is not None:
        return stored
    stay = stay_to_discharge(
        session,
        at=at,
        admission_id=admission_id,
        discharge_date=discharge_date,
        now=keyed.now,
        lock=False,
    )
    discharge_date = stay.discharge_date
    place = insured_place(stay.holder, discharge_date)
    require_stay_not_discharged(
        session, fixmedins_code=at.counter.fixmedins_code, admission_id=admission_id, lock=False
    )
    filing = filing_for_visit(
        filings_of(session, place.psn_no),
        visit_type="inpatient",
        visit_date=discharge_date,
        fixmedins_code=at.counter.fixmedins_code,
    )
    lines, digest = stay_lines_digest(session, stay.admission)
    return _StayPlan(_Plan(place, filing.value), lines, digest, discharge_date)


def _intent_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    row: RemoteSettlementRow,
    nonce: NonceClaim | None,
    admission_id: str | None,
) -> Stored | None:
    if nonce is not None:
        nonce.claim(session)  # first: a replayed request stops here
    outcome = begin_request(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        request_sha256=keyed.request_hash,
        now=keyed.now,
    )
    if outcome.replay:
        assert outcome.response_status is not None
        assert outcome.response_body is not None
        return Stored(outcome.response_status, outcome.response_body, replayed=True)
    if admission_id is not None:
        require_stay_not_discharged(
            session, fixmedins_code=row.fixmedins_code, admission_id=admission_id, lock=True
        )
    remote.begin_intent(session, row)
    return None


@dataclass(frozen=True, slots=True)
class Stay:
    """The admission a discharge through the hub settles (its id is the call's mdtrt_id) and
    the digest of exactly the fee lines the call carries (settlement.counter.admissions.
    stay_lines_digest), read with them. It goes with the request across the call: only the
    request that wrote the intent confirms it (a stale intent is never confirmed, it turns
    unknown and is reversed), so the digest needs no column of its own."""

    fixmedins_code: str
    admission_id: str
    lines_sha256: str


class StayChanged(Exception):
    """The hub settled a stay that is no longer the one sent: fee lines were uploaded or
    cancelled after they were read (the admission stays open until the confirmation), or the
    stay was closed or cancelled (2202, 2404: deleted) meanwhile. Booking it would close the
    stay over lines never settled, or settle it twice, so the message is treated as unknown:
    reversed at the hub, and the retry discharges the stay as it is then."""


def _close_stay(session: Session, *, stay: Stay, msgid: str) -> None:
    """The discharge through the hub closes the admission, as a local discharge does: status
    ``discharged`` with the message's id in place of a local setl_id, so later fee lines get
    ADMISSION_CLOSED. A cancel later leaves it so (as a cancelled local discharge does)."""
    admission = session.scalar(
        select(AdmissionRow)
        .where(
            AdmissionRow.admission_id == stay.admission_id,
            AdmissionRow.fixmedins_code == stay.fixmedins_code,
        )
        .with_for_update()
    )
    if admission is None:
        # Found under lock by the intent, then cancelled (2202, 2404 delete it) during the
        # call: the hub settled a visit that no longer exists here.
        raise StayChanged("the visit was cancelled")
    if admission.status is not AdmissionStatus.OPEN:
        raise StayChanged(f"{admission.status.value}, {admission.line_count} lines")
    # Lines are cancelled (2205, 2302) as well as added, so an equal count is not enough:
    # the very lines sent, compared line for line by their digest.
    _, digest = stay_lines_digest(session, admission)
    if digest != stay.lines_sha256:
        raise StayChanged(f"other fee lines than those sent, {admission.line_count} now")
    admission.status = AdmissionStatus.DISCHARGED
    admission.remote_msgid = msgid


def _confirm_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    msgid: str,
    setlinfo: Mapping[str, Any],
    settled: remote.HubSettlement,
    route: str,
    stay: Stay | None,
    render: Render[RemoteSettled],
) -> Stored:
    if stay is not None:
        # Before the message's row: the intent took the admission's lock first, so the same
        # order here never deadlocks against another discharge of the stay.
        _close_stay(session, stay=stay, msgid=msgid)
    row = remote.confirm(
        session,
        msgid=msgid,
        # Verbatim: the hub's object re-serialised key for key, never recomputed.
        setlinfo_json=json.dumps(setlinfo, ensure_ascii=False, separators=(",", ":")),
        settled=settled,
        now=keyed.now,
    )
    return answer_owned(session, keyed, render(RemoteSettled(row, setlinfo, route)))


def _fail_unit(
    session: Session, *, keyed: KeyedRequest, msgid: str, err_code: str, err_msg: str
) -> None:
    remote.fail(session, msgid=msgid, err_code=err_code, err_msg=err_msg, now=keyed.now)
    release_request(session, client_id=keyed.client_id, idempotency_key=keyed.idempotency_key)


def _parse_settled(answer_output: Mapping[str, Any]) -> tuple[dict[str, Any], remote.HubSettlement]:
    setlinfo = answer_output.get("setlinfo")
    amounts = wire.setlinfo_amounts_fen(setlinfo)  # WireError unless complete and exact
    assert isinstance(setlinfo, Mapping)
    settled = remote.HubSettlement(
        setl_id=str(setlinfo["setl_id"])[:40],
        setl_time=wire.parse_inf_time(setlinfo["setl_time"], field="setlinfo.setl_time"),
        medfee_sumamt=amounts["medfee_sumamt"],
        fund_pay_sumamt=amounts["fund_pay_sumamt"],
        acct_pay=amounts["acct_pay"],
        psn_cash_pay=amounts["psn_cash_pay"],
    )
    return dict(setlinfo), settled


async def settle_remote(
    units: Units,
    hub: Hub,
    *,
    keyed: KeyedRequest,
    nonce: NonceClaim | None,
    at: AtCounter,
    visit_type: str,
    visit_date: dt.date,
    lines: Sequence[ClaimLine],
    render: Render[RemoteSettled],
) -> Stored:
    """Settle an outpatient, emergency or pharmacy visit through the hub."""
    planned = await units.read(
        partial(
            _plan_settle,
            keyed=keyed,
            at=at,
            visit_type=visit_type,
            visit_date=visit_date,
        )
    )
    if isinstance(planned, Stored):
        return planned
    return await _through_the_hub(
        units,
        hub,
        keyed=keyed,
        nonce=nonce,
        plan=planned,
        counter=at.counter,
        visit_type=visit_type,
        visit_date=visit_date,
        lines=lines,
        stay=None,
        render=render,
    )


async def discharge_remote(
    units: Units,
    hub: Hub,
    *,
    keyed: KeyedRequest,
    nonce: NonceClaim | None,
    at: AtCounter,
    admission_id: str,
    discharge_date: dt.date | None,
    render: Render[RemoteSettled],
) -> Stored:
    """Discharge settlement (2304) of a person insured elsewhere: the stay's lines, through
    the hub, with the admission id as ``mdtrt_id``; ``discharge_date`` None: the one the stay
    recorded (2402), else today (settlement.counter.admissions.stay_to_discharge)."""
    planned = await units.read(
        partial(
            _plan_discharge,
            keyed=keyed,
            at=at,
            admission_id=admission_id,
            discharge_date=discharge_date,
        )
    )
    if isinstance(planned, Stored):
        return planned
    return await _through_the_hub(
        units,
        hub,
        keyed=keyed,
        nonce=nonce,
        plan=planned.plan,
        counter=at.counter,
        visit_type="inpatient",
        visit_date=planned.discharge_date,
        lines=planned.lines,
        stay=Stay(at.counter.fixmedins_code, admission_id, planned.lines_sha256),
        render=render,
    )


def _plan_registered(
    session: Session, *, keyed: KeyedRequest, at: AtCounter, mdtrt_id: str
) -> Stored | _StayPlan:
    """A registered outpatient visit's plan (2201's visit, settled by 2207): the settle's
    checks on the visit's date, the visit open here and this holder's, its fee lines, and no
    settlement through the hub standing for it (checked again under its lock in the intent)."""
    stored = stored_answer(session, keyed)
    if stored is not None:
        return stored
    visit = open_admission(
        session, at.counter.fixmedins_code, mdtrt_id, lock=False, visit_type="outpatient"
    )
    plan = _plan(
        session, at=at, visit_type="outpatient", visit_date=visit.admission_date, now=keyed.now
    )
    patient = session.get(InsuredPersonRow, visit.person_id)
    if patient is None or patient.psn_no != plan.place.psn_no:
        raise AdmissionOtherPerson("the card's holder is not this visit's patient")
    if visit.line_count == 0:
        raise InvalidClaim("no fee lines were uploaded for this visit")
    require_stay_not_discharged(
        session, fixmedins_code=at.counter.fixmedins_code, admission_id=mdtrt_id, lock=False
    )
    lines, digest = stay_lines_digest(session, visit)
    return _StayPlan(plan, lines, digest, visit.admission_date)


async def settle_registered_remote(
    units: Units,
    hub: Hub,
    *,
    keyed: KeyedRequest,
    nonce: NonceClaim | None,
    at: AtCounter,
    mdtrt_id: str,
    render: Render[RemoteSettled],
) -> Stored:
    """Settle a registered outpatient visit (2207 after 2201/2204) of a person insured
    elsewhere through the hub: the same steps as :func:`settle_remote`, with the visit's id as
    ``mdtrt_id`` and its fee lines, closing the visit on confirmation as a discharge closes a
    stay (the registered counterpart of settlement.counter.registered.settle_registered)."""
    planned = await units.read(partial(_plan_registered, keyed=keyed, at=at, mdtrt_id=mdtrt_id))
    if isinstance(planned, Stored):
        return planned
    return await _through_the_hub(
        units,
        hub,
        keyed=keyed,
        nonce=nonce,
        plan=planned.plan,
        counter=at.counter,
        visit_type="outpatient",
        visit_date=planned.discharge_date,
        lines=planned.lines,
        stay=Stay(at.counter.fixmedins_code, mdtrt_id, planned.lines_sha256),
        render=render,
    )


async def _through_the_hub(
    units: Units,
    hub: Hub,
    *,
    keyed: KeyedRequest,
    nonce: NonceClaim | None,
    plan: _Plan,
    counter: Counter,
    visit_type: str,
    visit_date: dt.date,
    lines: Sequence[ClaimLine],
    stay: Stay | None,
    render: Render[RemoteSettled],
) -> Stored:
    """Steps 1 to 3 of the module docstring."""
    client = require_client(hub)
    place = plan.place
    fixmedins_code = counter.fixmedins_code
    infno = wire.SETTLE_INFNO_FOR_VISIT_TYPE[visit_type]
    mdtrt_id = stay.admission_id if stay else f"M{visit_date:%Y%m%d}{secrets.token_hex(8)}"
    payload = {
        "psn_no": place.psn_no,
        "mdtrt_id": mdtrt_id,
        "visit_type": visit_type,
        "hospital_level": counter.level or 1,
        "visit_date": visit_date.isoformat(),
        "filing_type": plan.filing_type,
        "lines": [
            {
                "list_code": line.catalogue_code,
                "qty": line.quantity,
                "pric": wire.fen_to_yuan(line.unit_price_fen),
            }
            for line in lines
        ],
    }
    msgid = ""
    for draw in range(1, _MSGID_DRAWS + 1):
        msgid = client.msgids.next(fixmedins_code)
        row = RemoteSettlementRow(
            msgid=msgid,
            infno=infno,
            route=place.route.value,
            status=RemoteStatus.INTENT,
            psn_no=place.psn_no,
            insuplc_admdvs=place.insuplc_admdvs,
            fixmedins_code=fixmedins_code,
            mdtrt_id=mdtrt_id,
            visit_type=visit_type,
            visit_date=visit_date,
            filing_type=plan.filing_type,
            client_id=keyed.client_id,
            idempotency_key=keyed.idempotency_key,
            request_json=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
            created_at=keyed.now,
        )
        try:
            stored = await units.write(
                partial(
                    _intent_unit,
                    keyed=keyed,
                    row=row,
                    nonce=nonce,
                    admission_id=None if stay is None else stay.admission_id,
                )
            )
        except IntegrityError:
            if draw == _MSGID_DRAWS:
                raise
            continue  # a msgid drawn twice in one second: draw again
        if stored is not None:
            return stored
        break
    outcome = await client.call(
        infno=infno,
        msgid=msgid,
        insuplc_admdvs=place.insuplc_admdvs,
        fixmedins_code=fixmedins_code,
        payload=payload,
    )
    return await _settle_outcome(
        units,
        hub,
        keyed=keyed,
        msgid=msgid,
        outcome=outcome,
        route=place.route.value,
        stay=stay,
        render=render,
    )


async def _settle_outcome(
    units: Units,
    hub: Hub,
    *,
    keyed: KeyedRequest,
    msgid: str,
    outcome: CallOutcome,
    route: str,
    stay: Stay | None,
    render: Render[RemoteSettled],
) -> Stored:
    if outcome.outcome == "ok":
        assert outcome.answer is not None
        try:
            setlinfo, settled = _parse_settled(outcome.answer.output)
        except wire.WireError as exc:
            # The hub said yes with figures we cannot book: treat it as unknown, reverse it.
            return await _unknown(units, hub, keyed, msgid, f"unusable setlinfo: {exc.message}")
        try:
            return await units.write(
                partial(
                    _confirm_unit,
                    keyed=keyed,
                    msgid=msgid,
                    setlinfo=setlinfo,
                    settled=settled,
                    route=route,
                    stay=stay,
                    render=render,
                )
            )
        except remote.OutcomeOverridden:
            # Found stale while the call ran: already unknown and queued for reversal.
            raise HubOutcomeUnknown("answered too late") from None
        except StayChanged as changed:
            return await _unknown(
                units, hub, keyed, msgid, f"the stay changed during the discharge ({changed})"
            )
    if outcome.outcome == "refused":
        assert outcome.answer is not None
        refused = outcome.answer
        await _fail_or_overridden(
            units, keyed=keyed, msgid=msgid, err_code=refused.err_code, err_msg=refused.err_msg
        )
        raise HubRefused(f"{refused.err_code}: {refused.err_msg}"[:300])
    if outcome.outcome == "not_sent":
        await _fail_or_overridden(
            units, keyed=keyed, msgid=msgid, err_code="NOT_SENT", err_msg=outcome.error
        )
        raise unavailable(hub, outcome.error)
    return await _unknown(units, hub, keyed, msgid, outcome.error)


async def _fail_or_overridden(
    units: Units, *, keyed: KeyedRequest, msgid: str, err_code: str, err_msg: str
) -> None:
    try:
        await units.write(
            partial(_fail_unit, keyed=keyed, msgid=msgid, err_code=err_code, err_msg=err_msg)
        )
    except remote.OutcomeOverridden:
        raise HubOutcomeUnknown("answered too late") from None


async def _unknown(units: Units, hub: Hub, keyed: KeyedRequest, msgid: str, error: str) -> Stored:
    await units.write(partial(remote.mark_unknown, msgid=msgid, error=error, now=keyed.now))
    hub.queue_changed()  # send the reversal now rather than at the next poll
    raise HubOutcomeUnknown(f"no confirmed answer from the hub ({error[:80]})")
