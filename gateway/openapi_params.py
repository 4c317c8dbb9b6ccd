"""What a route reads besides its JSON body, for /openapi.json: path, query and header
parameters, and the bodies of the routes that take something other than a pydantic model.

Each schema here is exactly as strict as the handler that parses the value (the handler's
module named beside it), so a tool that generates requests from the document (schemathesis,
in tests/integration/test_schemathesis.py) finds every value the document allows accepted and
every value it refuses refused. A path parameter with no entry is a plain string.

Keyed by operation id; tests/gateway/test_gateway_openapi.py checks that every key names a
route and the document validates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["BODIES", "LINKS", "PARAMETERS", "Param"]

Location = Literal["path", "query", "header"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: Location
    schema: Mapping[str, Any]
    required: bool = False
    description: str = ""
    example: Any = None

    def as_openapi(self) -> dict[str, Any]:
        param: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "schema": dict(self.schema),
        }
        if self.description:
            param["description"] = self.description
        if self.example is not None:
            param["example"] = self.example
        return param


@dataclass(frozen=True, slots=True)
class Body:
    """A request body that is not a pydantic model: media type -> schema."""

    content: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""


_DATE: Final = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
# gateway.settlement_api.calls: the card session token is opaque (401 CARD_SESSION_* when
# it is not one this gateway issued to this terminal).
_CARD_SESSION: Final = Param(
    "X-Card-Session",
    "header",
    {"type": "string", "minLength": 1},
    required=True,
    description="The card session from POST /v1/card-auth/response (opaque; 401 "
    "CARD_SESSION_INVALID / CARD_SESSION_EXPIRED / CARD_SESSION_WRONG_TERMINAL otherwise).",
)


def _idempotency(required: bool) -> Param:
    # gateway.settlement_api.calls._KEY_PATTERN; 400 IDEMPOTENCY_KEY_MISSING otherwise.
    return Param(
        "Idempotency-Key",
        "header",
        {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
        required=required,
        description="1 to 255 visible ASCII characters, unique per institution and operation: "
        "a retry with the same key and body gets the first answer again.",
    )


def _query_date(name: str, required: bool = True, description: str = "") -> Param:
    return Param(
        name,
        "query",
        _DATE,
        required=required,
        description=description or "A day, YYYY-MM-DD (Beijing).",
        example="2026-06-01",
    )


# gateway.settlement_api.calls.path_id: an id the gateway issued (404 if not one).
def _gateway_id(name: str) -> Param:
    return Param(name, "path", {"type": "string", "pattern": r"^[A-Za-z0-9]{1,40}$"})


_CURSOR: Final = Param(
    "cursor",
    "query",
    {"type": "string", "pattern": r"^[0-9]{1,18}$"},
    description="next_cursor of the previous page; absent: the first page.",
)
_SCOPE: Final = Param(
    "scope",
    "query",
    {"type": "string", "enum": ["institution", "all"], "default": "institution"},
    description="all: every institution (operations institutions only).",
)
# gateway.issuance_api.calls.card_sn: 32 hex digits (422 VALIDATION_FAILED otherwise).
_CARD_SN: Final = Param(
    "card_sn",
    "path",
    {"type": "string", "pattern": r"^[0-9A-Fa-f]{32}$"},
    example="310000D1560000050123456789ABCDEF",
)
# gateway.issuance_api.calls.batch_id: up to 12 ASCII digits.
_BATCH_ID: Final = Param("batch_id", "path", {"type": "string", "pattern": r"^[0-9]{1,12}$"})
_IF_NONE_MATCH: Final = Param(
    "If-None-Match",
    "header",
    {"type": "string"},
    description="The ETag of a copy the client has: 304 if it is still current.",
)

_OPS_DAY: Final = "A day (Beijing), from 2000-01-01 to tomorrow; default: today."
_SESSION_ROUTES: Final = ("eligibility", "pre_settle", "admit")

PARAMETERS: Final[Mapping[str, tuple[Param, ...]]] = {
    **dict.fromkeys(_SESSION_ROUTES, (_CARD_SESSION,)),
    "settle": (_CARD_SESSION, _idempotency(True)),
    "cancel_settlement": (_gateway_id("setl_id"), _idempotency(True)),
    "get_settlement": (_gateway_id("setl_id"),),
    "list_settlements": (_query_date("date"), _CURSOR),
    "upload_fee_lines": (_gateway_id("admission_id"), _idempotency(False)),
    "discharge": (_gateway_id("admission_id"), _CARD_SESSION, _idempotency(True)),
    "reconciliation_mismatches": (_query_date("date"), _SCOPE),
    # gateway.ops.audit_export
    "ops_audit_csv": (
        _query_date("from", False, "Only rows written from this day on (Beijing), YYYY-MM-DD."),
        _query_date("to", False, "Only rows written up to this day (Beijing, included)."),
        Param(
            "limit",
            "query",
            {"type": "integer", "minimum": 1, "maximum": 999_999},
            description="At most this many rows, the newest (1 to 999999); absent: every row.",
        ),
    ),
    # gateway.crossprov.routes
    "list_filings": (
        Param(
            "psn_no",
            "query",
            {"type": "string", "pattern": r"^[0-9]{15,30}$"},
            required=True,
            description="The insured person's number (15 to 30 digits).",
        ),
    ),
    "list_remote_settlements": (_query_date("date"), _SCOPE, _CURSOR),
    "list_reversals": (
        Param(
            "status",
            "query",
            {"type": "string", "enum": ["pending", "done"], "default": "pending"},
        ),
    ),
    "clearing_statement": (
        Param(
            "insuplc_admdvs",
            "query",
            {"type": "string", "pattern": r"^[1-9][0-9]{5}$"},
            required=True,
            description="The insuring province's admdvs code (6 digits).",
        ),
        _query_date("begin", description="First day of the period, YYYY-MM-DD."),
        _query_date("end", description="Last day of the period, YYYY-MM-DD."),
    ),
    # gateway.issuance_api
    **dict.fromkeys(
        ("issuance_delivery", "issuance_activate", "issuance_report_loss", "issuance_replace"),
        (_CARD_SN,),
    ),
    "issuance_daily_stats": (_query_date("date"),),
    "issuance_produce_batch": (_BATCH_ID,),
    "issuance_batch_report": (_BATCH_ID,),
    # gateway.ops.routes (the dashboard's day: from the first day of records to tomorrow)
    "ops_summary": (_query_date("date", required=False, description=_OPS_DAY),),
    "ops_settlements_by_institution": (
        _query_date("date", required=False, description=_OPS_DAY),
        Param(
            "route",
            "query",
            {
                "type": "string",
                "enum": ["all", "local", "in_province_remote", "cross_province"],
                "default": "all",
            },
        ),
        Param(
            "visit_type",
            "query",
            {"type": "string", "pattern": r"^[a-z_]{1,20}$", "default": "all"},
        ),
        Param("hour", "query", {"type": "string", "pattern": r"^(?:[01]?[0-9]|2[0-3])$"}),
    ),
    # gateway.fsi.door: the national interface number in the path, 4 digits.
    "fsi_call_service_infno": (
        Param("infno", "path", {"type": "string", "pattern": r"^[0-9]{4}$"}, example="1101"),
    ),
    # Static files answer 304 to a current ETag.
    **dict.fromkeys(
        ("front_page_css", "ops_static_ops_js", "ops_static_ops_css", "ops_static_favicon_svg"),
        (_IF_NONE_MATCH,),
    ),
}

# Bodies of routes without a request model.
BODIES: Final[Mapping[str, Body]] = {
    # gateway.issuance_api.routes.upload: UTF-8 CSV, header row first (docs/CONTRACTS.md).
    "issuance_employer_batch": Body(
        {
            media: {"type": "string", "description": "UTF-8 CSV, header row first."}
            for media in ("text/csv", "application/csv")
        },
        "The employer's file of applications.",
    ),
    # gateway.fsi.door: the national interface envelope.
    "fsi_call_service": Body({"application/json": {"type": "object"}}),
    "fsi_call_service_infno": Body({"application/json": {"type": "object"}}),
}


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


_SETL_ID: Final = "$response.body#/setl_id"
_ADMISSION_ID: Final = "$response.body#/admission_id"

# OpenAPI links (success response -> the operations its answer feeds): what a client does
# next with an id it was given, and what lets a stateful test chain real resources.
LINKS: Final[Mapping[str, Mapping[str, dict[str, Any]]]] = {
    "settle": {
        "GetSettlement": _link("get_settlement", setl_id=_SETL_ID),
        "CancelSettlement": _link("cancel_settlement", setl_id=_SETL_ID),
    },
    "cancel_settlement": {"GetSettlement": _link("get_settlement", setl_id=_SETL_ID)},
    "admit": {
        "UploadFeeLines": _link("upload_fee_lines", admission_id=_ADMISSION_ID),
        "Discharge": _link("discharge", admission_id=_ADMISSION_ID),
    },
    "issuance_apply": {
        "Status": {
            "operationId": "issuance_status",
            "requestBody": {"application_id": "$response.body#/application_id"},
        }
    },
    "issuance_produce_batch": {
        "BatchReport": _link("issuance_batch_report", batch_id="$response.body#/batch_id")
    },
}
