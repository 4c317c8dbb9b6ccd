"""The dashboard's routes: the static page and its assets (no data, no credential needed), the
summary JSON and the drill-down to the institutions behind a settlement figure (ops bearer
token). Thin: parse the query, check the token, read, render."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any, Final

from aiohttp import web

from dbkit import BEIJING
from gateway import metrics
from gateway.enrolment.tables import OpsRole
from gateway.errors import ErrorCode, GatewayError, codes_named
from gateway.ops import drilldown
from gateway.ops.counters import read_counters
from gateway.ops.models import InstitutionBreakdown, OpsSummary
from gateway.ops.roles import ops_role, principal_of
from gateway.ops.summary import day_summary
from gateway.query import optional_query_date
from gateway.routing import Call, Route
from gateway.state import CLOCK, DATABASE

__all__ = ["CONTENT_SECURITY_POLICY", "OPS_ROUTES"]

# Everything from this origin only, no inline script or style, no plugins, no framing, and no
# form submission at all (the sign-in form is handled by script; if the script were blocked, a
# plain submit must not put the token in a URL).
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The oldest day the summary answers for; anything older is surely a typo (and a year-1 date
# would overflow the UTC conversion).
FIRST_DAY: Final = dt.date(2000, 1, 1)


@dataclass(frozen=True, slots=True)
class _Asset:
    path: str
    file_name: str
    media_type: str
    body: bytes
    etag: str


def _asset(path: str, file_name: str, media_type: str) -> _Asset:
    body = resources.files("gateway.ops").joinpath("static", file_name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return _Asset(path, file_name, media_type, body, etag)


_ASSETS: Final = (
    _asset("/ops", "index.html", "text/html"),
    _asset("/ops/static/ops.js", "ops.js", "text/javascript"),
    _asset("/ops/static/ops.css", "ops.css", "text/css"),
    _asset("/ops/static/favicon.svg", "favicon.svg", "image/svg+xml"),
)


def _serve(asset: _Asset) -> Callable[[Call[None]], Awaitable[web.StreamResponse]]:
    async def handler(call: Call[None]) -> web.StreamResponse:
        # no-cache = revalidate every time (cheap with the ETag): a page from an older gateway
        # version never talks to a newer API.
        headers = {**_SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
        if asset.etag in call.request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=asset.body, headers={**headers, "Content-Type": f"{asset.media_type}"}
        )

    return handler


def _day(call: Call[Any]) -> dt.date:
    today = dt.datetime.fromtimestamp(call.app[CLOCK](), BEIJING).date()
    day = optional_query_date(call, "date", detail=f", from {FIRST_DAY} to tomorrow")
    if day is None:
        return today
    if not FIRST_DAY <= day <= today + dt.timedelta(days=1):
        # A well-formed day the dashboard has no figures for: a range rule, which the
        # document states in words (OpenAPI cannot bound a date by "tomorrow").
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            f"query parameter date must be from {FIRST_DAY} to tomorrow",
            errors=[{"field": "date", "problem": "outside the dashboard's days", "type": "value"}],
        )
    return day


async def ops_summary(call: Call[None]) -> web.Response:
    principal_of(call)
    day = _day(call)
    # Multiprocess mode reads one file per worker: off the event loop, as /metrics does.
    exposition = await asyncio.get_running_loop().run_in_executor(None, metrics.render_latest)
    now = dt.datetime.fromtimestamp(call.app[CLOCK](), dt.UTC)
    summary = await call.app[DATABASE].read(
        partial(day_summary, day=day, now=now, counters=read_counters(exposition))
    )
    return web.Response(
        body=summary.model_dump_json().encode(),
        content_type="application/json",
        # Operational figures behind a credential: no cache, shared or private, may keep them.
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def _choice(call: Call[Any], name: str, allowed: frozenset[str] | None) -> str:
    """A query parameter that is "all" (absent) or one of ``allowed`` (None: a lowercase word,
    as visit types are)."""
    raw = call.request.query.get(name, drilldown.ALL)
    ok = raw in allowed if allowed is not None else re.fullmatch(r"[a-z_]{1,20}", raw) is not None
    if not ok:
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            f"query parameter {name} is not one this page asks for",
            errors=[{"field": name, "problem": "unknown value", "type": "enum"}],
        )
    return raw


def _hour(call: Call[Any]) -> int | None:
    raw = call.request.query.get("hour")
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{1,2}", raw) or not 0 <= int(raw) <= 23:  # ASCII: \d takes "٣"
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            "query parameter hour must be 0 to 23 (Beijing time)",
            errors=[{"field": "hour", "problem": "must be 0 to 23", "type": "int_parsing"}],
        )
    return int(raw)


async def settlements_by_institution(call: Call[None]) -> web.Response:
    principal_of(call)
    scope = drilldown.Scope(
        day=_day(call),
        route=_choice(call, "route", drilldown.ROUTES),
        visit_type=_choice(call, "visit_type", None),
        hour=_hour(call),
    )
    breakdown = await call.app[DATABASE].read(
        partial(drilldown.settlements_by_institution, scope=scope)
    )
    return web.Response(
        body=breakdown.model_dump_json().encode(),
        content_type="application/json",
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


_TAGS: Final = ("ops dashboard",)

OPS_ROUTES: Final[tuple[Route, ...]] = (
    *(
        Route(
            "GET",
            asset.path,
            operation_id=f"ops_static_{asset.file_name.replace('.', '_')}",
            summary=f"Ops dashboard: {asset.file_name} (static, no data, no credential).",
            description="Part of the settlement ops page; it reads /v1/ops/summary.",
            handler=_serve(asset),
            response_media_type=asset.media_type,
            response_schema={"type": "string"},
            tags=_TAGS,
            signed=False,
        )
        for asset in _ASSETS
    ),
    Route(
        "GET",
        "/v1/ops/summary",
        operation_id="ops_summary",
        summary="A day's settlement operations figures (?date=YYYY-MM-DD, default today).",
        description="For the /ops page and operators. NOT signed by a terminal: send "
        "`Authorization: Bearer <ops token>` (setting `ops_token`; in the demo world the file "
        "`{data_dir}/ops-token`); a few wrong tokens from one address and it gets 429 "
        "OPS_TOO_MANY_WRONG_TOKENS (Retry-After) for a while. Day in Beijing time. Amounts in "
        "int fen. Rejections, card authentication and hub calls are counters since "
        "`counters_since` (the gateway's start), not of the day. No personal data. "
        "`Cache-Control: no-store`.",
        handler=ops_summary,
        response_model=OpsSummary,
        tags=_TAGS,
        signed=False,
        authorize=ops_role(OpsRole.VIEWER),
        errors=(
            *codes_named("OPS_"),
            ErrorCode.VALIDATION_FAILED,
            ErrorCode.DB_UNAVAILABLE,
        ),
    ),
    Route(
        "GET",
        "/v1/ops/settlements/by-institution",
        operation_id="ops_settlements_by_institution",
        summary="The institutions behind a day's settlement figure (?date=&route=&visit_type="
        "&hour=), the busiest first.",
        description="The /ops page's drill-down. Same ops bearer token as /v1/ops/summary. "
        "route: all | local | in_province_remote | cross_province; visit_type: all or one; "
        "hour: a Beijing hour 0-23 (absent: the whole day). Valid settlements with their total "
        "and those cancelled since, per institution (code, name, kind): the top 20 and the rest "
        "summed. No personal data. `Cache-Control: no-store`.",
        handler=settlements_by_institution,
        response_model=InstitutionBreakdown,
        tags=_TAGS,
        signed=False,
        authorize=ops_role(OpsRole.VIEWER),
        errors=(
            *codes_named("OPS_"),
            ErrorCode.VALIDATION_FAILED,
            ErrorCode.DB_UNAVAILABLE,
        ),
    ),
)
