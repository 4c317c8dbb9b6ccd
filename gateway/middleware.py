"""The two middlewares every request passes through, outermost first.

``observe``   request id, access log line, request metrics.
``problems``  the ONE place where exceptions become responses: GatewayError, aiohttp's own HTTP
              errors (404, 405, 413 …), domain errors (any exception whose ``.code`` is in
              gateway.errors.ERRORS) and unexpected exceptions (500 INTERNAL, logged with the
              request id). Every error response is counted by code here (by its reason
              where the answer hides it: GatewayError.reason).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import metrics
from gateway.errors import (
    ERRORS,
    PROBLEM_CONTENT_TYPE,
    ErrorCode,
    GatewayError,
    domain_error_code,
    problem_body,
)
from gateway.logs import fields, log_fast
from gateway.state import ERROR_CODE, ERROR_REASON, REQUEST_ID

__all__ = ["observe", "problems"]

log = logging.getLogger("gateway.http")

REQUEST_ID_HEADER: Final = "X-Request-Id"
# A caller's request id is kept only if it is short and plain, so it is safe in logs.
_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{8,64}")
# Metric labels must stay bounded: any other method is counted as OTHER.
_KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CODES: Final[Mapping[int, ErrorCode]] = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.BODY_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    # 128 random bits as 32 hex digits (4x cheaper than uuid4().hex; nothing parses it).
    request_id = (
        incoming
        if incoming is not None and _REQUEST_ID_RE.fullmatch(incoming)
        else secrets.token_hex(16)
    )
    request[REQUEST_ID] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else metrics.UNMATCHED_ROUTE
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    started = time.perf_counter()
    status = 499  # nginx's "client closed request": the answer never left
    code = ""
    reason = None
    metrics.INFLIGHT.inc()
    try:
        response = await handler(request)
        status = response.status
        code = response.get(ERROR_CODE, "")
        reason = response.get(ERROR_REASON)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    finally:
        elapsed_s = time.perf_counter() - started
        metrics.INFLIGHT.dec()
        metrics.count_request(route, method, status, elapsed_s)
        # No query string, body or header values: nothing personal in the access log.
        line = {
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "code": code or None,
            "duration_ms": round(elapsed_s * 1000, 3),
        }
        if reason is not None:
            # Why, where the answer does not say (a terminal id unknown or disabled): for the
            # operator, who reads the log; the caller saw ``code`` only.
            line["reason"] = reason
        log_fast(log, logging.ERROR if status >= 500 else logging.INFO, "request", line)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return _problem(request, exc.code, exc.detail, exc.errors, exc.headers, reason=exc.reason)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status)
        if code is None:
            code = ErrorCode.BAD_REQUEST if exc.status < 500 else ErrorCode.INTERNAL
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return _problem(request, code, None, None, headers)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        domain_code = domain_error_code(exc)
        if domain_code is not None:
            # Domain packages carry their specific sentence as ``detail`` (card auth) or
            # ``message`` (settlement, issuance): either tells the clerk which line or card.
            # Both are written without personal data.
            detail = getattr(exc, "detail", None) or getattr(exc, "message", None)
            # A domain error that knows when a retry may help (the hub's breaker) says so.
            retry_after_s = getattr(exc, "retry_after_s", None)
            retry = {"Retry-After": str(retry_after_s)} if isinstance(retry_after_s, int) else None
            return _problem(
                request, domain_code, detail if isinstance(detail, str) else None, None, retry
            )
        log.exception(
            "unhandled exception",
            extra=fields(request_id=request[REQUEST_ID], exc_type=type(exc).__name__),
        )
        return _problem(request, ErrorCode.INTERNAL, None)


def _problem(
    request: web.Request,
    code: str,
    detail: str | None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    reason: str | None = None,
) -> web.Response:
    spec = ERRORS[code]
    body = problem_body(code, request_id=request[REQUEST_ID], detail=detail, errors=errors)
    all_headers = dict(spec.headers)
    if spec.retry_after_s is not None:
        all_headers["Retry-After"] = str(spec.retry_after_s)
    all_headers.update(headers or {})
    response = web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=spec.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=all_headers,
    )
    response[ERROR_CODE] = code
    if reason is not None and reason != code:
        response[ERROR_REASON] = reason
    # By the reason: the operator's figure (/metrics is behind its own credential, and the
    # ops page behind the ops token), so alerts on TERMINAL_UNKNOWN/DISABLED still see them.
    metrics.REJECTIONS.labels(reason or code).inc()
    return response
