"""What every settlement handler does before and after its use case: the card session, the
institution at the counter, the route, the Idempotency-Key, the unit run once per key, the
stored answer sent (gateway.settlement_api.routes and .reconciliation use these)."""

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
from gateway.errors import ErrorCode, GatewayError
from gateway.routing import JSON_CONTENT_TYPE, Call
from gateway.settlement_api.models import LineIn
from gateway.state import CLOCK, DATABASE, SETTINGS
from gateway.store import TerminalRecord
from issuance.registry import require_usable
from settlement.claim import ClaimLine
from settlement.counter.holders import insured_route
from settlement.counter.outcomes import claim_lines
from settlement.counter.ports import AtCounter, CardCheck, Counter
from settlement.crossprov.routing import Route as Way
from settlement.errors import IdempotencyKeyInUse
from settlement.keyed import KeyedRequest, Stored, request_sha256

__all__ = [
    "CARD_SESSION_HEADER",
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "at_counter",
    "card_session",
    "claim_of",
    "keyed_request",
    "keyed_unit",
    "now_of",
    "path_id",
    "registry_check",
    "response",
    "route_of",
    "run_keyed",
    "terminal_of",
]

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

# --- parsing ----------------------------------------------------------------------------------


def terminal_of(call: Call[Any]) -> TerminalRecord:
    assert call.terminal is not None  # every route here is signed
    return call.terminal


def counter_of(call: Call[Any]) -> Counter:
    terminal = terminal_of(call)
    return Counter(terminal.institution_code, terminal.institution_kind, terminal.institution_level)


def card_session(call: Call[Any]) -> CardSession:
    token = call.request.headers.get(CARD_SESSION_HEADER)
    if not token:
        raise GatewayError(ErrorCode.CARD_SESSION_INVALID, f"{CARD_SESSION_HEADER} is missing")
    return call.app[CARD_AUTH].require_card_session(token, terminal_of(call).terminal_id)


def at_counter(call: Call[Any], session: CardSession) -> AtCounter:
    return AtCounter(counter_of(call), session.holder_id, card_check(call, session))


def card_check(call: Call[Any], session: CardSession) -> CardCheck:
    """The registry re-check the use case runs inside its unit (issuance's one card read)."""
    return registry_check(call.app, session.card_sn)


def registry_check(app: web.Application, card_sn: str) -> CardCheck:
    """The card re-check of ``card_sn`` for a use case's unit: shared by both doors (the
    national envelope's card comes from card presence instead of a card session). Made per
    request and never cached (it once was, in an unbounded functools.cache keyed by every
    card seen): a partial costs less than a cache lookup, and the registry row it reads must
    be read fresh in the money transaction anyway (a loss report blocks at once)."""
    return partial(
        _require_card,
        card_sn=card_sn,
        legacy_accepted_until=app[SETTINGS].legacy_parallel_use_until,
    )


def _require_card(
    session: Session, today: dt.date, *, card_sn: str, legacy_accepted_until: dt.date | None
) -> None:
    require_usable(session, card_sn, today=today, legacy_accepted_until=legacy_accepted_until)


def _route_unit(session: Session, *, holder_id: int) -> Way:
    return insured_route(session, holder_id) or Way.LOCAL


async def route_of(call: Call[Any], session: CardSession) -> Way:
    """Which way the holder's settlements go: from the card session, or (a version 1 token)
    read now, before any write transaction."""
    if session.route is not None:
        return session.route
    return await call.app[DATABASE].read(partial(_route_unit, holder_id=session.holder_id))


def now_of(call: Call[Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(call.app[CLOCK](), dt.UTC)


def path_id(call: Call[Any], name: str, not_found: ErrorCode) -> str:
    value = call.request.match_info[name]
    if not _ID_PATTERN.fullmatch(value):
        raise GatewayError(not_found, f"malformed {name}")
    return value


def claim_of(lines: list[LineIn]) -> list[ClaimLine]:
    return claim_lines([(line.code, line.quantity, line.unit_price_fen) for line in lines])


def keyed_request(call: Call[Any], *, operation: str, subject: object) -> KeyedRequest:
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
        client_id=terminal_of(call).institution_code,
        idempotency_key=key,
        request_hash=request_sha256(operation, subject, body),
        now=now_of(call),
    )


# --- running and rendering ----------------------------------------------------------------------


def response(stored: Stored) -> web.Response:
    return web.Response(
        text=stored.body,
        status=stored.status,
        content_type=JSON_CONTENT_TYPE,
        headers={REPLAYED_HEADER: "true"} if stored.replayed else None,
    )


async def write_retrying(
    app: web.Application,
    unit: Callable[[Session], _T],
    *,
    fast: bool = False,
    durable: bool = True,
) -> _T:
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            # fast: group-committed on SQLite, beside the writer queue on PostgreSQL (db.py).
            return await app[DATABASE].write(unit, grouped=fast, concurrent=fast, durable=durable)
        except IntegrityError:
            if attempt == _WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def run_keyed(
    app: web.Application,
    keyed: KeyedRequest,
    unit: Callable[..., Stored],
    *,
    fast: bool = False,
    durable: bool = True,
) -> Stored:
    """Run ``unit(session, keyed=…)`` once per key and return its stored answer: shared by
    both doors (the ``/v1`` Idempotency-Key, the national envelope's msgid). ``durable=False``
    only for a unit that changes nothing but its key (an estimate: db.write)."""
    slot = (id(app), keyed.client_id, keyed.idempotency_key)
    if slot in _IN_FLIGHT:
        raise IdempotencyKeyInUse("the first request with this key is still running")
    _IN_FLIGHT.add(slot)
    try:
        return await write_retrying(app, partial(unit, keyed=keyed), fast=fast, durable=durable)
    finally:
        _IN_FLIGHT.discard(slot)


async def keyed_unit(
    call: Call[Any], keyed: KeyedRequest, unit: Callable[..., Stored], *, fast: bool = False
) -> web.Response:
    """Run ``unit(session, keyed=…)`` once per Idempotency-Key and answer its stored answer."""
    return response(await run_keyed(call.app, keyed, unit, fast=fast))
