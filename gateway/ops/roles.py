"""Who is calling the ops API, and may they do this: the bootstrap ``ops_token`` (an admin
named ``bootstrap``) or a named ops identity (gateway.enrolment.identities) with its role.

Roles are ordered: a viewer reads (the dashboard, listings, the audit trail); an operator
also does the day-to-day writes (terminals: enrol, rotate, disable, enable; CRL import); an
admin also enrols institutions and issuing agents, makes and revokes ops identities, and
rewraps secrets. docs/operations.md, "Ops roles", is the table.

The same brute-force guard as the bootstrap token (shared by every worker and replica,
gateway.limits.guards) counts a token that
matches neither the bootstrap token nor a live identity; a revoked identity's token is such
a token. A known token of too low a role is 403 OPS_FORBIDDEN and is not a wrong guess.

A route names its role with ``authorize=ops_role(role)``: the route pipeline
(gateway.routing) runs the check before it reads the body, so a caller without a good token
is answered 401/403/429 whatever its body, never a 422 that would describe the schema. The
handler reads the caller with :func:`principal_of`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from aiohttp import web

from gateway.enrolment.common import Actor
from gateway.enrolment.identities import find_ops_identity
from gateway.enrolment.tables import OpsRole
from gateway.errors import ErrorCode, GatewayError
from gateway.limits.guards import OPS_WRONG_TOKENS
from gateway.ops.access import OPS_ACCESS, authorize, client_of
from gateway.routing import Call
from gateway.state import CLOCK, DATABASE

__all__ = [
    "BOOTSTRAP",
    "OpsPrincipal",
    "authorize_role",
    "ops_role",
    "principal_of",
    "role_at_least",
]

BOOTSTRAP: Final = "bootstrap"
_RANK: Final = {OpsRole.VIEWER: 0, OpsRole.OPERATOR: 1, OpsRole.ADMIN: 2}
_BEARER: Final = "bearer "


@dataclass(frozen=True, slots=True)
class OpsPrincipal:
    name: str
    role: OpsRole
    source: str  # the guard's key for the client address

    def actor(self, at_s: float) -> Actor:
        return Actor(f"ops:{self.name}", self.source, at_s)


def _presented(request: web.Request) -> bytes | None:
    header = request.headers.get("Authorization")
    if not header or header[: len(_BEARER)].lower() != _BEARER:
        return None
    return header[len(_BEARER) :].strip().encode("utf-8", "surrogateescape")


async def authorize_role(request: web.Request, role: OpsRole) -> OpsPrincipal:
    """The caller, if its token is the bootstrap one or a live identity's and its role is at
    least ``role``. Raises OPS_UNAUTHORIZED (401), OPS_TOO_MANY_WRONG_TOKENS (429) or
    OPS_FORBIDDEN (403).

    Anything that is neither (no header, a wrong or revoked token, an address locked out) is
    left to gateway.ops.access.authorize, which answers, counts and logs it exactly as it does
    for the bootstrap token alone."""
    app = request.app
    presented = _presented(request)
    key = client_of(request)  # behind a trusted proxy: the client it names
    principal: OpsPrincipal | None = None
    # A locked-out address costs no database read: authorize() below answers it 429.
    if presented is not None and await app[OPS_WRONG_TOKENS].wait_s(key, app[CLOCK]()) is None:
        digest = hashlib.sha256(presented).digest()
        bootstrap = app[OPS_ACCESS].token_sha256
        if bootstrap is not None and hmac.compare_digest(digest, bootstrap):
            principal = OpsPrincipal(BOOTSTRAP, OpsRole.ADMIN, key)
        else:
            found = await app[DATABASE].read(partial(find_ops_identity, digest=digest))
            if found is not None:
                principal = OpsPrincipal(found.name, OpsRole(found.role), key)
    if principal is None:
        await authorize(request)  # raises for everything that is not the bootstrap token
        principal = OpsPrincipal(BOOTSTRAP, OpsRole.ADMIN, key)
    if not role_at_least(principal, role):
        raise GatewayError(
            ErrorCode.OPS_FORBIDDEN,
            f"ops identity {principal.name} is a {principal.role}; this needs {role}",
        )
    return principal


def role_at_least(principal: OpsPrincipal, role: OpsRole) -> bool:
    return _RANK[principal.role] >= _RANK[role]


def ops_role(role: OpsRole) -> Callable[[web.Request], Awaitable[OpsPrincipal]]:
    """A route's ``authorize``: the caller must hold ``role`` or above."""
    return partial(authorize_role, role=role)


def principal_of(call: Call[Any]) -> OpsPrincipal:
    """The caller the route's ``authorize=ops_role(...)`` let through."""
    principal = call.principal
    if not isinstance(principal, OpsPrincipal):
        # A route that forgot its authorize= fails closed (500), never open; not an assert,
        # which python -O would drop.
        raise RuntimeError("ops route without authorize=ops_role(...)")
    return principal
