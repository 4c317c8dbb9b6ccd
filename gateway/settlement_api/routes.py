"""The settlement API's routes and thin handlers (docs/CONTRACTS.md "Settlement API").

Every route is signed by the terminal; the terminal's institution scopes everything: its
Idempotency-Keys, the settlements it may see or cancel (another institution's settlement is
answered exactly like a missing one), its admissions and its reconciliation. Routes acting for
a cardholder take the card session in ``X-Card-Session``.

Order of checks in a handler (nothing is written before the request is known to be good):
card session, Idempotency-Key header, catalogue codes, then ONE unit of work
(gateway.settlement_api.service) that claims the key, settles and stores the answer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from functools import partial
from typing import Any, Final, TypeVar

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.card_auth.service import CARD_AUTH
from gateway.card_auth.session import CardSession
from gateway.crossprov import dispatch as crossprov
from gateway.errors import ErrorCode, GatewayError
from gateway.routing import JSON_CONTENT_TYPE, Call, Route
from gateway.settlement_api import service
from gateway.settlement_api.models import (
    AdmissionOut,
    AdmitRequest,
    CancelRequest,
    DetailsRequest,
    DetailsResult,
    DischargeRequest,
    EligibilityOut,
    EligibilityRequest,
    FeeLinesOut,
    FeeLinesRequest,
    MismatchesOut,
    PreSettleOut,
    SettlementList,
    SettlementOut,
    SettleRequest,
    TotalsRequest,
    TotalsResult,
)
from gateway.state import CLOCK, DATABASE, SETTINGS
from gateway.store import TerminalRecord
from settlement.claim import ClaimLine
from settlement.crossprov.routing import RemoteInsuredPlace
from settlement.errors import IdempotencyKeyInUse, SettlementNotFound

__all__ = ["CARD_SESSION_HEADER", "IDEMPOTENCY_HEADER", "SETTLEMENT_ROUTES"]

_T = TypeVar("_T")

CARD_SESSION_HEADER: Final = "X-Card-Session"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
# Visible ASCII, as the IETF draft's examples; the store holds up to 255 characters.
_KEY_PATTERN: Final = re.compile(r"[\x21-\x7e]{1,255}")
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9]{1,40}")
# A unit that lost a race on a first-of-the-year row (settlement.recording) is run again.
_WRITE_ATTEMPTS: Final = 3
# Keys being handled by this worker: (app, institution, key). Only the 409 answer depends on
# it; the database decides what happens (see service's module docstring).
_IN_FLIGHT: set[tuple[int, str, str]] = set()

_SESSION_ERRORS: Final = (
    ErrorCode.CARD_SESSION_INVALID,
    ErrorCode.CARD_SESSION_EXPIRED,
    ErrorCode.CARD_SESSION_WRONG_TERMINAL,
    ErrorCode.PERSON_NOT_FOUND,
    ErrorCode.INVALID_PERSON,
)
_CLAIM_ERRORS: Final = (
    ErrorCode.UNKNOWN_CATALOGUE_CODE,
    ErrorCode.INVALID_AMOUNT,
    ErrorCode.TOO_MANY_LINES,
    ErrorCode.INVALID_VISIT,
    ErrorCode.INVALID_CLAIM,
    ErrorCode.VISIT_TYPE_NOT_ALLOWED,
    ErrorCode.POLICY_NOT_FOUND,
)
# Persons insured in another province settle through the national hub (gateway.crossprov).
_HUB_ERRORS: Final = (
    ErrorCode.FILING_REQUIRED,
    ErrorCode.HUB_UNAVAILABLE,
    ErrorCode.HUB_OUTCOME_UNKNOWN,
    ErrorCode.HUB_REFUSED,
)
_KEY_ERRORS: Final = (
    ErrorCode.IDEMPOTENCY_KEY_MISSING,
    ErrorCode.IDEMPOTENCY_KEY_IN_USE,
    ErrorCode.IDEMPOTENCY_KEY_REUSED,
)


def _terminal(call: Call[Any]) -> TerminalRecord:
    assert call.terminal is not None  # every route here is signed
    return call.terminal


def _card_session(call: Call[Any]) -> CardSession:
    token = call.request.headers.get(CARD_SESSION_HEADER)
    if not token:
        raise GatewayError(ErrorCode.CARD_SESSION_INVALID, f"{CARD_SESSION_HEADER} is missing")
    return call.app[CARD_AUTH].require_card_session(token, _terminal(call).terminal_id)


def _now(call: Call[Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(call.app[CLOCK](), dt.UTC)


def _path_id(call: Call[Any], name: str, not_found: ErrorCode) -> str:
    value = call.request.match_info[name]
    if not _ID_PATTERN.fullmatch(value):
        raise GatewayError(not_found, f"malformed {name}")
    return value


def _query_date(call: Call[Any]) -> dt.date:
    raw = call.request.query.get("date", "")
    try:
        if len(raw) != 10:
            raise ValueError
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            "query parameter date must be YYYY-MM-DD",
            errors=[{"field": "date", "problem": "must be YYYY-MM-DD", "type": "date_parsing"}],
        ) from None


async def _write_retrying(
    call: Call[Any], unit: Callable[[Session], _T], *, fast: bool = False
) -> _T:
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            # fast: group-committed on SQLite, beside the writer queue on PostgreSQL (db.py).
            return await call.app[DATABASE].write(unit, grouped=fast, concurrent=fast)
        except IntegrityError:
            if attempt == _WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _idempotent(
    call: Call[Any],
    *,
    operation: str,
    subject: object,
    unit: Callable[..., service.Stored],
    fast: bool = False,
) -> web.Response:
    """Run ``unit(session, keyed=…)`` once per Idempotency-Key and answer its stored response."""
    key = call.request.headers.get(IDEMPOTENCY_HEADER)
    if key is None or not _KEY_PATTERN.fullmatch(key):
        raise GatewayError(
            ErrorCode.IDEMPOTENCY_KEY_MISSING,
            f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters",
        )
    client_id = _terminal(call).institution_code
    body = call.body.model_dump(mode="json") if call.body is not None else None
    keyed = service.KeyedRequest(
        client_id=client_id,
        idempotency_key=key,
        request_hash=service.request_sha256(operation, subject, body),
        now=_now(call),
    )
    slot = (id(call.app), client_id, key)
    if slot in _IN_FLIGHT:
        raise IdempotencyKeyInUse("the first request with this key is still running")
    _IN_FLIGHT.add(slot)
    try:
        stored = await _write_retrying(call, partial(unit, keyed=keyed), fast=fast)
    finally:
        _IN_FLIGHT.discard(slot)
    return web.Response(
        text=stored.body,
        status=stored.status,
        content_type=JSON_CONTENT_TYPE,
        headers={REPLAYED_HEADER: "true"} if stored.replayed else None,
    )


# --- handlers ---------------------------------------------------------------------------------


async def eligibility(call: Call[EligibilityRequest]) -> EligibilityOut:
    session = _card_session(call)
    try:
        return await call.app[DATABASE].read(
            partial(
                service.eligibility_unit,
                card=_card_check(call, session),
                holder_id=session.holder_id,
                now=_now(call),
            )
        )
    except RemoteInsuredPlace as place:  # insured elsewhere: ask the insured place (1101)
        return await crossprov.eligibility(call, place)


async def pre_settle(call: Call[SettleRequest]) -> PreSettleOut:
    session = _card_session(call)
    lines = service.claim_lines(call.body.lines)
    try:
        return await _pre_settle_local(call, session, lines)
    except RemoteInsuredPlace as place:
        await crossprov.pre_settle(
            call, place, visit_type=call.body.visit_type, visit_date=call.body.visit_date
        )
        raise AssertionError("unreachable: a remote pre-settle always answers an error") from None


async def _pre_settle_local(
    call: Call[SettleRequest], session: CardSession, lines: list[ClaimLine]
) -> PreSettleOut:
    # ONE unit: the request nonce and the counter read (the route is nonce_in_handler), instead
    # of a nonce transaction then a read transaction. Group-committed on SQLite, its own
    # transaction on PostgreSQL. durable=False: the nonce of a request that changes nothing
    # may be lost in a power cut (never in a crash), as a fresh challenge's may; a replay of
    # this estimate within the clock-skew window then answers the same terminal an estimate
    # again. Any batch it shares with a settle still commits with the full setting.
    read = await call.app[DATABASE].write(
        partial(
            service.counter_unit,
            nonce=call.nonce,
            card=_card_check(call, session),
            holder_id=session.holder_id,
            fixmedins_code=_terminal(call).institution_code,
            visit_type=call.body.visit_type,
            visit_date=call.body.visit_date,
            now=_now(call),
        ),
        durable=False,
        grouped=True,
        concurrent=True,
    )
    return service.estimate(read, lines)  # the engine, outside the transaction


def _card_check(call: Call[Any], session: CardSession) -> service.CardCheck:
    return service.CardCheck(
        card_sn=session.card_sn,
        legacy_accepted_until=call.app[SETTINGS].legacy_parallel_use_until,
    )


async def settle(call: Call[SettleRequest]) -> web.Response:
    session = _card_session(call)
    lines = service.claim_lines(call.body.lines)
    try:
        return await _settle_local(call, session, lines)
    except RemoteInsuredPlace as place:  # insured elsewhere: through the hub
        return await crossprov.settle(
            call,
            place,
            operation="POST /v1/settlements",
            subject=session.holder_id,
            visit_type=call.body.visit_type,
            visit_date=call.body.visit_date,
            lines=lines,
        )


async def _settle_local(
    call: Call[SettleRequest], session: CardSession, lines: list[ClaimLine]
) -> web.Response:
    return await _idempotent(
        call,
        operation="POST /v1/settlements",
        subject=session.holder_id,
        unit=partial(
            service.settle_unit,
            card=_card_check(call, session),
            holder_id=session.holder_id,
            fixmedins_code=_terminal(call).institution_code,
            visit_type=call.body.visit_type,
            visit_date=call.body.visit_date,
            lines=lines,
            nonce=call.nonce,  # the route is nonce_in_handler: one transaction per settle
        ),
        # Group-committed on SQLite (one fsync a batch), concurrent on PostgreSQL.
        fast=True,
    )


async def cancel(call: Call[CancelRequest]) -> web.Response:
    setl_id = _path_id(call, "setl_id", ErrorCode.SETTLEMENT_NOT_FOUND)
    if IDEMPOTENCY_HEADER in call.request.headers and _KEY_PATTERN.fullmatch(
        call.request.headers[IDEMPOTENCY_HEADER]
    ):
        # A settlement through the hub is cancelled through the hub (one read first).
        remote = await crossprov.cancel(
            call, setl_id, operation=f"POST /v1/settlements/{setl_id}/cancel"
        )
        if remote is not None:
            return remote
    return await _idempotent(
        call,
        operation=f"POST /v1/settlements/{setl_id}/cancel",
        subject=None,
        unit=partial(
            service.cancel_unit,
            fixmedins_code=_terminal(call).institution_code,
            setl_id=setl_id,
            reason=call.body.reason,
        ),
    )


async def get_settlement(call: Call[None]) -> SettlementOut:
    setl_id = _path_id(call, "setl_id", ErrorCode.SETTLEMENT_NOT_FOUND)
    try:
        return await call.app[DATABASE].read(
            partial(
                service.get_settlement_unit,
                fixmedins_code=_terminal(call).institution_code,
                setl_id=setl_id,
            )
        )
    except SettlementNotFound:
        return await crossprov.get_settlement(call, setl_id)  # or 404 as well


async def list_settlements(call: Call[None]) -> SettlementList:
    day = _query_date(call)
    cursor = call.request.query.get("cursor", "0")
    if not cursor.isdigit() or len(cursor) > 18:
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "cursor must be a next_cursor value")
    return await call.app[DATABASE].read(
        partial(
            service.list_settlements_unit,
            fixmedins_code=_terminal(call).institution_code,
            day=day,
            after_id=int(cursor),
        )
    )


async def admit(call: Call[AdmitRequest]) -> AdmissionOut:
    session = _card_session(call)
    return await call.app[DATABASE].write(
        partial(
            service.admit_unit,
            holder_id=session.holder_id,
            fixmedins_code=_terminal(call).institution_code,
            admission_date=call.body.admission_date,
            now=_now(call),
        )
    )


async def upload_fee_lines(call: Call[FeeLinesRequest]) -> FeeLinesOut | web.Response:
    admission_id = _path_id(call, "admission_id", ErrorCode.ADMISSION_NOT_FOUND)
    lines = service.claim_lines(call.body.lines)
    if IDEMPOTENCY_HEADER in call.request.headers:
        # Optional here (the contract does not require it), but the way to make a retried
        # upload safe: without a key, a retry after a lost answer adds the lines twice.
        return await _idempotent(
            call,
            operation=f"POST /v1/admissions/{admission_id}/fee-lines",
            subject=None,
            unit=partial(
                service.keyed_fee_lines_unit,
                fixmedins_code=_terminal(call).institution_code,
                admission_id=admission_id,
                lines=lines,
            ),
        )
    admission, accepted, total = await call.app[DATABASE].write(
        partial(
            service.fee_lines_unit,
            fixmedins_code=_terminal(call).institution_code,
            admission_id=admission_id,
            lines=lines,
        )
    )
    return FeeLinesOut(admission_id=admission, accepted=accepted, line_count=total)


async def discharge(call: Call[DischargeRequest]) -> web.Response:
    admission_id = _path_id(call, "admission_id", ErrorCode.ADMISSION_NOT_FOUND)
    session = _card_session(call)
    try:
        return await _discharge_local(call, session, admission_id)
    except RemoteInsuredPlace as place:  # insured elsewhere: the stay settles through the hub
        return await crossprov.discharge(
            call,
            place,
            admission_id=admission_id,
            operation=f"POST /v1/admissions/{admission_id}/discharge",
            subject=session.holder_id,
        )


async def _discharge_local(
    call: Call[DischargeRequest], session: CardSession, admission_id: str
) -> web.Response:
    return await _idempotent(
        call,
        operation=f"POST /v1/admissions/{admission_id}/discharge",
        subject=session.holder_id,
        unit=partial(
            service.discharge_unit,
            card=_card_check(call, session),
            holder_id=session.holder_id,
            fixmedins_code=_terminal(call).institution_code,
            admission_id=admission_id,
            discharge_date=call.body.discharge_date,
        ),
    )


async def reconcile_totals(call: Call[TotalsRequest]) -> TotalsResult:
    return await call.app[DATABASE].write(
        partial(
            service.totals_unit,
            fixmedins_code=_terminal(call).institution_code,
            body=call.body,
            now=_now(call),
        )
    )


async def reconcile_details(call: Call[DetailsRequest]) -> DetailsResult:
    return await call.app[DATABASE].write(
        partial(
            service.details_unit,
            fixmedins_code=_terminal(call).institution_code,
            body=call.body,
            now=_now(call),
        )
    )


async def reconciliation_mismatches(call: Call[None]) -> MismatchesOut:
    day = _query_date(call)
    institution = _terminal(call).institution_code
    ops = {
        code.strip()
        for code in call.app[SETTINGS].reconciliation_ops_institutions.split(",")
        if code.strip()
    }
    scope = call.request.query.get("scope", "institution")
    if scope not in ("institution", "all"):
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "scope must be institution or all")
    if scope == "all" and institution not in ops:
        raise GatewayError(
            ErrorCode.RECONCILIATION_FORBIDDEN, "scope=all is for operations terminals"
        )
    return await call.app[DATABASE].read(
        partial(
            service.mismatches_unit,
            day=day,
            fixmedins_code=None if scope == "all" else institution,
        )
    )


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
        description=f"Pages of {service.LIST_PAGE_SIZE}; follow `next_cursor` with ?cursor=.",
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
    Route(
        "POST",
        "/v1/reconciliation/totals",
        operation_id="reconcile_totals",
        summary="Totals reconciliation (3201) for a day and clr_type.",
        handler=reconcile_totals,
        request_model=TotalsRequest,
        response_model=TotalsResult,
        tags=_TAGS,
    ),
    Route(
        "POST",
        "/v1/reconciliation/details",
        operation_id="reconcile_details",
        summary="Detail reconciliation (3202): the settlements that differ.",
        handler=reconcile_details,
        request_model=DetailsRequest,
        response_model=DetailsResult,
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/v1/reconciliation/mismatches",
        operation_id="reconciliation_mismatches",
        summary="A day's reconciliation mismatches (?date=YYYY-MM-DD[&scope=all]).",
        description="Any terminal lists its own institution's mismatching runs. `scope=all` "
        "lists every institution's and is for operations terminals only: those of the "
        "institutions in the `reconciliation_ops_institutions` setting (else 403).",
        handler=reconciliation_mismatches,
        response_model=MismatchesOut,
        tags=_TAGS,
        errors=(ErrorCode.VALIDATION_FAILED, ErrorCode.RECONCILIATION_FORBIDDEN),
    ),
)
