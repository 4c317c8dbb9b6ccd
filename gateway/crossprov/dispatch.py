"""The cross-province branch of the settlement routes (gateway.settlement_api.routes).

The local units of work raise :class:`~settlement.crossprov.routing.RemoteInsuredPlace` for a
person insured outside Shanghai before they write anything (their transaction rolls back,
Idempotency-Key claim and request nonce included); the route then calls one of these, which
settle, look up or cancel through the hub instead. The local path is untouched: it pays
nothing for this branch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import partial
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.crossprov import cancel_keys, service, views
from gateway.crossprov.models import RemoteEligibilityOut, RemoteSettlementOut
from gateway.errors import ErrorCode, GatewayError
from gateway.routing import Call
from gateway.settlement_api import service as local
from gateway.state import CLOCK, DATABASE
from settlement.claim import ClaimLine
from settlement.crossprov.filings import filing_for_visit, filings_of
from settlement.crossprov.routing import RemoteInsuredPlace
from settlement.store import AdmissionFeeLineRow

__all__ = ["cancel", "discharge", "eligibility", "get_settlement", "pre_settle", "settle"]

IDEMPOTENCY_HEADER = "Idempotency-Key"


def _now(call: Call[Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(call.app[CLOCK](), dt.UTC)


def _institution(call: Call[Any]) -> str:
    assert call.terminal is not None
    return call.terminal.institution_code


def keyed_request(call: Call[Any], *, operation: str, subject: object) -> local.KeyedRequest:
    """The same key scope and request fingerprint as the local path (the header was
    validated there already)."""
    key = call.request.headers[IDEMPOTENCY_HEADER]
    body = call.body.model_dump(mode="json") if call.body is not None else None
    return local.KeyedRequest(
        client_id=_institution(call),
        idempotency_key=key,
        request_hash=local.request_sha256(operation, subject, body),
        now=_now(call),
    )


async def settle(
    call: Call[Any],
    place: RemoteInsuredPlace,
    *,
    operation: str,
    subject: object,
    visit_type: str,
    visit_date: dt.date,
    lines: list[ClaimLine],
    mdtrt_id: str | None = None,
) -> web.Response:
    nonce = call.nonce
    if nonce is not None:
        # The local unit that claimed it rolled back: claim it again in the intent unit, so a
        # replayed request can never settle twice through the hub.
        nonce.claimed = False
    return await service.settle_remote(
        call.app,
        place=place,
        keyed=keyed_request(call, operation=operation, subject=subject),
        fixmedins_code=_institution(call),
        visit_type=visit_type,
        visit_date=visit_date,
        lines=lines,
        mdtrt_id=mdtrt_id,
        nonce=nonce,
    )


async def eligibility(call: Call[Any], place: RemoteInsuredPlace) -> RemoteEligibilityOut:
    return await service.eligibility_remote(
        call.app,
        place=place,
        fixmedins_code=_institution(call),
        today=local.beijing_today(_now(call)),
    )


async def pre_settle(
    call: Call[Any], place: RemoteInsuredPlace, *, visit_type: str, visit_date: dt.date
) -> None:
    """No estimate for a person insured elsewhere: the insured place computes the split only
    when it settles (the hub offers no pre-settlement). The filing is checked, so the clerk
    learns before settling if one is missing."""
    filings = await call.app[DATABASE].read(lambda session: filings_of(session, place.psn_no))
    filing_for_visit(
        filings, visit_type=visit_type, visit_date=visit_date, fixmedins_code=_institution(call)
    )
    raise GatewayError(
        ErrorCode.VISIT_TYPE_NOT_ALLOWED,
        f"no pre-settlement for a person insured at {place.insuplc_admdvs}: the insured place "
        "computes the split when the visit is settled",
    )


async def get_settlement(call: Call[Any], setl_id: str) -> RemoteSettlementOut:
    row = await service.find_remote(call.app, fixmedins_code=_institution(call), setl_id=setl_id)
    if row is None:
        raise GatewayError(
            ErrorCode.SETTLEMENT_NOT_FOUND, "this institution has no settlement with this setl_id"
        )
    return views.remote_view(row)


async def cancel(call: Call[Any], setl_id: str, *, operation: str) -> web.Response | None:
    """Cancel through the hub when ``setl_id`` is a remote settlement of this institution;
    None when it is not (the local path answers)."""
    row = await service.find_remote(call.app, fixmedins_code=_institution(call), setl_id=setl_id)
    if row is None:
        return None
    reason = call.body.reason
    keyed = keyed_request(call, operation=operation, subject=None)
    # Fingerprinted by the settlement and the reason only, so that the reversal task can find
    # the key of a cancel request that died mid-call (gateway.crossprov.cancel_keys).
    keyed = dataclasses.replace(
        keyed, request_hash=cancel_keys.cancel_request_sha256(setl_id, reason)
    )
    return await service.cancel_remote(call.app, row=row, keyed=keyed, reason=reason)


def _stay_unit(session: Session, *, fixmedins_code: str, admission_id: str) -> list[ClaimLine]:
    """The stay's fee lines, unless it was already discharged through the hub (checked again,
    under the admission's lock, in the intent's transaction)."""
    admission = service.require_stay_not_discharged(
        session, fixmedins_code=fixmedins_code, admission_id=admission_id, lock=False
    )
    rows = session.scalars(
        select(AdmissionFeeLineRow)
        .where(AdmissionFeeLineRow.admission_id == admission.id)
        .order_by(AdmissionFeeLineRow.line_no)
    ).all()
    return [ClaimLine(f.catalogue_code, f.quantity, f.unit_price_fen) for f in rows]


async def discharge(
    call: Call[Any],
    place: RemoteInsuredPlace,
    *,
    admission_id: str,
    operation: str,
    subject: object,
) -> web.Response:
    """Discharge settlement (2304) of a person insured elsewhere: the stay's lines, through
    the hub, with the admission id as ``mdtrt_id``."""
    lines = await call.app[DATABASE].read(
        partial(_stay_unit, fixmedins_code=_institution(call), admission_id=admission_id)
    )
    return await settle(
        call,
        place,
        operation=operation,
        subject=subject,
        visit_type="inpatient",
        visit_date=call.body.discharge_date,
        lines=lines,
        mdtrt_id=admission_id,
    )
