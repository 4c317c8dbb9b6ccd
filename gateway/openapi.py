"""OpenAPI 3.1 document generated from the route table (the same table that builds the router).

Request and response schemas come from the routes' pydantic models (JSON Schema 2020-12, which
OpenAPI 3.1 uses as is). Error responses are derived from each route's ``error_codes()`` and the
one status table in gateway.errors, grouped by status, with the codes listed as an enum.

Security, per operation: a signed route requires all four terminal headers (four ``apiKey``
header schemes ANDed in one requirement: OpenAPI has no HMAC scheme, so the headers are
declared and the signature itself is explained in ``info.description``). A route that may
answer a 401 whose challenge is ``Bearer`` (OPS_UNAUTHORIZED) requires ``bearerAuth``, so the
security follows from the error codes the route declares, as its error responses do. Any
other route is public (``security: []``).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.errors import ERRORS, PROBLEM_CONTENT_TYPE
from gateway.openapi_params import BODIES, LINKS, PARAMETERS, Param
from gateway.routing import Route
from sscard import terminal_auth as ta

__all__ = ["BEARER_SCHEME", "Problem", "build_openapi"]

OPENAPI_VERSION: Final = "3.1.0"
_REF: Final = "#/components/schemas/{model}"
# (model, "validation" | "serialization") -> {"$ref": ...}
_Refs = dict[tuple[object, str], dict[str, Any]]


class FieldError(BaseModel):
    field: str = Field(description="Dotted location of the field in the body.")
    problem: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, extended with a stable ``code`` and clerk-facing messages."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str = Field(description="Stable error code: branch on this, never on messages.")
    message: str = Field(description="What the person at the counter can do (English).")
    message_zh: str = Field(description="同上（中文）。")
    request_id: str = Field(description="Quote this when calling the gateway operator.")
    errors: list[FieldError] | None = Field(
        default=None, description="Field errors, for VALIDATION_FAILED."
    )


_SIGNING_DESCRIPTION: Final = f"""\
Every terminal call is signed by the terminal with HMAC-SM3 (security schemes terminalId,
timestamp, nonce, signatureVersion and signature, all five together). The ops dashboard's
JSON routes take `Authorization: Bearer <ops token>` instead (scheme bearerAuth); health,
metrics (see its description), this document and the dashboard's static files need no
terminal credential.

canonical = "SSC-REQ-v2" "\\n" METHOD "\\n" path_with_query "\\n" {ta.HEADER_TIMESTAMP} "\\n" \
{ta.HEADER_NONCE} "\\n" {ta.HEADER_TERMINAL_ID} "\\n" {ta.HEADER_CARD_SESSION} "\\n" \
{ta.HEADER_IDEMPOTENCY_KEY} "\\n" hex(SM3(body))     (an absent header: an empty line)
{ta.HEADER_SIGNATURE} = hex(HMAC-SM3(terminal secret, canonical))

{ta.HEADER_TIMESTAMP} is unix seconds and must be within the gateway's clock skew window.
{ta.HEADER_NONCE} is {ta.NONCE_MIN_CHARS}–{ta.NONCE_MAX_CHARS} chars of [A-Za-z0-9_-] and may
be used once per terminal. Reference implementation: sscard/terminal_auth.py."""

# Scheme name -> (header, description). Required together on every signed route.
_SIGNING_SCHEMES: Final = {
    "terminalId": (ta.HEADER_TERMINAL_ID, "The terminal's registered id."),
    "timestamp": (
        ta.HEADER_TIMESTAMP,
        "Unix seconds, within the gateway's clock skew window; signed.",
    ),
    "nonce": (
        ta.HEADER_NONCE,
        f"{ta.NONCE_MIN_CHARS}-{ta.NONCE_MAX_CHARS} chars of [A-Za-z0-9_-], once per "
        "terminal; signed.",
    ),
    "signatureVersion": (
        ta.HEADER_SIGNATURE_VERSION,
        f"{ta.SIGNATURE_VERSION}: the canonical string of the API description; a request "
        "without it (version 1) is refused SIGNATURE_VERSION_UNSUPPORTED.",
    ),
    "signature": (
        ta.HEADER_SIGNATURE,
        "hex(HMAC-SM3(terminal secret, canonical request)): see the API description.",
    ),
}
BEARER_SCHEME: Final = "bearerAuth"
_BEARER_SCHEME: Final = {
    "type": "http",
    "scheme": "bearer",
    "description": "The ops token (setting ops_token; demo world: the file "
    "{data_dir}/ops-token). A few wrong tokens from one address and it gets 429 "
    "OPS_TOO_MANY_WRONG_TOKENS for a while.",
}


def _package_version() -> str:
    try:
        return importlib.metadata.version("ssc-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def build_openapi(
    routes: Sequence[Route], *, title: str = "SSC settlement gateway", version: str | None = None
) -> dict[str, Any]:
    schemas, refs = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, refs)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version or _package_version(),
            "description": _SIGNING_DESCRIPTION,
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                **{
                    name: {
                        "type": "apiKey",
                        "in": "header",
                        "name": header,
                        "description": description,
                    }
                    for name, (header, description) in _SIGNING_SCHEMES.items()
                },
                BEARER_SCHEME: _BEARER_SCHEME,
            },
        },
    }


def _schemas(
    routes: Sequence[Route],
) -> tuple[dict[str, Any], _Refs]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    for route in routes:
        if route.request_model is not None:
            wanted.append((route.request_model, "validation"))
        if route.response_model is not None:
            wanted.append((route.response_model, "serialization"))
    refs, top = models_json_schema(list(dict.fromkeys(wanted)), ref_template=_REF)
    return top.get("$defs", {}), {key: dict(value) for key, value in refs.items()}


def _operation(route: Route, refs: _Refs) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
        "responses": {str(route.response_status): _success(route, refs)},
    }
    if route.description:
        operation["description"] = route.description
    parameters = _parameters(route)
    if parameters:
        operation["parameters"] = parameters
    if route.request_model is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.request_model, "validation")]}},
        }
    elif route.operation_id in BODIES:
        body = BODIES[route.operation_id]
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": dict(schema)} for media, schema in body.content.items()},
            **({"description": body.description} if body.description else {}),
        }
    operation["security"] = _security(route)
    operation["responses"].update(_problems(route.error_codes(), refs))
    return operation


_PATH_TEMPLATE: Final = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _parameters(route: Route) -> list[dict[str, Any]]:
    """Declared parameters, and every templated path segment (a plain string unless
    declared)."""
    declared = {param.name: param for param in PARAMETERS.get(route.operation_id, ())}
    for name in _PATH_TEMPLATE.findall(route.path):
        declared.setdefault(name, Param(name, "path", {"type": "string"}))
    return [param.as_openapi() for param in declared.values()]


def _security(route: Route) -> list[dict[str, list[str]]]:
    """One requirement object (its schemes ANDed), or none for a public route."""
    if route.signed:
        return [{name: [] for name in _SIGNING_SCHEMES}]
    if any(_bearer_challenge(code) for code in route.error_codes()):
        return [{BEARER_SCHEME: []}]
    return []


def _bearer_challenge(code: str) -> bool:
    challenge = ERRORS[code].headers.get("WWW-Authenticate", "")
    return challenge.lower().startswith("bearer ")


def _success(route: Route, refs: _Refs) -> dict[str, Any]:
    if route.response_model is not None:
        schema = refs[(route.response_model, "serialization")]
    else:
        schema = route.response_schema
    success: dict[str, Any] = {
        "description": route.summary,
        "content": {route.response_media_type: {"schema": schema}},
    }
    if route.operation_id in LINKS:
        success["links"] = {name: dict(link) for name, link in LINKS[route.operation_id].items()}
    return success


def _problems(codes: Sequence[str], refs: _Refs) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERRORS[code].status, []).append(code)
    problem_ref = refs[(Problem, "serialization")]
    responses: dict[str, Any] = {}
    for status in sorted(by_status):
        status_codes = by_status[status]
        responses[str(status)] = {
            "description": "; ".join(f"{code}: {ERRORS[code].title}" for code in status_codes),
            "content": {
                PROBLEM_CONTENT_TYPE: {
                    "schema": {
                        "allOf": [
                            problem_ref,
                            {"properties": {"code": {"enum": status_codes}}},
                        ]
                    }
                }
            },
        }
    return responses
