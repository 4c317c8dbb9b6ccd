"""THE route table, and its thin handlers.

Add an endpoint by adding a :class:`~gateway.routing.Route` to :data:`ROUTES`; the router and
/openapi.json both follow. A handler parses nothing itself (the pipeline in gateway.routing has
done that), calls a domain service, and returns a response model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Final, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from gateway import metrics
from gateway.card_auth.routes import CARD_AUTH_ROUTES
from gateway.crossprov.routes import CROSSPROV_ROUTES
from gateway.errors import ErrorCode, GatewayError
from gateway.front_door import FRONT_DOOR_ROUTES
from gateway.fsi.door import FSI_ROUTES
from gateway.issuance_api.routes import ISSUANCE_ROUTES
from gateway.metrics_access import check_metrics_access
from gateway.ops.admin_routes import OPS_ADMIN_ROUTES
from gateway.ops.crl_routes import OPS_CRL_ROUTES
from gateway.ops.routes import OPS_ROUTES
from gateway.routing import Call, RequestModel, Route, Text
from gateway.settlement_api.routes import SETTLEMENT_ROUTES
from gateway.settlement_metrics import measure_settlement_routes
from gateway.state import DATABASE, OPENAPI, SETTINGS
from gateway.store import MEDICAL_KINDS

__all__ = ["ROUTES", "EchoRequest", "EchoResponse"]

# /readyz waits this long for SELECT 1 before declaring the database unreachable.
READY_DB_TIMEOUT_S: Final = 2.0


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"


class EchoRequest(RequestModel):
    message: Text = Field(min_length=1, max_length=4096, description="Any text; echoed back.")


class EchoResponse(BaseModel):
    terminal_id: str
    institution_code: str
    worker_pid: int = Field(description="Process that answered (diagnostics, load tests).")
    body: EchoRequest


async def healthz(_call: Call[None]) -> HealthStatus:
    return HealthStatus()


async def readyz(call: Call[None]) -> ReadyStatus:
    try:
        await asyncio.wait_for(call.app[DATABASE].ping(), READY_DB_TIMEOUT_S)
    except TimeoutError:
        raise GatewayError(ErrorCode.DB_UNAVAILABLE, "SELECT 1 timed out") from None
    return ReadyStatus()


async def prometheus_metrics(call: Call[None]) -> web.Response:
    check_metrics_access(call.request, call.app[SETTINGS])
    # Multiprocess mode reads one file per worker: keep that off the event loop.
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.render_latest)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})


async def openapi_document(call: Call[None]) -> web.Response:
    return web.json_response(call.app[OPENAPI])


async def echo(call: Call[EchoRequest]) -> EchoResponse:
    terminal = call.terminal
    assert terminal is not None
    return EchoResponse(
        terminal_id=terminal.terminal_id,
        institution_code=terminal.institution_code,
        worker_pid=os.getpid(),
        body=call.body,
    )


ROUTES: Final[tuple[Route, ...]] = (
    *FRONT_DOOR_ROUTES,
    Route(
        "GET",
        "/healthz",
        operation_id="healthz",
        summary="The process is alive.",
        handler=healthz,
        response_model=HealthStatus,
        tags=("operations",),
        signed=False,
        bounded=False,
    ),
    Route(
        "GET",
        "/readyz",
        operation_id="readyz",
        summary="The database answers SELECT 1; 503 otherwise.",
        handler=readyz,
        response_model=ReadyStatus,
        tags=("operations",),
        signed=False,
        bounded=False,
        errors=(ErrorCode.DB_UNAVAILABLE,),
    ),
    Route(
        "GET",
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics, summed over all worker processes.",
        description="Needs `Authorization: Bearer <metrics_token>` when that setting is set; "
        "without it, answers loopback clients only, and no request a proxy relayed "
        "(X-Forwarded-For, Forwarded, X-Real-IP) (gateway.metrics_access).",
        handler=prometheus_metrics,
        response_media_type="text/plain",
        response_schema={"type": "string"},
        tags=("operations",),
        signed=False,
        bounded=False,
        errors=(ErrorCode.METRICS_UNAUTHORIZED, ErrorCode.METRICS_FORBIDDEN),
    ),
    Route(
        "GET",
        "/openapi.json",
        operation_id="openapi",
        summary="This API description (OpenAPI 3.1).",
        handler=openapi_document,
        response_schema={"type": "object"},
        tags=("operations",),
        signed=False,
        bounded=False,
    ),
    Route(
        "POST",
        "/v1/echo",
        operation_id="echo",
        summary="Signed echo: returns the authenticated terminal and the body.",
        description="For integration checks and load tests. Exercises the whole pipeline: "
        "signature, replay guard, body validation.",
        handler=echo,
        request_model=EchoRequest,
        response_model=EchoResponse,
        tags=("diagnostics",),
    ),
    *CARD_AUTH_ROUTES,
    # Money moves for hospitals and pharmacies only: a bank's, employer's or centre's terminal
    # (issuance) is refused here with 403 INSTITUTION_KIND_NOT_ALLOWED before any handler runs.
    # (Operations terminals of the settlement and cross-province listings are hospitals' or
    # pharmacies' today; an office kind of its own would be added to these kinds.)
    # Settlements, cancels and reconciliations are counted from their answers
    # (gateway.settlement_metrics).
    *measure_settlement_routes(
        dataclasses.replace(route, institution_kinds=frozenset(MEDICAL_KINDS))
        for route in (*SETTLEMENT_ROUTES, *CROSSPROV_ROUTES)
    ),
    *ISSUANCE_ROUTES,
    *OPS_ROUTES,
    *OPS_ADMIN_ROUTES,  # enrolment over the ops API (issue 14)
    *OPS_CRL_ROUTES,  # card CRLs over the ops API (issue 14)
    *FSI_ROUTES,  # the national-interface door (gateway.fsi)
)
