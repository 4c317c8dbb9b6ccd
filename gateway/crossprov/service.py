"""Settling, cancelling and looking up a person insured elsewhere, through the hub.

A settle is three short steps, never one long transaction (the hub call must not hold the
database's write lock):

1. **intent** (one write): claim the Idempotency-Key and insert ``remote_settlements`` with
   status ``intent`` and the input about to be sent. Committed before anything leaves.
2. **call** the hub: bounded attempts with the same msgid (gateway.crossprov.client).
3. **outcome** (one write): ``confirmed`` + setlinfo verbatim + ledger + the stored answer
   (+ for a discharge, the admission closed with the message's id, ``remote_msgid``); or
   ``failed`` (key released, like a local 4xx); or ``unknown`` + a reversal queued + key
   released, answered 503 HUB_OUTCOME_UNKNOWN so the terminal's retry with the same key
   settles afresh under a new msgid.

A crash between 1 and 3 leaves an ``intent`` (and an in-progress key, so a retry meanwhile
gets 409): the reversal task turns it into ``unknown`` once older than the longest call,
queues its reversal and releases the key (gateway.crossprov.hub).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.crossprov.client import CallOutcome
from gateway.crossprov.hub import HUB, HubContext
from gateway.crossprov.models import RemoteEligibilityOut
from gateway.crossprov.views import remote_view, settlement_view
from gateway.errors import ErrorCode, GatewayError
from gateway.routing import JSON_CONTENT_TYPE, NonceClaim
from gateway.settlement_api.models import InsuranceOut
from gateway.settlement_api.service import AdmissionClosed, KeyedRequest, Stored
from gateway.state import DATABASE
from gateway.store import Institution
from settlement.claim import ClaimLine
from settlement.crossprov import remote, wire
from settlement.crossprov.filings import filing_for_visit, filings_of
from settlement.crossprov.routing import RemoteInsuredPlace
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus
from settlement.errors import SettlementAlreadyCancelled, SettlementNotFound
from settlement.idempotency import begin_request, finish_request, release_request
from settlement.store import AdmissionRow, AdmissionStatus, IdempotencyKey, IdempotencyStatus

__all__ = ["cancel_remote", "eligibility_remote", "find_remote", "settle_remote"]

REPLAYED_HEADER: Final = "Idempotent-Replayed"
_MSGID_DRAWS: Final = 3


def _hub(app: web.Application) -> HubContext:
    return app[HUB]


def require_client(context: HubContext) -> None:
    if context.client is None:
        raise GatewayError(ErrorCode.HUB_UNAVAILABLE, "no national hub is configured")
    breaker = context.client.breaker
    if breaker.state.name == "OPEN":
        raise GatewayError(
            ErrorCode.HUB_UNAVAILABLE,
            "the hub circuit is open after repeated connection failures",
            headers={"Retry-After": str(breaker.retry_after_s())},
        )


def unavailable(context: HubContext, error: str) -> GatewayError:
    assert context.client is not None
    return GatewayError(
        ErrorCode.HUB_UNAVAILABLE,
        f"nothing reached the hub ({error[:80]})",
        headers={"Retry-After": str(context.client.breaker.retry_after_s())},
    )


def _response(stored: Stored) -> web.Response:
    return web.Response(
        text=stored.body,
        status=stored.status,
        content_type=JSON_CONTENT_TYPE,
        headers={REPLAYED_HEADER: "true"} if stored.replayed else None,
    )


# --- settle -----------------------------------------------------------------------------------


def _plan_unit(
    session: Session,
    *,
    psn_no: str,
    fixmedins_code: str,
    visit_type: str,
    visit_date: dt.date,
) -> tuple[str, int]:
    """The filing this visit settles under (or FILING_REQUIRED) and the hospital level."""
    filing = filing_for_visit(
        filings_of(session, psn_no),
        visit_type=visit_type,
        visit_date=visit_date,
        fixmedins_code=fixmedins_code,
    )
    level = session.scalar(select(Institution.level).where(Institution.code == fixmedins_code))
    return filing.value, int(level or 1)


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
    assert admission is not None  # the local unit found it before raising
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
        raise GatewayError(
            ErrorCode.HUB_OUTCOME_UNKNOWN,
            "an earlier discharge of this stay was not confirmed and is being reversed",
        )
    return admission


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
    how many of its fee lines the call carries."""

    fixmedins_code: str
    admission_id: str
    line_count: int


class StayChanged(Exception):
    """The hub settled a stay that is no longer the one sent: fee lines were uploaded after
    they were read (the admission stays open until the confirmation), or the stay was closed
    meanwhile. Booking it would close the stay over lines never settled, or settle it twice,
    so the message is treated as unknown: reversed at the hub, and the retry discharges the
    stay as it is then."""


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
    assert admission is not None  # found under lock by the intent; admissions are never deleted
    # Fee lines are only ever appended, so an equal count means the very lines sent.
    if admission.status is not AdmissionStatus.OPEN or admission.line_count != stay.line_count:
        raise StayChanged(f"{admission.status.value}, {admission.line_count} lines")
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
    body = settlement_view(row, setlinfo, route).model_dump_json()
    return _answered(session, keyed, 201, body)


def _answered(session: Session, keyed: KeyedRequest, status: int, body: str) -> Stored:
    """Store the answer under the request's Idempotency-Key (it owns the key) and return it."""
    finish_request(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        response_status=status,
        response_body=body,
    )
    return Stored(status, body)


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
    app: web.Application,
    *,
    place: RemoteInsuredPlace,
    keyed: KeyedRequest,
    fixmedins_code: str,
    visit_type: str,
    visit_date: dt.date,
    lines: Sequence[ClaimLine],
    mdtrt_id: str | None = None,
    nonce: NonceClaim | None = None,
) -> web.Response:
    """Settle through the hub (the three steps of the module docstring)."""
    db = app[DATABASE]
    context = _hub(app)
    filing_type, level = await db.read(
        partial(
            _plan_unit,
            psn_no=place.psn_no,
            fixmedins_code=fixmedins_code,
            visit_type=visit_type,
            visit_date=visit_date,
        )
    )
    require_client(context)
    client = context.client
    assert client is not None
    infno = wire.SETTLE_INFNO_FOR_VISIT_TYPE[visit_type]
    admission_id = mdtrt_id  # given only for a discharge: the stay's admission id
    mdtrt_id = mdtrt_id or f"M{visit_date:%Y%m%d}{secrets.token_hex(8)}"
    payload = {
        "psn_no": place.psn_no,
        "mdtrt_id": mdtrt_id,
        "visit_type": visit_type,
        "hospital_level": level,
        "visit_date": visit_date.isoformat(),
        "filing_type": filing_type,
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
            filing_type=filing_type,
            client_id=keyed.client_id,
            idempotency_key=keyed.idempotency_key,
            request_json=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
            created_at=keyed.now,
        )
        try:
            stored = await db.write(
                partial(
                    _intent_unit,
                    keyed=keyed,
                    row=row,
                    nonce=nonce,
                    admission_id=admission_id,
                )
            )
        except IntegrityError:
            if draw == _MSGID_DRAWS:
                raise
            continue  # a msgid drawn twice in one second: draw again
        if stored is not None:
            return _response(stored)
        break
    outcome = await client.call(
        infno=infno,
        msgid=msgid,
        insuplc_admdvs=place.insuplc_admdvs,
        fixmedins_code=fixmedins_code,
        payload=payload,
    )
    return await _settle_outcome(
        app,
        context,
        keyed=keyed,
        msgid=msgid,
        outcome=outcome,
        route=place.route.value,
        stay=None if admission_id is None else Stay(fixmedins_code, admission_id, len(lines)),
    )


async def _settle_outcome(
    app: web.Application,
    context: HubContext,
    *,
    keyed: KeyedRequest,
    msgid: str,
    outcome: CallOutcome,
    route: str,
    stay: Stay | None,
) -> web.Response:
    db = app[DATABASE]
    if outcome.outcome == "ok":
        assert outcome.answer is not None
        try:
            setlinfo, settled = _parse_settled(outcome.answer.output)
        except wire.WireError as exc:
            # The hub said yes with figures we cannot book: treat it as unknown, reverse it.
            return await _unknown(app, context, keyed, msgid, f"unusable setlinfo: {exc.message}")
        try:
            stored = await db.write(
                partial(
                    _confirm_unit,
                    keyed=keyed,
                    msgid=msgid,
                    setlinfo=setlinfo,
                    settled=settled,
                    route=route,
                    stay=stay,
                )
            )
        except remote.OutcomeOverridden:
            # Found stale while the call ran: already unknown and queued for reversal.
            raise GatewayError(ErrorCode.HUB_OUTCOME_UNKNOWN, "answered too late") from None
        except StayChanged as changed:
            return await _unknown(
                app, context, keyed, msgid, f"the stay changed during the discharge ({changed})"
            )
        return _response(stored)
    if outcome.outcome == "refused":
        assert outcome.answer is not None
        answer = outcome.answer
        await _fail_or_overridden(
            db, keyed=keyed, msgid=msgid, err_code=answer.err_code, err_msg=answer.err_msg
        )
        raise GatewayError(ErrorCode.HUB_REFUSED, f"{answer.err_code}: {answer.err_msg}"[:300])
    if outcome.outcome == "not_sent":
        await _fail_or_overridden(
            db, keyed=keyed, msgid=msgid, err_code="NOT_SENT", err_msg=outcome.error
        )
        raise unavailable(context, outcome.error)
    return await _unknown(app, context, keyed, msgid, outcome.error)


async def _fail_or_overridden(
    db: Any, *, keyed: KeyedRequest, msgid: str, err_code: str, err_msg: str
) -> None:
    try:
        await db.write(
            partial(_fail_unit, keyed=keyed, msgid=msgid, err_code=err_code, err_msg=err_msg)
        )
    except remote.OutcomeOverridden:
        raise GatewayError(ErrorCode.HUB_OUTCOME_UNKNOWN, "answered too late") from None


async def _unknown(
    app: web.Application, context: HubContext, keyed: KeyedRequest, msgid: str, error: str
) -> web.Response:
    await app[DATABASE].write(partial(remote.mark_unknown, msgid=msgid, error=error, now=keyed.now))
    context.wake.set()  # send the reversal now rather than at the next poll
    raise GatewayError(
        ErrorCode.HUB_OUTCOME_UNKNOWN, f"no confirmed answer from the hub ({error[:80]})"
    )


# --- lookups and cancel -----------------------------------------------------------------------


def find_remote_unit(
    session: Session, *, fixmedins_code: str, setl_id: str
) -> RemoteSettlementRow | None:
    return session.scalar(
        select(RemoteSettlementRow).where(
            RemoteSettlementRow.setl_id == setl_id,
            RemoteSettlementRow.fixmedins_code == fixmedins_code,
        )
    )


async def find_remote(
    app: web.Application, *, fixmedins_code: str, setl_id: str
) -> RemoteSettlementRow | None:
    return await app[DATABASE].read(
        partial(find_remote_unit, fixmedins_code=fixmedins_code, setl_id=setl_id)
    )


def _begin_cancel_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    msgid: str,
    new_msgid: str,
    reason: str,
    owner: str,
    lease: dt.timedelta,
) -> Stored | str:
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
    row = session.scalar(
        select(RemoteSettlementRow).where(RemoteSettlementRow.msgid == msgid).with_for_update()
    )
    assert row is not None
    if row.status is RemoteStatus.CANCELLED:
        raise SettlementAlreadyCancelled(f"settlement {row.setl_id} is already cancelled")
    if row.status is not RemoteStatus.CONFIRMED:
        raise SettlementNotFound("this institution has no settlement with this setl_id")
    return remote.begin_cancel(
        session,
        row=row,
        cancel_msgid=new_msgid,
        reason=reason,
        owner=owner,
        now=keyed.now,
        lease=lease,
    )


def _cancel_booked_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    msgid: str,
    cancel_msgid: str,
    owner: str,
    cancel_json: str,
) -> Stored | None:
    row = remote.cancel_booked(
        session,
        msgid=msgid,
        cancel_msgid=cancel_msgid,
        owner=owner,
        cancel_json=cancel_json,
        now=keyed.now,
    )
    if row is None:  # the lease ran out mid-call: the reversal task decides
        release_request(session, client_id=keyed.client_id, idempotency_key=keyed.idempotency_key)
        return None
    key = session.get(
        IdempotencyKey, (keyed.client_id, keyed.idempotency_key), with_for_update=True
    )
    if key is not None and key.status is IdempotencyStatus.DONE:
        # The lease ran out mid-call and the reversal task booked this very cancel and
        # answered under this key already (gateway.crossprov.cancel_keys).
        assert key.response_status is not None
        assert key.response_body is not None
        return Stored(key.response_status, key.response_body)
    body = remote_view(row).model_dump_json()
    return _answered(session, keyed, 200, body)


def _cancel_refused_unit(
    session: Session, *, keyed: KeyedRequest, msgid: str, cancel_msgid: str, owner: str
) -> None:
    """The hub refused the cancel msgid (final for that msgid): not done, key released."""
    remote.cancel_not_done(
        session, msgid=msgid, cancel_msgid=cancel_msgid, owner=owner, now=keyed.now
    )
    release_request(session, client_id=keyed.client_id, idempotency_key=keyed.idempotency_key)


def _cancel_unresolved_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    msgid: str,
    owner: str,
    error: str,
    next_attempt_at: dt.datetime,
) -> None:
    """No answer: the cancel msgid is kept (a retry resends it), the key released (the retry
    runs afresh) and the cancel check handed to the reversal task."""
    remote.cancel_unresolved(
        session, msgid=msgid, owner=owner, error=error, next_attempt_at=next_attempt_at
    )
    release_request(session, client_id=keyed.client_id, idempotency_key=keyed.idempotency_key)


async def cancel_remote(
    app: web.Application, *, row: RemoteSettlementRow, keyed: KeyedRequest, reason: str
) -> web.Response:
    """Cancel a confirmed remote settlement (2208/2103/2305).

    The cancel msgid is written before the call and reused by every retry, so the hub cancels
    at most once, and the settlement's cancel check is leased to this request meanwhile
    (another attempt gets 503 HUB_UNAVAILABLE + Retry-After). A refusal is final for that
    msgid: 422 HUB_REFUSED, the settlement stays settled. With no usable answer (timeout,
    dropped, 5xx, or nothing sent, which may follow an earlier attempt that did reach the hub)
    the answer is 503 HUB_UNAVAILABLE: a retry resends the same msgid, and if none comes the
    reversal task resolves the cancel by itself (gateway.crossprov.hub)."""
    db = app[DATABASE]
    context = _hub(app)
    require_client(context)
    client = context.client
    assert client is not None
    owner = f"{context.owner}:cancel:{secrets.token_hex(4)}"
    try:
        started = await db.write(
            partial(
                _begin_cancel_unit,
                keyed=keyed,
                msgid=row.msgid,
                new_msgid=client.msgids.next(row.fixmedins_code, odd=True),
                reason=reason,
                owner=owner,
                lease=context.lease,
            )
        )
    except remote.CancelBusy as busy:
        raise GatewayError(
            ErrorCode.HUB_UNAVAILABLE,
            busy.message,
            headers={"Retry-After": str(busy.retry_after_s)},
        ) from None
    if isinstance(started, Stored):
        return _response(started)
    cancel_msgid = started
    outcome = await client.call(
        infno=wire.CANCEL_FOR_SETTLE[row.infno],
        msgid=cancel_msgid,
        insuplc_admdvs=row.insuplc_admdvs,
        fixmedins_code=row.fixmedins_code,
        payload={"psn_no": row.psn_no, "setl_id": row.setl_id},
    )
    now = keyed.now
    if outcome.outcome == "ok":
        assert outcome.answer is not None
        cancel_json = json.dumps(
            outcome.answer.output.get("setlinfo"), ensure_ascii=False, separators=(",", ":")
        )
        stored = await db.write(
            partial(
                _cancel_booked_unit,
                keyed=keyed,
                msgid=row.msgid,
                cancel_msgid=cancel_msgid,
                owner=owner,
                cancel_json=cancel_json,
            )
        )
        if stored is not None:
            return _response(stored)
        raise GatewayError(
            ErrorCode.HUB_UNAVAILABLE,
            "the hub answered too late; the cancel is being resolved",
            headers={"Retry-After": "1"},
        )
    if outcome.outcome == "refused":
        assert outcome.answer is not None
        await db.write(
            partial(
                _cancel_refused_unit,
                keyed=keyed,
                msgid=row.msgid,
                cancel_msgid=cancel_msgid,
                owner=owner,
            )
        )
        detail = f"{outcome.answer.err_code}: {outcome.answer.err_msg}"[:300]
        raise GatewayError(ErrorCode.HUB_REFUSED, detail)
    await db.write(
        partial(
            _cancel_unresolved_unit,
            keyed=keyed,
            msgid=row.msgid,
            owner=owner,
            error=outcome.error or outcome.outcome,
            # A breath for the terminal's own retry (same msgid, answered at once) before the
            # reversal task asks the hub itself.
            next_attempt_at=now + context.backoff(0),
        )
    )
    raise unavailable(context, outcome.error)


# --- eligibility (1101) -----------------------------------------------------------------------


def _filings_today_unit(
    session: Session, *, psn_no: str, fixmedins_code: str, today: dt.date
) -> list[str]:
    return sorted(
        {
            f.filing_type.value
            for f in filings_of(session, psn_no)
            if f.covers(today, fixmedins_code)
        }
    )


async def eligibility_remote(
    app: web.Application,
    *,
    place: RemoteInsuredPlace,
    fixmedins_code: str,
    today: dt.date,
) -> RemoteEligibilityOut:
    """Person information from the insured place (1101); read only, nothing to reverse."""
    context = _hub(app)
    require_client(context)
    client = context.client
    assert client is not None
    outcome = await client.call(
        infno=wire.INFNO_PERSON_INFO,
        msgid=client.msgids.next(fixmedins_code, odd=True),
        insuplc_admdvs=place.insuplc_admdvs,
        fixmedins_code=fixmedins_code,
        payload={"psn_no": place.psn_no},
    )
    if outcome.outcome == "refused":
        assert outcome.answer is not None
        raise GatewayError(
            ErrorCode.HUB_REFUSED, f"{outcome.answer.err_code}: {outcome.answer.err_msg}"[:300]
        )
    if outcome.outcome != "ok" or outcome.answer is None:
        raise unavailable(context, outcome.error)
    filing_types = await app[DATABASE].read(
        partial(
            _filings_today_unit, psn_no=place.psn_no, fixmedins_code=fixmedins_code, today=today
        )
    )
    output = outcome.answer.output
    try:
        base = output["baseinfo"]
        insurances = output["insuinfo"]
        age = int(base["age"])
        insuinfo = [
            InsuranceOut(
                insutype=str(item["insutype"]),
                insuplc_admdvs=str(item["insuplc_admdvs"]),
                psn_type=str(item["psn_type"]),
                balc=wire.yuan_to_fen(item["balc"], field="balc"),
                current_year_balance_fen=wire.yuan_to_fen(item["balc"], field="balc"),
                past_years_balance_fen=0,
            )
            for item in insurances
        ]
    except (KeyError, TypeError, ValueError):
        raise unavailable(context, "unreadable 1101 answer") from None
    retired = any(item.psn_type.startswith("2") for item in insuinfo)
    return RemoteEligibilityOut(
        psn_no=place.psn_no,
        age_years=age,
        retired=retired,
        benefit_category="insured_place",
        insuinfo=insuinfo,
        self_pay_band_consumed_fen=0,
        deductible_consumed_fen=0,
        pooling_fund_paid_fen=0,
        route=place.route.value,  # type: ignore[arg-type]
        filing_types=filing_types,
    )
