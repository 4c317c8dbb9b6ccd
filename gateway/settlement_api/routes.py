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
from gateway.crossprov.hub import HUB
from gateway.crossprov.views import (
    remote_cancel_answer,
    remote_person_view,
    remote_settled_answer,
    remote_view,
)
from gateway.errors import ErrorCode, GatewayError
from gateway.routing import JSON_CONTENT_TYPE, Call, Route
from gateway.settlement_api import views
from gateway.settlement_api.models import (
    AdmissionOut,
    AdmitRequest,
    CancelRequest,
    DetailRow,
    DetailsRequest,
    DetailsResult,
    DischargeRequest,
    EligibilityOut,
    EligibilityRequest,
    FeeLinesOut,
    FeeLinesRequest,
    LineIn,
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
from issuance.registry import require_usable
from settlement.claim import ClaimLine
from settlement.counter import admissions, queries, reconcile
from settlement.counter import settle as at_counter
from settlement.counter.holders import insured_route
from settlement.counter.outcomes import claim_lines
from settlement.counter.ports import AtCounter, CardCheck, Counter
from settlement.crossprov.remote_cancel import cancel_remote, find_remote
from settlement.crossprov.remote_person import remote_person
from settlement.crossprov.remote_settle import (
    discharge_remote,
    refuse_pre_settle,
    settle_remote,
)
from settlement.crossprov.routing import Route as Way
from settlement.errors import IdempotencyKeyInUse, SettlementNotFound
from settlement.keyed import KeyedRequest, Stored, request_sha256
from settlement.reconciliation import Figures

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
# it; the database decides what happens (settlement.keyed). Bounded by the requests in flight
# (max_inflight_requests): an entry lives exactly as long as its request.
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
# Persons insured in another province settle through the national hub (settlement.crossprov).
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


# --- parsing ----------------------------------------------------------------------------------


def _terminal(call: Call[Any]) -> TerminalRecord:
    assert call.terminal is not None  # every route here is signed
    return call.terminal


def _counter(call: Call[Any]) -> Counter:
    terminal = _terminal(call)
    return Counter(terminal.institution_code, terminal.institution_kind, terminal.institution_level)


def _card_session(call: Call[Any]) -> CardSession:
    token = call.request.headers.get(CARD_SESSION_HEADER)
    if not token:
        raise GatewayError(ErrorCode.CARD_SESSION_INVALID, f"{CARD_SESSION_HEADER} is missing")
    return call.app[CARD_AUTH].require_card_session(token, _terminal(call).terminal_id)


def _at_counter(call: Call[Any], session: CardSession) -> AtCounter:
    return AtCounter(_counter(call), session.holder_id, _card_check(call, session))


def _card_check(call: Call[Any], session: CardSession) -> CardCheck:
    """The registry re-check the use case runs inside its unit (issuance's one card read)."""
    return partial(
        _require_card,
        card_sn=session.card_sn,
        legacy_accepted_until=call.app[SETTINGS].legacy_parallel_use_until,
    )


def _require_card(
    session: Session, today: dt.date, *, card_sn: str, legacy_accepted_until: dt.date | None
) -> None:
    require_usable(session, card_sn, today=today, legacy_accepted_until=legacy_accepted_until)


def _route_unit(session: Session, *, holder_id: int) -> Way:
    return insured_route(session, holder_id) or Way.LOCAL


async def _route(call: Call[Any], session: CardSession) -> Way:
    """Which way the holder's settlements go: from the card session, or (a version 1 token)
    read now, before any write transaction."""
    if session.route is not None:
        return session.route
    return await call.app[DATABASE].read(partial(_route_unit, holder_id=session.holder_id))


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


def _lines(lines: list[LineIn]) -> list[ClaimLine]:
    return claim_lines([(line.code, line.quantity, line.unit_price_fen) for line in lines])


def _keyed(call: Call[Any], *, operation: str, subject: object) -> KeyedRequest:
    """The request under its Idempotency-Key, scoped to the terminal's institution and
    fingerprinted by operation, cardholder and body."""
    key = call.request.headers.get(IDEMPOTENCY_HEADER)
    if key is None or not _KEY_PATTERN.fullmatch(key):
        raise GatewayError(
            ErrorCode.IDEMPOTENCY_KEY_MISSING,
            f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters",
        )
    body = call.body.model_dump(mode="json") if call.body is not None else None
    return KeyedRequest(
        client_id=_terminal(call).institution_code,
        idempotency_key=key,
        request_hash=request_sha256(operation, subject, body),
        now=_now(call),
    )


# --- running and rendering ----------------------------------------------------------------------


def _response(stored: Stored) -> web.Response:
    return web.Response(
        text=stored.body,
        status=stored.status,
        content_type=JSON_CONTENT_TYPE,
        headers={REPLAYED_HEADER: "true"} if stored.replayed else None,
    )


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


async def _keyed_unit(
    call: Call[Any], keyed: KeyedRequest, unit: Callable[..., Stored], *, fast: bool = False
) -> web.Response:
    """Run ``unit(session, keyed=…)`` once per Idempotency-Key and answer its stored answer."""
    slot = (id(call.app), keyed.client_id, keyed.idempotency_key)
    if slot in _IN_FLIGHT:
        raise IdempotencyKeyInUse("the first request with this key is still running")
    _IN_FLIGHT.add(slot)
    try:
        stored = await _write_retrying(call, partial(unit, keyed=keyed), fast=fast)
    finally:
        _IN_FLIGHT.discard(slot)
    return _response(stored)


# --- handlers ---------------------------------------------------------------------------------


async def eligibility(call: Call[EligibilityRequest]) -> EligibilityOut:
    session = _card_session(call)
    at = _at_counter(call, session)
    match await _route(call, session):
        case Way.LOCAL:
            person = await call.app[DATABASE].read(
                partial(at_counter.eligibility, at=at, now=_now(call))
            )
            return views.eligibility_view(person)
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:  # ask the insured place (1101)
            remote = await remote_person(call.app[DATABASE], call.app[HUB], at=at, now=_now(call))
            return remote_person_view(remote)


async def pre_settle(call: Call[SettleRequest]) -> PreSettleOut:
    session = _card_session(call)
    lines = _lines(call.body.lines)
    at = _at_counter(call, session)
    body = call.body
    match await _route(call, session):
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
                    now=_now(call),
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
                    now=_now(call),
                )
            )
            raise AssertionError("unreachable: a remote pre-settle always answers an error")


async def settle(call: Call[SettleRequest]) -> web.Response:
    session = _card_session(call)
    lines = _lines(call.body.lines)
    keyed = _keyed(call, operation="POST /v1/settlements", subject=session.holder_id)
    at = _at_counter(call, session)
    body = call.body
    match await _route(call, session):
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
            return await _keyed_unit(call, keyed, unit, fast=True)
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
            return _response(stored)


async def cancel(call: Call[CancelRequest]) -> web.Response:
    setl_id = _path_id(call, "setl_id", ErrorCode.SETTLEMENT_NOT_FOUND)
    keyed = _keyed(call, operation=f"POST /v1/settlements/{setl_id}/cancel", subject=None)
    institution = _terminal(call).institution_code
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
        return _response(stored)
    unit = partial(
        at_counter.cancel,
        fixmedins_code=institution,
        setl_id=setl_id,
        reason=call.body.reason,
        render=partial(views.settled_answer, status=200),
    )
    return await _keyed_unit(call, keyed, unit)


async def get_settlement(call: Call[None]) -> SettlementOut:
    setl_id = _path_id(call, "setl_id", ErrorCode.SETTLEMENT_NOT_FOUND)
    institution = _terminal(call).institution_code
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
    day = _query_date(call)
    cursor = call.request.query.get("cursor", "0")
    if not cursor.isdigit() or len(cursor) > 18:
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "cursor must be a next_cursor value")
    page = await call.app[DATABASE].read(
        partial(
            queries.list_settlements,
            fixmedins_code=_terminal(call).institution_code,
            day=day,
            after_id=int(cursor),
        )
    )
    return views.page_view(page)


async def admit(call: Call[AdmitRequest]) -> AdmissionOut:
    session = _card_session(call)
    row = await call.app[DATABASE].write(
        partial(
            admissions.admit,
            holder_id=session.holder_id,
            counter=_counter(call),
            admission_date=call.body.admission_date,
            now=_now(call),
        )
    )
    return views.admission_view(row)


async def upload_fee_lines(call: Call[FeeLinesRequest]) -> FeeLinesOut | web.Response:
    admission_id = _path_id(call, "admission_id", ErrorCode.ADMISSION_NOT_FOUND)
    lines = _lines(call.body.lines)
    institution = _terminal(call).institution_code
    if IDEMPOTENCY_HEADER in call.request.headers:
        # Optional here (the contract does not require it), but the way to make a retried
        # upload safe: without a key, a retry after a lost answer adds the lines twice.
        keyed = _keyed(
            call, operation=f"POST /v1/admissions/{admission_id}/fee-lines", subject=None
        )
        unit = partial(
            admissions.keyed_fee_lines,
            fixmedins_code=institution,
            admission_id=admission_id,
            lines=lines,
            render=views.fee_lines_answer,
        )
        return await _keyed_unit(call, keyed, unit)
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
    admission_id = _path_id(call, "admission_id", ErrorCode.ADMISSION_NOT_FOUND)
    session = _card_session(call)
    keyed = _keyed(
        call, operation=f"POST /v1/admissions/{admission_id}/discharge", subject=session.holder_id
    )
    at = _at_counter(call, session)
    discharge_date = call.body.discharge_date
    match await _route(call, session):
        case Way.LOCAL:
            unit = partial(
                admissions.discharge,
                at=at,
                admission_id=admission_id,
                discharge_date=discharge_date,
                render=partial(views.settled_answer, status=201),
            )
            return await _keyed_unit(call, keyed, unit)
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
            return _response(stored)


async def reconcile_totals(call: Call[TotalsRequest]) -> TotalsResult:
    body = call.body
    outcome = await call.app[DATABASE].write(
        partial(
            reconcile.totals,
            fixmedins_code=_terminal(call).institution_code,
            stmt_date=body.stmt_date,
            clr_type=body.clr_type,
            theirs=Figures(
                body.fixmedins_setl_cnt,
                body.medfee_sumamt,
                body.fund_pay_sumamt,
                body.acct_pay,
                body.psn_cash_pay,
            ),
            now=_now(call),
            render=views.figures_json,
        )
    )
    return views.totals_view(outcome)


def _amounts(row: DetailRow) -> tuple[int, int, int, int]:
    return row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay, row.psn_cash_pay


async def reconcile_details(call: Call[DetailsRequest]) -> DetailsResult:
    body = call.body
    outcome = await call.app[DATABASE].write(
        partial(
            reconcile.details,
            fixmedins_code=_terminal(call).institution_code,
            stmt_date=body.stmt_date,
            clr_type=body.clr_type,
            theirs=[
                (
                    row.setl_id,
                    Figures(
                        1, row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay, row.psn_cash_pay
                    ),
                )
                for row in body.details
            ],
            now=_now(call),
            render=views.figures_json,
        )
    )
    return views.details_view(outcome)


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
    runs = await call.app[DATABASE].read(
        partial(
            reconcile.mismatches,
            day=day,
            fixmedins_code=None if scope == "all" else institution,
        )
    )
    return MismatchesOut(
        date=day,
        scope="all" if scope == "all" else "institution",
        items=[views.mismatch_view(run) for run in runs],
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
