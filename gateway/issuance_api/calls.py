"""What every issuance handler does around its use case: who acts (the terminal's issuance
agent), when, under which programme and issuing CA, and the one shape of a write keyed by the
card in the path (with its 409 ILLEGAL_TRANSITION answer).

All routes are signed by the terminal. The terminal's institution acts in its issuance role
(``issuance_agents``, see issuance.access): no agent row -> 403 ISSUANCE_FORBIDDEN; a record
outside the role's scope -> 404, exactly like a record that does not exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from aiohttp import web
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.errors import PROBLEM_CONTENT_TYPE, ErrorCode, GatewayError, problem_body
from gateway.params import ascii_int
from gateway.routing import Call
from gateway.state import CLOCK, DATABASE, ERROR_CODE, REQUEST_ID, SETTINGS
from issuance import queries
from issuance.access import Agent
from issuance.errors import IllegalTransition, IssuanceForbidden, IssuingCaUnavailable
from issuance.production import IssuingCa, demo_issuing_ca
from issuance.programme import Programme, default_programme, load_programme

__all__ = [
    "UnitFor",
    "agent",
    "batch_id",
    "card_event",
    "card_sn",
    "card_write",
    "issuing_ca",
    "now",
    "programme",
    "write",
]

T = TypeVar("T")
R = TypeVar("R")


def now(call: Call[Any]) -> dt.datetime:
    """The gateway clock's time of this call (UTC)."""
    return dt.datetime.fromtimestamp(call.app[CLOCK](), dt.UTC)


async def agent(call: Call[Any]) -> Agent:
    """The calling terminal's institution in its issuance role; 403 without one."""
    terminal = call.terminal
    assert terminal is not None
    found = await call.app[DATABASE].read(
        partial(
            queries.find_agent,
            institution_code=terminal.institution_code,
            terminal_id=terminal.terminal_id,
        )
    )
    if found is None:
        raise IssuanceForbidden("this institution has no issuance role")
    return found


# Keyed by the issuance_programme_file setting: one entry in a serving process (one Settings);
# the bound is for processes that build many apps (tests), which reread a file evicted.
_PROGRAMME_FILES_MAX: Final = 8


@functools.lru_cache(maxsize=_PROGRAMME_FILES_MAX)
def _programme_file(path: Path) -> Programme:
    # Checked when the settings were loaded; read once per process.
    return load_programme(path)


def programme(call: Call[Any]) -> Programme:
    """The programme of the ``issuance_programme_file`` setting, else the built-in 2019 one."""
    path = call.app[SETTINGS].issuance_programme_file
    return default_programme() if path is None else _programme_file(path)


def issuing_ca(call: Call[Any]) -> IssuingCa:
    """The CA that certifies new cards' keys (the demo world's only, so far)."""
    settings = call.app[SETTINGS]
    if not settings.should_load_demo_world():
        raise IssuingCaUnavailable("no issuing CA key is configured for card production")
    return demo_issuing_ca(settings.demo_seed)


def _illegal(call: Call[Any], exc: IllegalTransition) -> web.Response:
    code = ErrorCode.ILLEGAL_TRANSITION
    body = problem_body(code, request_id=call.request[REQUEST_ID], detail=exc.message)
    body.update(current_state=exc.current, event=exc.event, allowed_transitions=list(exc.allowed))
    response = web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=409,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    response[ERROR_CODE] = code
    metrics.REJECTIONS.labels(code).inc()
    return response


async def write(call: Call[Any], unit: Callable[[Session], T]) -> T | web.Response:
    """One unit of work on the writer; an illegal stage change becomes the 409 answer."""
    try:
        return await call.app[DATABASE].write(unit)
    except IllegalTransition as exc:
        return _illegal(call, exc)


def card_sn(call: Call[Any]) -> str:
    """The ``{card_sn}`` of the path, upper-case; 422 unless 32 hex digits."""
    sn = call.request.match_info["card_sn"]
    if len(sn) != 32 or any(c not in "0123456789abcdefABCDEF" for c in sn):
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "card_sn must be 32 hex digits")
    return sn.upper()


# Builds the unit of a write keyed by the card in the path, from who acts, which card and when.
UnitFor = Callable[[Agent, str, dt.datetime], Callable[[Session], T]]


def card_event(change: Callable[[Session, Agent, str, dt.datetime], T]) -> UnitFor[T]:
    """The unit builder of a service call that takes nothing but the card (activate, loss)."""

    def unit_for(agent: Agent, sn: str, now: dt.datetime) -> Callable[[Session], T]:
        return lambda session: change(session, agent, sn, now)

    return unit_for


async def card_write(
    call: Call[Any], unit_for: UnitFor[T], render: Callable[[T], R]
) -> R | web.Response:
    """The one shape of the writes keyed by ``{card_sn}`` (delivery, activation, loss,
    replacement): the terminal's issuance agent first (403 ISSUANCE_FORBIDDEN before anything
    else is looked at), then the path's card_sn (422 when malformed) and the time; ONE unit of
    work; its result rendered, or the 409 ILLEGAL_TRANSITION answer with its fields."""
    who, sn, at = await agent(call), card_sn(call), now(call)
    result = await write(call, unit_for(who, sn, at))
    return result if isinstance(result, web.Response) else render(result)


def batch_id(call: Call[Any]) -> int:
    """The ``{batch_id}`` of the path; 422 unless a number."""
    found = ascii_int(call.request.match_info["batch_id"], max_digits=12)
    if found is None:
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "batch id must be a number")
    return found
