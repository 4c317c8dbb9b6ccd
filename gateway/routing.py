"""One route table drives both the router and the OpenAPI document, so they cannot drift.

A :class:`Route` declares method, path, summary, request and response models, whether it is
signed, and which domain error codes its handler may raise. :func:`add_routes` registers each
route with a wrapper that runs the same pipeline for every request, in this order (cheap and
unauthenticated checks first; nothing is written before the request is known to be good):

1. in-flight bound (503 OVERLOADED)             routes with ``bounded=True``
   bearer credential (401, 403, 429)            routes with ``authorize`` (the ops API):
                                                before the body is read, so a caller without
                                                the right token learns nothing of the body's
                                                schema from a 413, 415 or 422, and costs no
                                                parse
2. body size, before and while reading (413)    routes that are signed or take a body; the
                                                limit is the route's ``max_body_bytes`` or
                                                the setting
3. terminal signature (401 …), rate limit (429) ``signed=True``: headers, signature version
                                                (v1 only in its transition window), clock
                                                skew, terminal lookup (cached), HMAC-SM3 in
                                                constant time over the canonical string,
                                                which in version 2 holds X-Card-Session,
                                                Idempotency-Key and X-Terminal-Id (an
                                                unknown id: against a dummy key); only then
                                                the terminal's state. Unproved: one answer,
                                                SIGNATURE_INVALID, for an unknown id, a
                                                disabled terminal and a wrong signature
                                                (the reason in the log and the metric);
                                                proved: TERMINAL_DISABLED if it is;
   institution kind (403)                       routes with ``institution_kinds``
4. content type (415), JSON (400), schema (422) routes with a ``request_model``
5. nonce, inserted in the database (401         ``signed=True``: the only write before the
   REQUEST_REPLAYED if already used)            handler, and only for a fully valid request
6. the handler: thin, gets a typed :class:`Call`, returns a pydantic model (rendered as JSON
   with ``response_status``) or an aiohttp response.

A route with ``nonce_in_handler=True`` moves step 5 INTO the handler's first write unit: the
handler passes ``call.nonce`` to its service, whose unit calls :meth:`NonceClaim.claim` before
anything else, so a request costs one transaction instead of two. A replay then still gets
REQUEST_REPLAYED and stores nothing: the failed insert rolls back the whole unit. Only for
handlers that have no effect before that unit (card authentication, settle, pre-settle); if
the handler returns without having claimed the nonce, the pipeline inserts it after all.

A request refused for the state of things after its signature verified spends its nonce
(the institution kind, or the handler, before its unit or inside it, whose rollback took the
nonce with it): the pipeline inserts it then, in a unit of its own. A captured refused
request cannot be sent again: its replay is REQUEST_REPLAYED, even once the cause of the
refusal (a card reported lost, then found) has gone. Two kinds of refusal write nothing:
the terminal's (missing headers, skew, unknown terminal, bad signature: anyone can send
those; a disabled terminal), and bad input (content type, JSON, schema: the signed bytes can only
ever be refused the same way).

Everything that goes wrong raises GatewayError; gateway.middleware renders it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Final, Generic, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dbkit import beijing_date
from gateway.errors import ErrorCode, GatewayError, codes_of
from gateway.logs import fields
from gateway.settings import Settings
from gateway.state import CLOCK, DATABASE, INFLIGHT, RATE_LIMITS, REQUEST_ID, SETTINGS, TERMINALS
from gateway.store import TerminalRecord, consume_nonce
from sscard import terminal_auth as ta

__all__ = [
    "Call",
    "ErrorList",
    "NonceClaim",
    "RequestModel",
    "Route",
    "Text",
    "add_routes",
    "allowed_methods",
]

BodyT = TypeVar("BodyT")

log = logging.getLogger("gateway.routing")

JSON_CONTENT_TYPE: Final = "application/json"
# Verified against when X-Terminal-Id names no terminal (gateway.routing._authenticate): random
# per process, never a terminal's, so no request can be signed by it.
_UNKNOWN_TERMINAL_KEY: Final = secrets.token_bytes(32)
_NOT_PROVED_DETAIL: Final = (
    "X-Signature is not this request's signature by an enabled terminal named X-Terminal-Id"
)
# Field errors listed in one VALIDATION_FAILED answer: enough to fix a request, bounded.
MAX_FIELD_ERRORS: Final = 20


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are errors, no type coercion ("12" is not
    an int) and no NaN or Infinity, so that what was signed is exactly what is processed."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Free text in request bodies. JSON allows "\u0000"; PostgreSQL text columns do not, so letting
# it through would turn bad input into a database error deep inside a domain service. The
# document says so with a pattern (the validator gives the clearer message).
def _no_nul_pattern(schema: dict[str, Any]) -> None:
    schema.setdefault("pattern", "^[^\\u0000]*$")  # a field's own pattern already excludes it


Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra=_no_nul_pattern)]


def exactly_one_of(fields: Sequence[str], *alternatives: Sequence[str]) -> dict[str, Any]:
    """A model's ``json_schema_extra`` for "send exactly one of these shapes": a ``oneOf`` in
    which each alternative requires its own fields (not null) and leaves every other of
    ``fields`` null or absent. The model's own validator enforces the same rule; this makes
    the document as strict as the server."""
    return {
        "oneOf": [
            {
                "required": list(alternative),
                "properties": {
                    name: ({"not": {"type": "null"}} if name in alternative else {"type": "null"})
                    for name in fields
                },
            }
            for alternative in alternatives
        ]
    }


@dataclass(slots=True)
class NonceClaim:
    """The request nonce, to be inserted by the handler's own write unit (``nonce_in_handler``
    routes). :meth:`claim` runs inside that unit, in the database thread."""

    terminal_id: str
    nonce: str
    expires_at_s: int
    claimed: bool = False

    def claim(self, session: Session) -> None:
        """Insert the nonce; raise GatewayError(REQUEST_REPLAYED) if it was used before (the
        caller's unit, and so its whole transaction or savepoint, then rolls back)."""
        try:
            consume_nonce(
                session,
                terminal_id=self.terminal_id,
                nonce=self.nonce,
                expires_at_s=self.expires_at_s,
            )
        except IntegrityError:
            raise _replayed() from None
        self.claimed = True


def _replayed() -> GatewayError:
    return GatewayError(
        ErrorCode.REQUEST_REPLAYED, "this X-Nonce was already used by this terminal"
    )


@dataclass(frozen=True, slots=True)
class Call(Generic[BodyT]):
    """What a handler gets: the request, the validated body, and the authenticated terminal
    (None on unsigned routes). ``nonce`` only on ``nonce_in_handler`` routes; ``principal``:
    what the route's ``authorize`` answered (None on routes without one)."""

    request: web.Request
    body: BodyT
    terminal: TerminalRecord | None
    nonce: NonceClaim | None = None
    principal: object = None

    @property
    def app(self) -> web.Application:
        return self.request.app


Handler = Callable[[Call[Any]], Awaitable[BaseModel | web.StreamResponse]]
# A bearer-credential check (gateway.ops.roles.ops_role): raises GatewayError, or answers who
# the caller is.
Authorize = Callable[[web.Request], Awaitable[object]]

_BODY_ERRORS: Final = (
    ErrorCode.BODY_TOO_LARGE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.MALFORMED_JSON,
    ErrorCode.VALIDATION_FAILED,
)
_AUTH_ERRORS: Final = (
    ErrorCode.BODY_TOO_LARGE,
    ErrorCode.SIGNATURE_MISSING,
    ErrorCode.SIGNATURE_INVALID,
    ErrorCode.SIGNATURE_VERSION_UNSUPPORTED,
    ErrorCode.TERMINAL_UNKNOWN,
    ErrorCode.TERMINAL_DISABLED,
    ErrorCode.TIMESTAMP_SKEW,
    ErrorCode.REQUEST_REPLAYED,
    ErrorCode.RATE_LIMITED,
    ErrorCode.DB_UNAVAILABLE,
    ErrorCode.KEK_UNAVAILABLE,
)


# A route's ``errors``: the gateway's own codes and the domain error classes its handler raises.
ErrorList = tuple[str | type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    description: str = ""
    tags: tuple[str, ...] = ()
    request_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    response_status: int = 200
    # For responses that are not a pydantic model (metrics text, the OpenAPI document).
    response_media_type: str = JSON_CONTENT_TYPE
    response_schema: dict[str, Any] = field(default_factory=dict)
    signed: bool = True
    # Counted against max_inflight_requests. Probes and scrapes are not: under overload the
    # process is still alive and its metrics still matter.
    bounded: bool = True
    # What the handler itself may raise (the pipeline's codes are derived): the domain error
    # classes its use case raises, each standing for its registered codes and its subclasses'
    # (gateway.errors.codes_of, expanded when the codes are asked for, so a subclass defined
    # in a module imported later still counts), and the gateway's own codes.
    errors: ErrorList = ()
    # The handler inserts the request nonce in its own first write unit (module docstring).
    nonce_in_handler: bool = False
    # This route's body limit; None: the max_body_bytes setting. Only for routes that take
    # files (an employer's CSV): the request is read with this limit instead of the app's.
    max_body_bytes: int | None = None
    # Institution kinds (gateway.store.InstitutionKind values) whose terminals may call this
    # route; None: any. Checked right after the signature: 403 INSTITUTION_KIND_NOT_ALLOWED.
    institution_kinds: frozenset[str] | None = None
    # An unsigned route's credential check, run before the body is read (module docstring,
    # step 1); its answer is the handler's ``call.principal``. The codes it raises are the
    # route's ``errors``.
    authorize: Authorize | None = None

    def error_codes(self) -> tuple[str, ...]:
        """Every code this route can answer with, in a stable order."""
        codes: list[str] = []
        if self.bounded:
            codes.append(ErrorCode.OVERLOADED)
        if self.signed:
            codes.extend(_AUTH_ERRORS)
        if self.institution_kinds is not None:
            codes.append(ErrorCode.INSTITUTION_KIND_NOT_ALLOWED)
        if self.request_model is not None:
            codes.extend(_BODY_ERRORS)
        for error in self.errors:
            codes.extend((error,) if isinstance(error, str) else codes_of(error))
        if "{" in self.path:
            # A path value the handler cannot take (not an id it issued, not the form the
            # route's parameter has) is an address the gateway does not have.
            codes.append(ErrorCode.NOT_FOUND)
        codes.append(ErrorCode.INTERNAL)
        return tuple(dict.fromkeys(codes))


def add_routes(router: web.UrlDispatcher, routes: Sequence[Route]) -> None:
    """Register the routes, one resource per path, each answering every method (RFC 9110):

    - HEAD wherever GET is, through the same pipeline (aiohttp sends the headers, not the body);
    - OPTIONS: 204 with ``Allow``, no credential (it names methods, nothing else);
    - any other method: 405 METHOD_NOT_ALLOWED with ``Allow``.

    ``Allow`` lists exactly this path's methods. Left to aiohttp, a wrong method's 405 would
    list the union of every resource matching the URL: ``/v1/settlements/pre-settle`` also
    matches ``/v1/settlements/{setl_id}``, so it answered ``Allow: GET,POST``.
    """
    by_path: dict[str, dict[str, Route]] = {}
    for route in routes:
        methods = by_path.setdefault(route.path, {})
        assert route.method not in methods, f"duplicate route {(route.method, route.path)}"
        assert not (route.signed and route.authorize), f"signed and bearer: {route.path}"
        methods[route.method] = route
    for path, methods in by_path.items():
        allow = allowed_methods(methods)
        resource = router.add_resource(path)
        for method, route in methods.items():
            resource.add_route(method, partial(_dispatch, route))
        if "GET" in methods and "HEAD" not in methods:
            resource.add_route("HEAD", partial(_dispatch, methods["GET"]))
        if "OPTIONS" not in methods:
            resource.add_route("OPTIONS", partial(_options, allow))
        # Last: a catch-all route shadows any method registered after it.
        resource.add_route("*", partial(_method_not_allowed, allow))


def allowed_methods(methods: Iterable[str]) -> str:
    """The ``Allow`` value for a path whose routes have these methods."""
    names = set(methods) | {"OPTIONS"}
    if "GET" in names:
        names.add("HEAD")
    return ", ".join(sorted(names))


async def _options(allow: str, _request: web.Request) -> web.StreamResponse:
    return web.Response(status=204, headers={"Allow": allow})


async def _method_not_allowed(allow: str, _request: web.Request) -> web.StreamResponse:
    raise GatewayError(
        ErrorCode.METHOD_NOT_ALLOWED,
        f"allowed here: {allow}",  # not the method itself: nothing the caller sent
        headers={"Allow": allow},
    )


async def _dispatch(route: Route, request: web.Request) -> web.StreamResponse:
    if not route.bounded:
        return await _pipeline(route, request)
    inflight = request.app[INFLIGHT]
    if inflight.count >= inflight.limit:
        raise GatewayError(ErrorCode.OVERLOADED, "too many requests in flight")
    inflight.count += 1
    try:
        return await _pipeline(route, request)
    finally:
        inflight.count -= 1


async def _pipeline(route: Route, request: web.Request) -> web.StreamResponse:
    body = b""
    # The credential before the body: a caller without it gets 401 (403, 429) whatever it
    # sent, never a 413/415/422 that would teach it the schema, and costs no read or parse.
    principal = None if route.authorize is None else await route.authorize(request)
    if route.max_body_bytes is not None:
        # The handler gets the clone, which has read the body under this route's limit.
        request = request.clone(client_max_size=route.max_body_bytes)
    if route.signed or route.request_model is not None:
        body = await _read_body(request, route.max_body_bytes)
    if not route.signed:
        payload = _parse(route, request, body)
        return await _handle(route, request, payload, None, None, principal=principal)
    headers, terminal = await _authenticate(request, body)
    claim = NonceClaim(headers.terminal_id, headers.nonce, _nonce_expiry_s(request))
    try:
        if route.institution_kinds is not None:
            _check_institution_kind(route.institution_kinds, terminal)
    except GatewayError:
        await _burn_nonce(request, claim)
        raise
    # Bad input (content type, JSON, schema) is refused and writes nothing, its nonce
    # included: a replay of it can only be refused the same way, since the bytes are signed.
    payload = _parse(route, request, body)
    try:
        return await _handle(route, request, payload, claim, terminal)
    except Exception as exc:
        # A refusal that depends on the state of things (the card, the claim, the key, the
        # hub) spends the nonce too, so a captured refused request cannot be sent again
        # within the skew window: refused again, or, once the cause has gone, done.
        replayed = isinstance(exc, GatewayError) and exc.code == ErrorCode.REQUEST_REPLAYED
        if not replayed and (route.nonce_in_handler or not claim.claimed):
            await _burn_nonce(request, claim)
        raise


def _parse(route: Route, request: web.Request, body: bytes) -> BaseModel | None:
    if route.request_model is None:
        return None
    return _parse_body(route.request_model, request, body)


async def _handle(
    route: Route,
    request: web.Request,
    payload: BaseModel | None,
    claim: NonceClaim | None,
    terminal: TerminalRecord | None,
    *,
    principal: object = None,
) -> web.StreamResponse:
    """Steps 5 and 6 of the module docstring: the nonce (here, or in the handler's unit on a
    ``nonce_in_handler`` route), the handler, the rendering."""
    if claim is not None and not route.nonce_in_handler:
        await _consume_nonce(request, claim)
        claim.claimed = True
    result = await route.handler(
        Call(
            request=request,
            body=payload,
            terminal=terminal,
            nonce=claim if route.nonce_in_handler else None,
            principal=principal,
        )
    )
    if claim is not None and route.nonce_in_handler and not claim.claimed:
        await _consume_nonce(request, claim)
    if isinstance(result, BaseModel):
        return web.Response(
            body=result.model_dump_json().encode(),
            status=route.response_status,
            content_type=JSON_CONTENT_TYPE,
        )
    return result


async def _read_body(request: web.Request, route_limit: int | None = None) -> bytes:
    limit = request.app[SETTINGS].max_body_bytes if route_limit is None else route_limit
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError(ErrorCode.BODY_TOO_LARGE, f"body is over {limit} bytes")
    try:
        # client_max_size (= max_body_bytes, or the route's limit on its clone of the request)
        # also stops a chunked body without Content-Length.
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise GatewayError(ErrorCode.BODY_TOO_LARGE, f"body is over {limit} bytes") from None


@dataclass(frozen=True, slots=True)
class _SignedHeaders:
    terminal_id: str
    timestamp_s: int
    nonce: str
    signature: bytes
    version: int
    # Version 2 signs these two header values (None: the request has none).
    card_session: str | None = None
    idempotency_key: str | None = None


def _signed_headers(request: web.Request) -> _SignedHeaders:
    names = (ta.HEADER_TERMINAL_ID, ta.HEADER_TIMESTAMP, ta.HEADER_NONCE, ta.HEADER_SIGNATURE)
    missing = [name for name in names if name not in request.headers]
    if missing:
        raise GatewayError(ErrorCode.SIGNATURE_MISSING, f"missing {', '.join(missing)}")
    try:
        terminal_id = ta.check_terminal_id(request.headers[ta.HEADER_TERMINAL_ID])
    except ta.MalformedAuthField as exc:
        raise GatewayError(ErrorCode.TERMINAL_UNKNOWN, str(exc)) from None
    version_text = request.headers.get(ta.HEADER_SIGNATURE_VERSION)
    if version_text is None:
        version = 1
    elif version_text == str(ta.SIGNATURE_VERSION):
        version = ta.SIGNATURE_VERSION
    else:
        raise GatewayError(
            ErrorCode.SIGNATURE_VERSION_UNSUPPORTED,
            f"{ta.HEADER_SIGNATURE_VERSION} must be {ta.SIGNATURE_VERSION}",
        )
    try:
        card_session = idempotency_key = None
        if version == ta.SIGNATURE_VERSION:
            card_session = _one_signed_header(request, ta.HEADER_CARD_SESSION)
            idempotency_key = _one_signed_header(request, ta.HEADER_IDEMPOTENCY_KEY)
        return _SignedHeaders(
            terminal_id=terminal_id,
            timestamp_s=ta.parse_timestamp(request.headers[ta.HEADER_TIMESTAMP]),
            nonce=ta.check_nonce(request.headers[ta.HEADER_NONCE]),
            signature=ta.parse_signature_hex(request.headers[ta.HEADER_SIGNATURE]),
            version=version,
            card_session=card_session,
            idempotency_key=idempotency_key,
        )
    except ta.MalformedAuthField as exc:
        raise GatewayError(ErrorCode.SIGNATURE_INVALID, str(exc)) from None


def _one_signed_header(request: web.Request, name: str) -> str | None:
    """The value of a header version 2 signs. Twice in one request, the signer and the
    handler could read different copies: refused."""
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise ta.MalformedAuthField(name, "must appear at most once")
    return ta.check_signed_header(name, values[0]) if values else None


def _check_version(headers: _SignedHeaders, settings: Settings, now_s: float) -> None:
    """Version 1 leaves the card session and the Idempotency-Key unsigned: accepted only
    through the ``terminal_signature_v1_until`` day (Beijing), the transition window."""
    if headers.version == ta.SIGNATURE_VERSION:
        return
    until = settings.terminal_signature_v1_until
    today = beijing_date(dt.datetime.fromtimestamp(int(now_s), dt.UTC))
    if until is None or today > until:
        raise GatewayError(
            ErrorCode.SIGNATURE_VERSION_UNSUPPORTED,
            f"sign with {ta.HEADER_SIGNATURE_VERSION}: {ta.SIGNATURE_VERSION}; "
            "version 1 (no such header) is no longer accepted",
        )


async def _authenticate(request: web.Request, body: bytes) -> tuple[_SignedHeaders, TerminalRecord]:
    app = request.app
    settings = app[SETTINGS]
    headers = _signed_headers(request)
    now_s = app[CLOCK]()
    _check_version(headers, settings, now_s)
    skew_s = headers.timestamp_s - now_s
    if abs(skew_s) > settings.clock_skew_s:
        raise GatewayError(
            ErrorCode.TIMESTAMP_SKEW,
            f"X-Timestamp is {skew_s:+.0f} s from the gateway's clock "
            f"(allowed ±{settings.clock_skew_s} s)",
        )
    terminal = await app[TERMINALS].get(headers.terminal_id)
    if terminal is None:
        # The same HMAC-SM3 and constant-time compare as for a known id, so that the time
        # taken tells no more than the answer does (the directory caches unknown ids too).
        _signed_by((_UNKNOWN_TERMINAL_KEY,), request, body, headers)
        raise _not_proved(ErrorCode.TERMINAL_UNKNOWN)
    disabled = not terminal.enabled or terminal.institution_suspended
    # The signature before the terminal's state: a caller that has not proved the key is
    # answered the same whether the id is unknown, disabled or the signature wrong.
    if not _signed_by(terminal.secrets_at(now_s), request, body, headers):
        raise _not_proved(ErrorCode.TERMINAL_DISABLED if disabled else ErrorCode.SIGNATURE_INVALID)
    # The key holder may learn its terminal's state: the clerk can act on it.
    if not terminal.enabled:
        raise GatewayError(ErrorCode.TERMINAL_DISABLED, "terminal is disabled")
    if terminal.institution_suspended:
        raise GatewayError(ErrorCode.TERMINAL_DISABLED, "this terminal's institution is suspended")
    retry_after_s = app[RATE_LIMITS].take(terminal.terminal_id, now_s)
    if retry_after_s is not None:
        raise GatewayError(
            ErrorCode.RATE_LIMITED,
            "terminal is over its request rate",
            headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
        )
    return headers, terminal


def _not_proved(reason: ErrorCode) -> GatewayError:
    """The one answer to a caller that has not proved a terminal's key: SIGNATURE_INVALID, the
    same status, title, message, detail and headers whether the id is unknown, the terminal
    disabled (or its institution suspended) or the signature wrong, so that nobody without a
    key can tell which terminal ids exist or are disabled. ``reason`` (the access log's
    ``reason``, the rejection metric's label) tells the operator which it was."""
    return GatewayError(ErrorCode.SIGNATURE_INVALID, _NOT_PROVED_DETAIL, reason=reason)


def _signed_by(
    candidates: Iterable[bytes], request: web.Request, body: bytes, headers: _SignedHeaders
) -> bool:
    """Whether one of ``candidates`` signed the request. During a rotation's overlap the
    previous secret is tried too (each compare in constant time; which one matched is nobody's
    business)."""
    for secret in candidates:
        try:
            _verify(secret, request, body, headers)
        except ta.TerminalAuthError:
            continue
        return True
    return False


def _verify(secret: bytes, request: web.Request, body: bytes, headers: _SignedHeaders) -> None:
    """Raise TerminalAuthError unless ``headers.signature`` is ``secret``'s, in the version
    the request says it is signed in."""
    if headers.version == ta.SIGNATURE_VERSION:
        ta.verify_request_signature_v2(
            secret,
            request.method,
            request.raw_path,
            headers.timestamp_s,
            headers.nonce,
            body,
            headers.signature,
            terminal_id=headers.terminal_id,
            card_session=headers.card_session,
            idempotency_key=headers.idempotency_key,
        )
    else:
        ta.verify_request_signature(
            secret,
            request.method,
            request.raw_path,
            headers.timestamp_s,
            headers.nonce,
            body,
            headers.signature,
        )


def _check_institution_kind(kinds: frozenset[str], terminal: TerminalRecord) -> None:
    if terminal.institution_kind not in kinds:
        raise GatewayError(
            ErrorCode.INSTITUTION_KIND_NOT_ALLOWED,
            f"this route is for {' and '.join(sorted(kinds))} terminals; this terminal's "
            f"institution is a {terminal.institution_kind}",
        )


def _parse_body(model: type[BaseModel], request: web.Request, body: bytes) -> BaseModel:
    charset = (request.charset or "utf-8").lower()
    if request.content_type != JSON_CONTENT_TYPE or charset not in ("utf-8", "utf8"):
        raise GatewayError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json (UTF-8)"
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise GatewayError(ErrorCode.MALFORMED_JSON, "body is not valid JSON") from None
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            f"{exc.error_count()} field error(s)",
            # Location and reason only: the rejected value could be personal data.
            errors=[
                {
                    "field": ".".join(str(part) for part in error["loc"]) or "(body)",
                    "problem": error["msg"],
                    "type": error["type"],
                }
                for error in errors[:MAX_FIELD_ERRORS]
            ],
        ) from None


def _nonce_expiry_s(request: web.Request) -> int:
    app = request.app
    return int(app[CLOCK]()) + app[SETTINGS].nonce_ttl_s


async def _burn_nonce(request: web.Request, claim: NonceClaim) -> None:
    """Insert the nonce of a refused request, if nothing committed it yet (the refusal came
    before its unit, or rolled the unit back). Already there: if no unit of this request
    claimed it, the request is a replay and is answered REQUEST_REPLAYED instead of its
    refusal; otherwise its unit committed it, and the refusal stands. The database failing:
    the refusal is answered all the same (the nonce then stays unused, as before)."""
    try:
        await _consume_nonce(request, claim)
    except GatewayError as exc:
        if exc.code == ErrorCode.REQUEST_REPLAYED and not claim.claimed:
            raise
    except Exception:  # the refusal matters more than its nonce; one line says so
        log.warning(
            "nonce of a refused request not stored",
            extra=fields(request_id=request[REQUEST_ID], terminal_id=claim.terminal_id),
        )


async def _consume_nonce(request: web.Request, claim: NonceClaim) -> None:
    try:
        await request.app[DATABASE].write(
            partial(
                consume_nonce,
                terminal_id=claim.terminal_id,
                nonce=claim.nonce,
                expires_at_s=claim.expires_at_s,
            ),
            grouped=True,  # one INSERT, no effect outside the session: group-committable
        )
    except IntegrityError:
        raise _replayed() from None
