"""The ops enrolment API: the operations of ``gateway admin`` over HTTP, guarded by ops
roles (gateway.ops.roles). Thin: authorize, parse, call a gateway.enrolment use case in one
write unit (which appends its audit row), render. Not signed by a terminal: ``Authorization:
Bearer <ops token>``, as the dashboard's routes."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.orm import Session

from gateway.audit import list_audit
from gateway.enrolment import agents, identities, institutions, terminals, transport
from gateway.enrolment.rewrap import rewrap_secrets
from gateway.enrolment.tables import OpsRole
from gateway.errors import ErrorCode, GatewayError, codes_named
from gateway.ops.admin_models import (
    AgentIn,
    AgentOut,
    AgentsOut,
    AuditEntryOut,
    AuditOut,
    IdentitiesOut,
    IdentityIn,
    IdentityOut,
    InstitutionChangeIn,
    InstitutionIn,
    InstitutionOut,
    InstitutionsOut,
    IssuedTokenOut,
    RewrapOut,
    RotateIn,
    SecretOut,
    TerminalIn,
    TerminalOut,
    TerminalsOut,
    TransportIn,
    TransportOut,
)
from gateway.ops.audit_export import audit_export
from gateway.ops.roles import OpsPrincipal, authorize_role
from gateway.params import ascii_int
from gateway.routing import Call, Route
from gateway.sealing import KeyRing
from gateway.state import CLOCK, DATABASE, KEY_RING, SETTINGS, TERMINALS

__all__ = ["OPS_ADMIN_ROUTES"]

_NO_STORE: Final = {"Cache-Control": "no-store"}
AUDIT_PAGE_MAX: Final = 1000


def _fields(view: Any) -> dict[str, Any]:
    return dataclasses.asdict(view)


async def _write(call: Call[Any], unit: Callable[[Session], Any]) -> Any:
    return await call.app[DATABASE].write(unit)


async def _read(call: Call[Any], unit: Callable[[Session], Any]) -> Any:
    return await call.app[DATABASE].read(unit)


async def _who(call: Call[Any], role: OpsRole) -> tuple[OpsPrincipal, Any]:
    principal = await authorize_role(call.request, role)
    return principal, principal.actor(call.app[CLOCK]())


def _ring(call: Call[Any]) -> KeyRing:
    ring = call.app[KEY_RING]
    if ring is None:
        raise GatewayError(ErrorCode.KEK_UNAVAILABLE, "no key-encryption key is configured")
    return ring


def _secret(hex_text: str | None) -> bytes | None:
    if hex_text is None:
        return None
    if len(hex_text) % 2:
        raise GatewayError(ErrorCode.ENROLMENT_INVALID, "secret_hex must be whole bytes")
    return bytes.fromhex(hex_text)


def _institution(view: institutions.InstitutionView) -> InstitutionOut:
    return InstitutionOut(**_fields(view))


def _terminal(view: terminals.TerminalView) -> TerminalOut:
    return TerminalOut(
        terminal_id=view.terminal_id,
        institution_code=view.institution_code,
        enabled=view.enabled,
        kek_id=view.kek_id,
        previous_accepted_until_s=view.previous_until_s,
    )


def _secret_out(done: terminals.EnrolledSecret, generated: bool) -> SecretOut:
    return SecretOut(
        terminal_id=done.terminal_id,
        institution_code=done.institution_code,
        kek_id=done.kek_id,
        previous_accepted_until_s=done.previous_until_s,
        secret_hex=done.secret.hex() if generated else None,
    )


# --- institutions ---------------------------------------------------------------------------


async def list_institutions(call: Call[None]) -> BaseModel:
    await _who(call, OpsRole.VIEWER)
    kind = call.request.query.get("kind")
    after = call.request.query.get("after")
    rows = await _read(call, lambda s: institutions.list_institutions(s, kind=kind, after=after))
    return InstitutionsOut(institutions=[_institution(v) for v in rows])


async def add_institution(call: Call[InstitutionIn]) -> BaseModel:
    _, actor = await _who(call, OpsRole.ADMIN)
    b = call.body
    view = await _write(
        call,
        lambda s: institutions.add_institution(
            s, actor, code=b.code, name=b.name, kind=b.kind, level=b.level
        ),
    )
    return _institution(view)


async def change_institution(call: Call[InstitutionChangeIn]) -> BaseModel:
    _, actor = await _who(call, OpsRole.ADMIN)
    code, b = call.request.match_info["code"], call.body
    if b.name is None and b.level is None and b.suspended is None:
        raise GatewayError(ErrorCode.ENROLMENT_INVALID, "nothing to change")

    def unit(s: Session) -> institutions.InstitutionView:
        institutions.require_institution(s, code)
        view = None
        if b.name is not None or b.level is not None:
            view = institutions.change_institution(s, actor, code=code, name=b.name, level=b.level)
        if b.suspended is not None:
            view = institutions.suspend_institution(s, actor, code=code, suspended=b.suspended)
        assert view is not None
        return view

    return _institution(await _write(call, unit))


async def set_transport(call: Call[TransportIn]) -> BaseModel:
    _, actor = await _who(call, OpsRole.ADMIN)
    code, b, ring = call.request.match_info["code"], call.body, _ring(call)
    sm4 = None if b.sm4_key_hex is None else bytes.fromhex(b.sm4_key_hex)
    his = None if b.his_public_key_hex is None else bytes.fromhex(b.his_public_key_hex)
    view = await _write(
        call,
        lambda s: transport.set_transport(
            s,
            actor,
            ring,
            institution_code=code,
            profile=b.profile,
            sm4_key=sm4,
            his_public_key=his,
        ),
    )
    return TransportOut(**_fields(view))


# --- terminals ------------------------------------------------------------------------------


async def list_terminals(call: Call[None]) -> BaseModel:
    await _who(call, OpsRole.VIEWER)
    code = call.request.query.get("institution_code")
    after = call.request.query.get("after")
    rows = await _read(
        call, lambda s: terminals.list_terminals(s, institution_code=code, after=after)
    )
    return TerminalsOut(terminals=[_terminal(v) for v in rows])


async def enrol_terminal(call: Call[TerminalIn]) -> BaseModel:
    _, actor = await _who(call, OpsRole.OPERATOR)
    b, ring = call.body, _ring(call)
    secret = _secret(b.secret_hex)
    done = await _write(
        call,
        lambda s: terminals.enrol_terminal(
            s,
            actor,
            ring,
            terminal_id=b.terminal_id,
            institution_code=b.institution_code,
            secret=secret,
        ),
    )
    return _secret_out(done, generated=secret is None)


async def rotate_terminal(call: Call[RotateIn]) -> BaseModel:
    _, actor = await _who(call, OpsRole.OPERATOR)
    terminal_id, b, ring = call.request.match_info["terminal_id"], call.body, _ring(call)
    overlap = b.overlap_s
    if overlap is None:
        overlap = call.app[SETTINGS].terminal_secret_overlap_s
    secret = _secret(b.secret_hex)
    done = await _write(
        call,
        lambda s: terminals.rotate_terminal(
            s, actor, ring, terminal_id=terminal_id, overlap_s=overlap, secret=secret
        ),
    )
    call.app[TERMINALS].forget(terminal_id)  # this worker at once; the others within the TTL
    return _secret_out(done, generated=secret is None)


def _set_enabled(enabled: bool) -> Callable[[Call[None]], Awaitable[BaseModel]]:
    async def handler(call: Call[None]) -> BaseModel:
        _, actor = await _who(call, OpsRole.OPERATOR)
        terminal_id = call.request.match_info["terminal_id"]
        view = await _write(
            call,
            lambda s: terminals.set_terminal_enabled(
                s, actor, terminal_id=terminal_id, enabled=enabled
            ),
        )
        call.app[TERMINALS].forget(terminal_id)
        return _terminal(view)

    return handler


# --- issuing agents, identities, rewrap, audit ----------------------------------------------


async def list_agents(call: Call[None]) -> BaseModel:
    await _who(call, OpsRole.VIEWER)
    rows = await _read(call, agents.list_agents)
    return AgentsOut(agents=[AgentOut(**_fields(v)) for v in rows])


async def set_agent(call: Call[AgentIn]) -> BaseModel:
    _, actor = await _who(call, OpsRole.ADMIN)
    code, b = call.request.match_info["code"], call.body
    view = await _write(
        call,
        lambda s: agents.set_agent(
            s,
            actor,
            institution_code=code,
            role=b.role,
            name=b.name,
            bank_code=b.bank_code,
            employer_code=b.employer_code,
            area_code=b.area_code,
        ),
    )
    return AgentOut(**_fields(view))


async def remove_agent(call: Call[None]) -> web.StreamResponse:
    _, actor = await _who(call, OpsRole.ADMIN)
    code = call.request.match_info["code"]
    await _write(call, lambda s: agents.remove_agent(s, actor, institution_code=code))
    return web.Response(status=204, headers=_NO_STORE)


async def list_identities(call: Call[None]) -> BaseModel:
    await _who(call, OpsRole.ADMIN)
    rows = await _read(call, identities.list_ops_identities)
    return IdentitiesOut(identities=[IdentityOut(**_fields(v)) for v in rows])


async def add_identity(call: Call[IdentityIn]) -> BaseModel:
    _, actor = await _who(call, OpsRole.ADMIN)
    b = call.body
    issued = await _write(
        call, lambda s: identities.add_ops_identity(s, actor, name=b.name, role=b.role)
    )
    return IssuedTokenOut(name=issued.name, role=issued.role, token=issued.token)


async def revoke_identity(call: Call[None]) -> BaseModel:
    _, actor = await _who(call, OpsRole.ADMIN)
    name = call.request.match_info["name"]
    view = await _write(call, lambda s: identities.revoke_ops_identity(s, actor, name=name))
    return IdentityOut(**_fields(view))


async def rewrap(call: Call[None]) -> BaseModel:
    _, actor = await _who(call, OpsRole.ADMIN)
    ring = _ring(call)
    report = await _write(call, lambda s: rewrap_secrets(s, actor, ring))
    return RewrapOut(**_fields(report))


def _limit(call: Call[Any], default: int, most: int) -> int:
    raw = call.request.query.get("limit")
    value = default if raw is None else ascii_int(raw, max_digits=6)
    if value is None or not 1 <= value <= most:
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            f"query parameter limit must be 1 to {most}",
            errors=[{"field": "limit", "problem": f"1 to {most}", "type": "int_parsing"}],
        )
    return value


async def audit_list(call: Call[None]) -> BaseModel:
    await _who(call, OpsRole.VIEWER)
    limit = _limit(call, 100, AUDIT_PAGE_MAX)
    before = call.request.query.get("before_id")
    before_id = None if before is None else _limit_before(before)
    rows = await _read(call, lambda s: list_audit(s, limit=limit, before_id=before_id))
    return AuditOut(entries=[AuditEntryOut(**_fields(e)) for e in rows])


def _limit_before(raw: str) -> int:
    value = ascii_int(raw, max_digits=18)
    if value is None:
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "before_id must be an audit row id")
    return value


_TAGS: Final = ("ops enrolment",)
_AUTH: Final = (*codes_named("OPS_"), ErrorCode.DB_UNAVAILABLE)
_WRITE: Final = (
    *_AUTH,
    ErrorCode.ENROLMENT_CONFLICT,
    ErrorCode.ENROLMENT_NOT_FOUND,
    ErrorCode.ENROLMENT_INVALID,
)
_KEYS: Final = (*_WRITE, ErrorCode.KEK_UNAVAILABLE, ErrorCode.KEK_WRONG)


def _route(
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    handler: Any,
    *,
    role: OpsRole,
    request_model: type[BaseModel] | None = None,
    response_model: type[BaseModel] | None = None,
    errors: tuple[str, ...] = _AUTH,
    status: int = 200,
    media_type: str = "application/json",
) -> Route:
    return Route(
        method,
        path,
        operation_id=operation_id,
        summary=summary,
        description=f"Ops role: {role} or above (`Authorization: Bearer <ops token>`). Every "
        "write appends an audit row. docs/operations.md.",
        handler=handler,
        request_model=request_model,
        response_model=response_model,
        response_status=status,
        response_media_type=media_type,
        response_schema={"type": "string"} if response_model is None else {},
        tags=_TAGS,
        signed=False,
        errors=errors,
    )


OPS_ADMIN_ROUTES: Final[tuple[Route, ...]] = (
    _route(
        "GET",
        "/v1/ops/institutions",
        "ops_list_institutions",
        "Institutions, by code (?kind=&after=).",
        list_institutions,
        role=OpsRole.VIEWER,
        response_model=InstitutionsOut,
    ),
    _route(
        "POST",
        "/v1/ops/institutions",
        "ops_add_institution",
        "Enrol an institution.",
        add_institution,
        role=OpsRole.ADMIN,
        request_model=InstitutionIn,
        response_model=InstitutionOut,
        errors=_WRITE,
        status=201,
    ),
    _route(
        "PATCH",
        "/v1/ops/institutions/{code}",
        "ops_change_institution",
        "Change an institution's name or level, suspend or reinstate it.",
        change_institution,
        role=OpsRole.ADMIN,
        request_model=InstitutionChangeIn,
        response_model=InstitutionOut,
        errors=_WRITE,
    ),
    _route(
        "PUT",
        "/v1/ops/institutions/{code}/transport",
        "ops_set_transport",
        "An institution's national-interface transport profile and keys (the SM4 key sealed).",
        set_transport,
        role=OpsRole.ADMIN,
        request_model=TransportIn,
        response_model=TransportOut,
        errors=_KEYS,
    ),
    _route(
        "GET",
        "/v1/ops/terminals",
        "ops_list_terminals",
        "Terminals, by id (?institution_code=&after=); never a secret.",
        list_terminals,
        role=OpsRole.VIEWER,
        response_model=TerminalsOut,
    ),
    _route(
        "POST",
        "/v1/ops/terminals",
        "ops_enrol_terminal",
        "Enrol a terminal; a secret made by the gateway is answered once.",
        enrol_terminal,
        role=OpsRole.OPERATOR,
        request_model=TerminalIn,
        response_model=SecretOut,
        errors=_KEYS,
        status=201,
    ),
    _route(
        "POST",
        "/v1/ops/terminals/{terminal_id}/rotate",
        "ops_rotate_terminal",
        "A new secret; the previous one accepted for overlap_s.",
        rotate_terminal,
        role=OpsRole.OPERATOR,
        request_model=RotateIn,
        response_model=SecretOut,
        errors=_KEYS,
    ),
    _route(
        "POST",
        "/v1/ops/terminals/{terminal_id}/disable",
        "ops_disable_terminal",
        "Disable a terminal (every worker within terminal_cache_ttl_s).",
        _set_enabled(False),
        role=OpsRole.OPERATOR,
        response_model=TerminalOut,
        errors=_WRITE,
    ),
    _route(
        "POST",
        "/v1/ops/terminals/{terminal_id}/enable",
        "ops_enable_terminal",
        "Enable a terminal again.",
        _set_enabled(True),
        role=OpsRole.OPERATOR,
        response_model=TerminalOut,
        errors=_WRITE,
    ),
    _route(
        "GET",
        "/v1/ops/issuing-agents",
        "ops_list_agents",
        "Issuing agents and roles.",
        list_agents,
        role=OpsRole.VIEWER,
        response_model=AgentsOut,
    ),
    _route(
        "PUT",
        "/v1/ops/issuing-agents/{code}",
        "ops_set_agent",
        "Set an institution's issuing role.",
        set_agent,
        role=OpsRole.ADMIN,
        request_model=AgentIn,
        response_model=AgentOut,
        errors=_WRITE,
    ),
    _route(
        "DELETE",
        "/v1/ops/issuing-agents/{code}",
        "ops_remove_agent",
        "Remove an institution's issuing role.",
        remove_agent,
        role=OpsRole.ADMIN,
        errors=_WRITE,
        status=204,
    ),
    _route(
        "GET",
        "/v1/ops/identities",
        "ops_list_identities",
        "Named ops identities.",
        list_identities,
        role=OpsRole.ADMIN,
        response_model=IdentitiesOut,
    ),
    _route(
        "POST",
        "/v1/ops/identities",
        "ops_add_identity",
        "A named ops token with a role; the token is answered once.",
        add_identity,
        role=OpsRole.ADMIN,
        request_model=IdentityIn,
        response_model=IssuedTokenOut,
        errors=_WRITE,
        status=201,
    ),
    _route(
        "POST",
        "/v1/ops/identities/{name}/revoke",
        "ops_revoke_identity",
        "Revoke a named ops token.",
        revoke_identity,
        role=OpsRole.ADMIN,
        response_model=IdentityOut,
        errors=_WRITE,
    ),
    _route(
        "POST",
        "/v1/ops/rewrap",
        "ops_rewrap",
        "Re-seal every secret under the current KEK.",
        rewrap,
        role=OpsRole.ADMIN,
        response_model=RewrapOut,
        errors=_KEYS,
    ),
    _route(
        "GET",
        "/v1/ops/audit",
        "ops_audit",
        "The audit trail, newest first (?limit=&before_id=).",
        audit_list,
        role=OpsRole.VIEWER,
        response_model=AuditOut,
        errors=(*_AUTH, ErrorCode.VALIDATION_FAILED),
    ),
    _route(
        "GET",
        "/v1/ops/audit.csv",
        "ops_audit_csv",
        "The audit trail as CSV, streamed: every row, or the days asked for (?from=&to=, "
        "Beijing), or the newest ?limit=.",
        audit_export,
        role=OpsRole.VIEWER,
        errors=(*_AUTH, ErrorCode.VALIDATION_FAILED),
        media_type="text/csv",
    ),
)
