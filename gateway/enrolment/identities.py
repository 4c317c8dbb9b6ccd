"""Ops identities: named ops tokens with a role (viewer, operator, admin), kept as SHA-256
hashes, revocable. The ``ops_token`` setting stays the bootstrap: it acts as an admin named
``bootstrap``, so the first named identities can be made over the API as well as the CLI."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit import record_audit
from gateway.enrolment.common import Actor, conflict, invalid, not_found
from gateway.enrolment.tables import OpsIdentity, OpsRole

__all__ = [
    "IssuedToken",
    "OpsIdentityView",
    "add_ops_identity",
    "find_ops_identity",
    "list_ops_identities",
    "revoke_ops_identity",
    "token_sha256",
]

_NAME: Final = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
TOKEN_BYTES: Final = 32  # token_urlsafe(32): 43 characters, 256 bits


def token_sha256(token: str | bytes) -> bytes:
    raw = token.encode("utf-8", "surrogateescape") if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new ops token, shown once. Its repr hides it."""

    name: str
    role: str
    token: str

    def __repr__(self) -> str:
        return f"IssuedToken({self.name}, {self.role}, token=<hidden>)"


@dataclass(frozen=True, slots=True)
class OpsIdentityView:
    name: str
    role: str
    created_at_s: int
    revoked_at_s: int | None


def _view(row: OpsIdentity) -> OpsIdentityView:
    return OpsIdentityView(row.name, row.role, row.created_at_s, row.revoked_at_s)


def add_ops_identity(session: Session, actor: Actor, *, name: str, role: str) -> IssuedToken:
    if not _NAME.fullmatch(name) or name == "bootstrap":
        invalid(
            "an ops identity's name is 1-64 of a-z 0-9 _ . -, starting with a letter "
            "(not 'bootstrap', the ops_token setting's)"
        )
    if role not in {r.value for r in OpsRole}:
        invalid(f"role must be one of {', '.join(r.value for r in OpsRole)}")
    if session.get(OpsIdentity, name) is not None:
        conflict(f"an ops identity named {name} exists already (names are never reused)")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        OpsIdentity(
            name=name,
            role=role,
            token_sha256=token_sha256(token),
            created_at_s=int(actor.at_s),
            revoked_at_s=None,
        )
    )
    session.flush()
    record_audit(
        session,
        actor.name,
        "ops_identity.add",
        f"ops:{name}",
        {"role": role},
        source=actor.source,
        at_ms=actor.at_ms,
    )
    return IssuedToken(name, role, token)


def revoke_ops_identity(session: Session, actor: Actor, *, name: str) -> OpsIdentityView:
    row = session.get(OpsIdentity, name)
    if row is None:
        not_found(f"no ops identity is named {name}")
    if row.revoked_at_s is None:
        row.revoked_at_s = int(actor.at_s)
        session.flush()
        record_audit(
            session,
            actor.name,
            "ops_identity.revoke",
            f"ops:{name}",
            {"role": row.role},
            source=actor.source,
            at_ms=actor.at_ms,
        )
    return _view(row)


def list_ops_identities(session: Session) -> list[OpsIdentityView]:
    return [_view(r) for r in session.scalars(select(OpsIdentity).order_by(OpsIdentity.name))]


def find_ops_identity(session: Session, digest: bytes) -> OpsIdentityView | None:
    """The live identity whose token hashes to ``digest`` (None: unknown or revoked). The
    lookup is by an index on the hash of a 256-bit random token: nothing to time."""
    row = session.scalars(select(OpsIdentity).where(OpsIdentity.token_sha256 == digest)).first()
    if row is None or row.revoked_at_s is not None:
        return None
    return _view(row)
