"""Enrolment's own table, on the gateway's MetaData (gateway.store.metadata).

``ops_identities``
    Named ops tokens with a role (viewer, operator, admin). Only the token's SHA-256 is kept
    (the token has >= 256 bits of randomness, so a plain hash is enough: nothing to
    brute-force); it is shown once, when made. Revoked rows stay, with their time, for the
    audit trail; the name is never reused.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from sqlalchemy import BigInteger, CheckConstraint, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store import GatewayBase

__all__ = ["ROLE_CHECK", "OpsIdentity", "OpsRole"]


class OpsRole(StrEnum):
    VIEWER = "viewer"  # reads the dashboard and the audit trail
    OPERATOR = "operator"  # + day-to-day writes: terminals (enrol, rotate, disable), CRL import
    ADMIN = "admin"  # + institutions, issuing agents, ops identities


ROLE_CHECK: Final = "role IN ('viewer', 'operator', 'admin')"


class OpsIdentity(GatewayBase):
    __tablename__ = "ops_identities"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    revoked_at_s: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint(ROLE_CHECK, name="role"),)
