"""The settlement API's routes and thin handlers (docs/CONTRACTS.md "Settlement API").

Every route is signed by the terminal; the terminal's institution scopes everything: its
Idempotency-Keys, the settlements it may see or cancel (another institution's settlement is
answered exactly like a missing one), its admissions and its reconciliation. Routes acting for
a cardholder take the card session in ``X-Card-Session``.

A handler parses, calls a use case of settlement.counter (local) or settlement.crossprov
(through the hub) and renders (gateway.settlement_api.views). Which of the two is a value,
decided before any transaction: the card session carries the route of the holder's
settlements, read when the card authenticated (a version 1 token: read here first), and the
handler matches on it. Order of checks (nothing is written before the request is known to be
good): card session, catalogue codes, Idempotency-Key header, then ONE unit of work that claims
the request nonce and the key, settles and stores the answer.
"""

from __future__ import annotations

from functools import partial
from typing import Final

from aiohttp import web

from gateway.crossprov.hub import HUB
from gateway.crossprov.views import (
    remote_cancel_answer,
    remote_person_view,
    remote_settled_answer,
    remote_view,
)
from gateway.errors import ErrorCode, GatewayError, codes_named
from gateway.params import ascii_int
from gateway.query import query_date
from gateway.routing import Call, ErrorList, Route
from gateway.settlement_api import calls, views
from gateway.settlement_api.models import (
    AdmissionOut,
    AdmitRequest,
    CancelRequest,
    DischargeRequest,
    EligibilityOut,
    EligibilityRequest,
    FeeLinesOut,
    FeeLinesRequest,
    PreSettleOut,
    SettlementList,
    SettlementOut,
    SettleRequest,
)
from gateway.settlement_api.reconciliation import RECONCILIATION_ROUTES
from gateway.state import DATABASE
from settlement.counter import admissions, queries
from settlement.counter import settle as at_counter
from settlement.crossprov.filings import FilingRequired
from settlement.crossprov.remote_cancel import cancel_remote, find_remote
from settlement.crossprov.remote_person import remote_person
from settlement.crossprov.remote_settle import (
    discharge_remote,
    refuse_pre_settle,
    settle_remote,
)
from settlement.crossprov.routing import Route as Way
from settlement.errors import (
    HubError,
    IdempotencyError,
    InvalidClaim,
    InvalidPerson,
    PersonNotFound,
    PolicyNotFound,
    SettlementNotFound,
)

__all__ = ["SETTLEMENT_ROUTES"]

# What the handlers can answer, by the domain errors their use cases raise (each stands for
# its registered codes and its subclasses', gateway.errors.codes_of) and the gateway's own
# families: a new subclass or family member reaches these routes with no edit here.
_SESSION_ERRORS: Final[ErrorList] = (*codes_named("CARD_SESSION_"), PersonNotFound, InvalidPerson)
_CLAIM_ERRORS: Final[ErrorList] = (InvalidClaim, PolicyNotFound)
# Persons insured in another province settle through the national hub (settlement.crossprov).
_HUB_ERRORS: Final[ErrorList] = (FilingRequired, HubError)
_KEY_ERRORS: Final[ErrorList] = (ErrorCode.IDEMPOTENCY_KEY_MISSING, IdempotencyError)


# --- handlers ---------------------------------------------------------------------------------


async def eligibility(call: Call[EligibilityRequest]) -> EligibilityOut:
    session = calls.card_session(call)
    at = calls.at_counter(call, session)
    match await calls.route_of(call, session):
        case Way.LOCAL:
            person = await call.app[DATABASE].read(
                partial(at_counter.eligibility, at=at, now=calls.now_of(call))
            )
            return views.eligibility_view(person)
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:  # ask the insured place (1101)
            remote = await remote_person(
                call.app[DATABASE], call.app[HUB], at=at, now=calls.now_of(call)
            )
            return remote_person_view(remote)


async def pre_settle(call: Call[SettleRequest]) -> PreSettleOut:
    session = calls.card_session(call)
    lines = calls.claim_of(call.body.lines)
    at = calls.at_counter(call, session)
    body = call.body
    match await calls.route_of(call, session):
        case Way.LOCAL:
            # ONE unit: the request nonce and the counter's reads (the route is
            # nonce_in_handler), the engine after it, outside the transaction. durable=False:
            # the nonce of a request that changes nothing may be lost in a power cut (never in
            # a crash), as a fresh challenge's may; a replay of this estimate within the
            # clock-skew window then answers the same terminal an estimate again. Any batch it
            # shares with a settle still commits with the full setting.
            read = await call.app[DATABASE].write(
                partial(
                    at_counter.counter_read,
                    nonce=call.nonce,
                    at=at,
                    visit_type=body.visit_type,
                    visit_date=body.visit_date,
                    now=calls.now_of(call),
                ),
                durable=False,
                grouped=True,
                concurrent=True,
            )
            return views.estimate_view(at_counter.estimate(read, lines))
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:
            # No estimate through the hub; the checks and the filing are still made.
            await call.app[DATABASE].read(
                partial(
                    refuse_pre_settle,
                    at=at,
                    visit_type=body.visit_type,
                    visit_date=body.visit_date,
                    now=calls.now_of(call),
                )
            )
            raise AssertionError("unreachable: a remote pre-settle always answers an error")


async def settle(call: Call[SettleRequest]) -> web.Response:
    session = calls.card_session(call)
    lines = calls.claim_of(call.body.lines)
    keyed = calls.keyed_request(call, operation="POST /v1/settlements", subject=session.holder_id)
    at = calls.at_counter(call, session)
    body = call.body
    match await calls.route_of(call, session):
        case Way.LOCAL:
            unit = partial(
                at_counter.settle,
                nonce=call.nonce,  # the route is nonce_in_handler: one transaction per settle
                at=at,
                visit_type=body.visit_type,
                visit_date=body.visit_date,
                lines=lines,
                render=partial(views.settled_answer, status=201),
            )
            # Group-committed on SQLite (one fsync a batch), concurrent on PostgreSQL.
            return await calls.keyed_unit(call, keyed, unit, fast=True)
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:
            stored = await settle_remote(
                call.app[DATABASE],
                call.app[HUB],
                keyed=keyed,
                nonce=call.nonce,  # claimed in the intent's transaction
                at=at,
                visit_type=body.visit_type,
                visit_date=body.visit_date,
                lines=lines,
                render=remote_settled_answer,
            )
            return calls.response(stored)


async def cancel(call: Call[CancelRequest]) -> web.Response:
    setl_id = calls.path_id(call, "setl_id", ErrorCode.SETTLEMENT_NOT_FOUND)
    keyed = calls.keyed_request(
        call, operation=f"POST /v1/settlements/{setl_id}/cancel", subject=None
    )
    institution = calls.terminal_of(call).institution_code
    # A settlement through the hub is cancelled through the hub: which one it is, is read
    # before any write transaction.
    remote = await call.app[DATABASE].read(
        partial(find_remote, fixmedins_code=institution, setl_id=setl_id)
    )
    if remote is not None:
        stored = await cancel_remote(
            call.app[DATABASE],
            call.app[HUB],
            row=remote,
            keyed=keyed,
            reason=call.body.reason,
            render=remote_cancel_answer,
        )
        return calls.response(stored)
    unit = partial(
        at_counter.cancel,
        fixmedins_code=institution,
        setl_id=setl_id,
        reason=call.body.reason,
        render=partial(views.settled_answer, status=200),
    )
    return await calls.keyed_unit(call, keyed, unit)


async def get_settlement(call: Call[None]) -> SettlementOut:
    setl_id = calls.path_id(call, "setl_id", ErrorCode.SETTLEMENT_NOT_FOUND)
    institution = calls.terminal_of(call).institution_code
    db = call.app[DATABASE]
    try:
        settled = await db.read(
            partial(queries.get_settlement, fixmedins_code=institution, setl_id=setl_id)
        )
    except SettlementNotFound:
        remote = await db.read(partial(find_remote, fixmedins_code=institution, setl_id=setl_id))
        if remote is None:
            raise
        return remote_view(remote)
    return views.settlement_view(settled)


async def list_settlements(call: Call[None]) -> SettlementList:
    day = query_date(call)
    after_id = ascii_int(call.request.query.get("cursor", "0"), max_digits=18)
    if after_id is None:
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "cursor must be a next_cursor value")
    page = await call.app[DATABASE].read(
        partial(
            queries.list_settlements,
            fixmedins_code=calls.terminal_of(call).institution_code,
            day=day,
            after_id=after_id,
        )
    )
    return views.page_view(page)


async def admit(call: Call[AdmitRequest]) -> AdmissionOut:
    session = calls.card_session(call)
    row = await call.app[DATABASE].write(
        partial(
            admissions.admit,
            holder_id=session.holder_id,
            counter=calls.counter_of(call),
            admission_date=call.body.admission_date,
            now=calls.now_of(call),
        )
    )
    return views.admission_view(row)


async def upload_fee_lines(call: Call[FeeLinesRequest]) -> FeeLinesOut | web.Response:
    admission_id = calls.path_id(call, "admission_id", ErrorCode.ADMISSION_NOT_FOUND)
    lines = calls.claim_of(call.body.lines)
    institution = calls.terminal_of(call).institution_code
    if calls.IDEMPOTENCY_HEADER in call.request.headers:
        # Optional here (the contract does not require it), but the way to make a retried
        # upload safe: without a key, a retry after a lost answer adds the lines twice.
        keyed = calls.keyed_request(
            call, operation=f"POST /v1/admissions/{admission_id}/fee-lines", subject=None
        )
        unit = partial(
            admissions.keyed_fee_lines,
            fixmedins_code=institution,
            admission_id=admission_id,
            lines=lines,
            render=views.fee_lines_answer,
        )
        return await calls.keyed_unit(call, keyed, unit)
    added = await call.app[DATABASE].write(
        partial(
            admissions.fee_lines,
            fixmedins_code=institution,
            admission_id=admission_id,
            lines=lines,
        )
    )
    return views.fee_lines_view(added)


async def discharge(call: Call[DischargeRequest]) -> web.Response:
    admission_id = calls.path_id(call, "admission_id", ErrorCode.ADMISSION_NOT_FOUND)
    session = calls.card_session(call)
    keyed = calls.keyed_request(
        call, operation=f"POST /v1/admissions/{admission_id}/discharge", subject=session.holder_id
    )
    at = calls.at_counter(call, session)
    discharge_date = call.body.discharge_date
    match await calls.route_of(call, session):
        case Way.LOCAL:
            unit = partial(
                admissions.discharge,
                at=at,
                admission_id=admission_id,
                discharge_date=discharge_date,
                render=partial(views.settled_answer, status=201),
            )
            return await calls.keyed_unit(call, keyed, unit)
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:  # the stay settles through the hub
            stored = await discharge_remote(
                call.app[DATABASE],
                call.app[HUB],
                keyed=keyed,
                nonce=call.nonce,
                at=at,
                admission_id=admission_id,
                discharge_date=discharge_date,
                render=remote_settled_answer,
            )
            return calls.response(stored)


_TAGS: Final = ("settlement",)
_IDEMPOTENT_NOTE: Final = (
    " Needs `Idempotency-Key` (DOMAIN §7): missing → 400, same key + other body → 422, same "
    "key while the first runs → 409, same key + same body → the first response verbatim "
    "(header `Idempotent-Replayed: true`). Keys are scoped to the terminal's institution "
    "and kept at least 24 h."
)

SETTLEMENT_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/v1/eligibility",
        operation_id="eligibility",
        summary="Person information (1101): insured place, type, age band, balances.",
        description="Takes the card session in `X-Card-Session`.",
        handler=eligibility,
        request_model=EligibilityRequest,
        response_model=EligibilityOut,
        tags=_TAGS,
        errors=(*_SESSION_ERRORS, ErrorCode.HUB_UNAVAILABLE, ErrorCode.HUB_REFUSED),
    ),
    Route(
        "POST",
        "/v1/settlements/pre-settle",
        operation_id="pre_settle",
        summary="Estimate a settlement (pre-settle); writes nothing.",
        handler=pre_settle,
        request_model=SettleRequest,
        response_model=PreSettleOut,
        tags=_TAGS,
        errors=(*_SESSION_ERRORS, *_CLAIM_ERRORS, ErrorCode.FILING_REQUIRED),
        nonce_in_handler=True,  # one unit: the nonce and the counter read
    ),
    Route(
        "POST",
        "/v1/settlements",
        operation_id="settle",
        summary="Settle an outpatient, emergency or pharmacy visit.",
        description="One transaction: engine, settlement, balances, ledger, stored answer."
        + _IDEMPOTENT_NOTE,
        handler=settle,
        request_model=SettleRequest,
        response_model=SettlementOut,
        response_status=201,
        tags=_TAGS,
        errors=(*_SESSION_ERRORS, *_CLAIM_ERRORS, *_KEY_ERRORS, *_HUB_ERRORS),
        nonce_in_handler=True,
    ),
    Route(
        "POST",
        "/v1/settlements/{setl_id}/cancel",
        operation_id="cancel_settlement",
        summary="Cancel a settlement in full with reversing ledger entries.",
        description="A partial refund is a cancel followed by a new settlement." + _IDEMPOTENT_NOTE,
        handler=cancel,
        request_model=CancelRequest,
        response_model=SettlementOut,
        tags=_TAGS,
        errors=(
            ErrorCode.SETTLEMENT_NOT_FOUND,
            ErrorCode.SETTLEMENT_ALREADY_CANCELLED,
            *_KEY_ERRORS,
            ErrorCode.HUB_UNAVAILABLE,
            ErrorCode.HUB_REFUSED,
        ),
    ),
    Route(
        "GET",
        "/v1/settlements/{setl_id}",
        operation_id="get_settlement",
        summary="One settlement of this institution.",
        handler=get_settlement,
        response_model=SettlementOut,
        tags=_TAGS,
        errors=(ErrorCode.SETTLEMENT_NOT_FOUND,),
    ),
    Route(
        "GET",
        "/v1/settlements",
        operation_id="list_settlements",
        summary="This institution's settlements of a day (?date=YYYY-MM-DD, Beijing time).",
        description=f"Pages of {queries.LIST_PAGE_SIZE}; follow `next_cursor` with ?cursor=.",
        handler=list_settlements,
        response_model=SettlementList,
        tags=_TAGS,
        errors=(ErrorCode.VALIDATION_FAILED,),
    ),
    Route(
        "POST",
        "/v1/admissions",
        operation_id="admit",
        summary="Inpatient admission (2401) for the cardholder.",
        handler=admit,
        request_model=AdmitRequest,
        response_model=AdmissionOut,
        response_status=201,
        tags=_TAGS,
        errors=(*_SESSION_ERRORS, ErrorCode.VISIT_TYPE_NOT_ALLOWED, ErrorCode.INVALID_VISIT),
    ),
    Route(
        "POST",
        "/v1/admissions/{admission_id}/fee-lines",
        operation_id="upload_fee_lines",
        summary="Upload fee lines of an open stay (2301).",
        description="An `Idempotency-Key` is optional here; with one, a retried upload adds "
        "its lines once (same rules as settle).",
        handler=upload_fee_lines,
        request_model=FeeLinesRequest,
        response_model=FeeLinesOut,
        tags=_TAGS,
        errors=(
            ErrorCode.ADMISSION_NOT_FOUND,
            ErrorCode.ADMISSION_CLOSED,
            ErrorCode.UNKNOWN_CATALOGUE_CODE,
            ErrorCode.TOO_MANY_LINES,
            *_KEY_ERRORS,
        ),
    ),
    Route(
        "POST",
        "/v1/admissions/{admission_id}/discharge",
        operation_id="discharge",
        summary="Discharge and settle the stay (2304).",
        description="Settles every uploaded fee line at once." + _IDEMPOTENT_NOTE,
        handler=discharge,
        request_model=DischargeRequest,
        response_model=SettlementOut,
        response_status=201,
        tags=_TAGS,
        errors=(
            *_SESSION_ERRORS,
            *_CLAIM_ERRORS,
            *_KEY_ERRORS,
            ErrorCode.ADMISSION_NOT_FOUND,
            ErrorCode.ADMISSION_CLOSED,
            ErrorCode.ADMISSION_OTHER_PERSON,
            *_HUB_ERRORS,
        ),
    ),
    *RECONCILIATION_ROUTES,
)
