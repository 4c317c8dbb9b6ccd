"""Card CRLs over the ops API, beside ``gateway admin crl``: ``POST /v1/ops/crls`` imports a
list (ops role operator), ``GET /v1/ops/crls`` lists the lists in force (viewer). The same use
case as the command (gateway.card_auth.revocation.import_crl: its checks, one transaction,
its audit row, with the ops identity as the actor and the client's address as the source).

The body is JSON ``{"crl": "<PEM text, or the DER in base64>"}``, so a list is bounded by
``max_body_bytes`` (64 KiB by default, a few thousand entries): a larger list goes through
the command, which reads a file of up to 16 MiB. A refusal is ``422 CRL_REFUSED`` whose
detail starts with the reason's own code (``CRL_STALE: …``), and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
from functools import partial
from typing import Final

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gateway.card_auth.revocation import (
    CrlImported,
    CrlImportRefused,
    import_crl,
    imported_crls,
    parse_crl_file,
)
from gateway.card_auth.service import CARD_AUTH, trust_anchors_from_settings
from gateway.enrolment.tables import OpsRole
from gateway.errors import ErrorCode, GatewayError, codes_named
from gateway.ops.roles import ops_role, principal_of
from gateway.routing import Call, Route
from gateway.state import CLOCK, DATABASE, SETTINGS

__all__ = ["OPS_CRL_ROUTES"]


class CrlIn(BaseModel):
    crl: str = Field(min_length=1, description="PEM (-----BEGIN X509 CRL-----) or base64 DER")


class CrlImportedOut(BaseModel):
    issuer: str
    crl_number: str  # text: a cRLNumber may be 20 octets, beyond a JSON reader's integers
    previous_number: str | None
    entries: int
    this_update: dt.datetime
    next_update: dt.datetime
    changed: bool
    refused_by_every_worker_within_s: float


class CrlInForceOut(BaseModel):
    issuer_sm3: str
    crl_number: str
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    imported_at: dt.datetime


class CrlsOut(BaseModel):
    crls: list[CrlInForceOut]


def _crl_bytes(text: str) -> bytes:
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return stripped.encode("ascii", "replace")
    try:
        return base64.b64decode("".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError):
        raise GatewayError(
            ErrorCode.CRL_REFUSED, "CRL_MALFORMED: crl is neither PEM nor base64 DER"
        ) from None


async def import_crl_route(call: Call[CrlIn]) -> BaseModel:
    principal = principal_of(call)
    settings = call.app[SETTINGS]
    now_s = call.app[CLOCK]()
    actor = principal.actor(now_s)
    trust = call.app[CARD_AUTH].trust or await asyncio.to_thread(
        trust_anchors_from_settings, settings
    )
    if trust is None:
        raise GatewayError(
            ErrorCode.CRL_REFUSED,
            "CRL_ISSUER_UNKNOWN: no card trust root is configured, so no CRL can be checked",
        )
    now = dt.datetime.fromtimestamp(int(now_s), dt.UTC)

    def unit(session: Session) -> CrlImported:
        return import_crl(
            session,
            crl,
            trust,
            now=now,
            max_entries=settings.card_crl_max_entries,
            actor=actor.name,
            source=actor.source,
        )

    try:
        crl = parse_crl_file(_crl_bytes(call.body.crl))
        done: CrlImported = await call.app[DATABASE].write(unit)
    except CrlImportRefused as exc:
        raise GatewayError(ErrorCode.CRL_REFUSED, f"{exc.code}: {exc.message}") from None
    # This worker at once; the others at their next refresh (card_crl_refresh_s).
    await call.app[CARD_AUTH].revoked.refresh(call.app[DATABASE], int(now_s * 1000))
    return CrlImportedOut(
        issuer=done.issuer,
        crl_number=str(done.crl_number),
        previous_number=None if done.previous_number is None else str(done.previous_number),
        entries=done.entries,
        this_update=done.this_update,
        next_update=done.next_update,
        changed=done.changed,
        refused_by_every_worker_within_s=settings.card_crl_refresh_s,
    )


async def list_crls_route(call: Call[None]) -> BaseModel:
    principal_of(call)
    lists = await call.app[DATABASE].read(partial(imported_crls))
    return CrlsOut(
        crls=[
            CrlInForceOut(
                issuer_sm3=item.issuer_sm3,
                crl_number=str(item.crl_number),
                this_update=item.this_update,
                next_update=item.next_update,
                entries=item.entries,
                imported_at=item.imported_at,
            )
            for item in lists
        ]
    )


_AUTH: Final = (*codes_named("OPS_"), ErrorCode.DB_UNAVAILABLE)
_DESCRIPTION: Final = (
    "Ops role: {role} or above (`Authorization: Bearer <ops token>`). docs/operations.md, "
    '"Card revocation (CRL import)".'
)

OPS_CRL_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/v1/ops/crls",
        operation_id="ops_import_crl",
        summary="Import a CRL of the pinned card PKI (the same checks as `admin crl import`).",
        description=_DESCRIPTION.format(role=OpsRole.OPERATOR),
        handler=import_crl_route,
        request_model=CrlIn,
        response_model=CrlImportedOut,
        tags=("ops enrolment",),
        signed=False,
        authorize=ops_role(OpsRole.OPERATOR),
        errors=(*_AUTH, ErrorCode.CRL_REFUSED),
    ),
    Route(
        "GET",
        "/v1/ops/crls",
        operation_id="ops_list_crls",
        summary="The CRL in force for each CA of the card PKI.",
        description=_DESCRIPTION.format(role=OpsRole.VIEWER),
        handler=list_crls_route,
        response_model=CrlsOut,
        tags=("ops enrolment",),
        signed=False,
        authorize=ops_role(OpsRole.VIEWER),
        errors=_AUTH,
    ),
)
