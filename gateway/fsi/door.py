"""The national door's one route: ``POST {fsi_path}`` (and ``{fsi_path}/{infno}``).

Order of checks (nothing is written before the envelope is known to be good; the first write
is the transaction's own unit, whose first step checks the sign-in):

1. HTTP level (HTTP errors, problem+json): the path (404), the body size (413), the body is a
   JSON object (400 MALFORMED_JSON). Below this, the HIS gets an envelope.
2. the envelope's fields and types (FSI_ENVELOPE_INVALID), the URL's infno if any;
3. the institution: known, a hospital or pharmacy (FSI_INSTITUTION_UNKNOWN), its transport
   profile (gateway.fsi.transport);
4. the transaction: known (FSI_INFNO_UNSUPPORTED), its input;
5. ONE unit: the sign-in (FSI_SIGN_NO_INVALID), the msgid (settlement.keyed: same msgid, same
   envelope → the stored answer verbatim; different → FSI_MSGID_REUSED, infcode -2), the
   work, the answer;
6. a settle's stored answer replayed: refused FSI_MSGID_REVERSED instead if a 2601 has
   cancelled its settlement since (gateway.fsi.reversal.refuse_reversed_resend).

Failures are HTTP 200 with ``infcode`` -1 and ``err_msg`` "[CODE] 中文 English (detail)";
msgid conflicts -2. They are not stored: the same msgid may be sent again once the cause is
fixed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, Final

from aiohttp import web
from sqlalchemy.orm import Session

from gateway.errors import ERRORS, ErrorCode, GatewayError, domain_error_code
from gateway.fsi import (
    counter,
    envelope,
    files,
    filings,
    inpatient,
    queries,
    reconciliation,
    reversal,
    signin,
)
from gateway.fsi.calls import CLIENT_PREFIX, FsiCall, Handler, SignInGuard
from gateway.fsi.envelope import Envelope
from gateway.fsi.presence import PRESENCE_CACHE, PresenceCache
from gateway.fsi.store import InstitutionKeys, institution_keys
from gateway.fsi.transport import open_input
from gateway.params import ascii_int
from gateway.routing import JSON_CONTENT_TYPE, Call, Route
from gateway.state import CLOCK, DATABASE, KEY_RING
from gateway.store import MEDICAL_KINDS, Institution, Opener, SecretsUnavailable
from settlement.counter.ports import Counter
from settlement.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from settlement.keyed import KeyedRequest, Stored, request_sha256

__all__ = ["DEFAULT_FSI_PATH", "FSI_ROUTES", "TRANSACTIONS", "at_fsi_path", "fsi_context"]

# The envelope's largest body: a day's 3202 detail inline, or a big fee upload. Larger files
# go through 9101.
FSI_MAX_BODY_BYTES: Final = 1024 * 1024
INSTITUTION_CACHE_TTL_S: Final = 10.0
INSTITUTION_CACHE_ENTRIES: Final = 5_000
REPLAYED_HEADER: Final = "Idempotent-Replayed"

# Every supported transaction: docs/national-interface.md lists the same.
TRANSACTIONS: Final[Mapping[str, Handler]] = {
    "9001": signin.sign_in,
    "9002": signin.sign_out,
    "1101": counter.person_info,
    "2101": counter.pharmacy_pre_settle,
    "2102": counter.pharmacy_settle,
    "2103": counter.cancel_settlement,
    "2201": counter.register,
    "2202": counter.cancel_registration,
    "2203": counter.visit_info,
    "2204": counter.fee_upload,
    "2205": counter.fee_cancel,
    "2206": counter.registered_pre_settle,
    "2207": counter.registered_settle,
    "2208": counter.cancel_settlement,
    "2301": counter.fee_upload,
    "2302": counter.fee_cancel,
    "2303": inpatient.stay_pre_settle,
    "2304": inpatient.stay_settle,
    "2305": counter.cancel_settlement,
    "2401": inpatient.admit,
    "2402": inpatient.discharge,
    "2404": counter.cancel_registration,
    "2405": inpatient.cancel_discharge,
    "2601": reversal.reverse,
    "5201": queries.visits,
    "5203": queries.settlement,
    "5204": queries.fee_detail,
    "5206": queries.cumulative,
    "2501": filings.referral,
    "2502": filings.cancel,
    "2505": filings.designated,
    "2506": filings.cancel,
    "3201": reconciliation.totals,
    "3202": reconciliation.details,
    "9101": files.upload,
    "9102": files.download,
}


@dataclasses.dataclass(frozen=True, slots=True)
class FsiInstitution:
    counter: Counter
    keys: InstitutionKeys | None


def _institution_unit(
    session: Session, *, code: str, opener: Opener | None
) -> FsiInstitution | None:
    row = session.get(Institution, code)
    # A suspended institution (gateway admin institution suspend) is refused as unknown.
    if row is None or row.kind not in MEDICAL_KINDS or row.suspended:
        return None
    keys = institution_keys(session, code, opener)
    return FsiInstitution(Counter(row.code, row.kind, row.level), keys)


class InstitutionDirectory:
    """Institutions and their transport keys, cached per worker for a few seconds (as the
    terminal directory caches terminals): a change takes effect within the TTL."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, FsiInstitution | None]] = OrderedDict()

    async def get(self, app: web.Application, code: str) -> FsiInstitution | None:
        now = time.monotonic()
        cached = self._entries.get(code)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = await app[DATABASE].read(
                partial(_institution_unit, code=code, opener=app[KEY_RING])
            )
        except SecretsUnavailable as exc:
            raise GatewayError(ErrorCode.KEK_UNAVAILABLE, str(exc)) from None
        self._entries[code] = (now + INSTITUTION_CACHE_TTL_S, found)
        self._entries.move_to_end(code)
        while len(self._entries) > INSTITUTION_CACHE_ENTRIES:
            self._entries.popitem(last=False)
        return found


INSTITUTIONS: Final = web.AppKey("fsi_institutions", InstitutionDirectory)


async def fsi_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: this worker's institution and presence caches."""
    app[INSTITUTIONS] = InstitutionDirectory()
    app[PRESENCE_CACHE] = PresenceCache()
    yield


def _now(app: web.Application) -> dt.datetime:
    return dt.datetime.fromtimestamp(app[CLOCK](), dt.UTC)


def _path_infno(request: web.Request) -> str | None:
    infno = request.match_info.get("infno")
    # ASCII digits only: str.isdigit takes "¹²³⁴" (gateway.params).
    if infno is not None and (len(infno) != 4 or ascii_int(infno, max_digits=4) is None):
        raise web.HTTPNotFound()
    return infno


def _refusal(
    code: str, detail: str | None, *, received_at: dt.datetime, now: dt.datetime
) -> web.Response:
    spec = ERRORS[code]
    infcode = (
        envelope.INFCODE_MSGID_CONFLICT
        if code
        in (ErrorCode.FSI_MSGID_REUSED, ErrorCode.FSI_MSGID_IN_USE, ErrorCode.FSI_MSGID_REVERSED)
        else envelope.INFCODE_REFUSED
    )
    err_msg = f"[{code}] {spec.message_zh} {spec.message}"
    if detail:
        err_msg += f" ({detail[:300]})"
    body = envelope.render(
        received_at=received_at, now=now, infcode=infcode, output=None, err_msg=err_msg
    )
    return web.Response(text=body, status=200, content_type=JSON_CONTENT_TYPE)


async def call_service(call: Call[None]) -> web.Response:
    request = call.request
    app = request.app
    path_infno = _path_infno(request)
    raw = await request.read()  # bounded by the route's max_body_bytes (413)
    try:
        data = json.loads(raw, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise GatewayError(ErrorCode.MALFORMED_JSON, "the envelope is not JSON") from None
    if not isinstance(data, dict):
        raise GatewayError(ErrorCode.MALFORMED_JSON, "the envelope must be a JSON object")
    received_at = _now(app)
    try:
        return await _serve(app, data, path_infno, received_at)
    except asyncio.CancelledError:
        raise
    except GatewayError as exc:
        return _refusal(exc.code, exc.detail, received_at=received_at, now=_now(app))
    except IdempotencyKeyReused:
        code = ErrorCode.FSI_MSGID_REUSED
        if await _was_reversed(app, data):
            code = ErrorCode.FSI_MSGID_REVERSED
        return _refusal(code, None, received_at=received_at, now=_now(app))
    except IdempotencyKeyInUse:
        return _refusal(ErrorCode.FSI_MSGID_IN_USE, None, received_at=received_at, now=_now(app))
    except Exception as exc:
        domain_code = domain_error_code(exc)
        if domain_code is None:
            raise  # a bug: 500 INTERNAL, logged with the request id (gateway.middleware)
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None)
        return _refusal(
            domain_code,
            detail if isinstance(detail, str) else None,
            received_at=received_at,
            now=_now(app),
        )


async def _was_reversed(app: web.Application, data: Mapping[str, Any]) -> bool:
    code, msgid = data.get("fixmedins_code"), data.get("msgid")
    if not isinstance(code, str) or not isinstance(msgid, str):
        return False
    return await app[DATABASE].read(
        partial(reversal.is_tombstone, fixmedins_code=code, msgid=msgid)
    )


async def _serve(
    app: web.Application,
    data: Mapping[str, Any],
    path_infno: str | None,
    received_at: dt.datetime,
) -> web.Response:
    env = envelope.parse_envelope(data)
    if path_infno is not None and path_infno != env.infno:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "the URL's infno is not the envelope's")
    institution = await app[INSTITUTIONS].get(app, env.fixmedins_code)
    if institution is None:
        raise GatewayError(
            ErrorCode.FSI_INSTITUTION_UNKNOWN, "no hospital or pharmacy has this fixmedins_code"
        )
    raw_input = open_input(app, env, institution.keys, received_at)
    handler = TRANSACTIONS.get(env.infno)
    if handler is None:
        raise GatewayError(
            ErrorCode.FSI_INFNO_UNSUPPORTED,
            f"infno {env.infno} is not offered (docs/national-interface.md lists them)",
        )
    now = _now(app)
    guard = None
    if env.infno != "9001":
        guard = SignInGuard(
            sign_no=env.sign_no,
            fixmedins_code=env.fixmedins_code,
            opter=env.opter,
            dev_no=env.dev_no,
            now_s=int(now.timestamp()),
        )
    call = FsiCall(
        app=app,
        envelope=env,
        input=raw_input,
        counter=institution.counter,
        received_at=received_at,
        now=now,
        keyed=KeyedRequest(
            client_id=CLIENT_PREFIX + env.fixmedins_code,
            idempotency_key=env.msgid,
            request_hash=_fingerprint(env, raw_input),
            now=now,
        ),
        guard=guard,
    )
    stored: Stored = await handler(call)
    await reversal.refuse_reversed_resend(call, stored)  # a settle replayed after its 2601
    return web.Response(
        text=stored.body,
        status=200,
        content_type=JSON_CONTENT_TYPE,
        headers={REPLAYED_HEADER: "true"} if stored.replayed else None,
    )


def _fingerprint(env: Envelope, raw_input: Mapping[str, Any]) -> str:
    """What makes two envelopes "the same request" under one msgid: the transaction, its
    input, who and where. Not ``inf_time`` nor ``cainfo``: a resend may refresh them."""
    subject = {
        "opter": env.opter,
        "dev_no": env.dev_no,
        "sign_no": env.sign_no,
        "insuplc_admdvs": env.insuplc_admdvs,
        "mdtrtarea_admvs": env.mdtrtarea_admvs,
    }
    return request_sha256(env.infno, subject, raw_input)


DEFAULT_FSI_PATH: Final = "/fsi/api/rsfComIfsService/callService"
_DESCRIPTION: Final = (
    "Path: the `fsi_path` setting (default `/fsi/api/rsfComIfsService/callService`). Answers "
    "HTTP 200 with the response envelope; failures carry `infcode` -1 (-2 for a msgid "
    "conflict) and `err_msg`. docs/national-interface.md."
)
_FSI_ERRORS: Final = (ErrorCode.BODY_TOO_LARGE, ErrorCode.MALFORMED_JSON)

FSI_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        DEFAULT_FSI_PATH,
        operation_id="fsi_call_service",
        summary="The national interface envelope (infno, msgid, sign_no, input).",
        description=_DESCRIPTION,
        handler=call_service,
        response_schema={"type": "object"},
        tags=("national interface",),
        signed=False,
        max_body_bytes=FSI_MAX_BODY_BYTES,
        errors=_FSI_ERRORS,
    ),
    Route(
        "POST",
        DEFAULT_FSI_PATH + "/{infno}",
        operation_id="fsi_call_service_infno",
        summary="The same, with the envelope's infno appended to the URL (some clients).",
        description=_DESCRIPTION,
        handler=call_service,
        response_schema={"type": "object"},
        tags=("national interface",),
        signed=False,
        max_body_bytes=FSI_MAX_BODY_BYTES,
        errors=_FSI_ERRORS,
    ),
)


def at_fsi_path(routes: Sequence[Route], fsi_path: str) -> tuple[Route, ...]:
    """The route table with the door at the ``fsi_path`` setting (create_app: the router and
    /openapi.json both follow)."""
    if fsi_path == DEFAULT_FSI_PATH:
        return tuple(routes)
    return tuple(
        dataclasses.replace(route, path=fsi_path + route.path.removeprefix(DEFAULT_FSI_PATH))
        if route.handler is call_service
        else route
        for route in routes
    )
