"""Request and response bodies of the ops enrolment API (gateway.ops.admin_routes)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from gateway.routing import RequestModel, Text

# A plain str (the hex pattern already excludes NUL): pydantic leaves the pattern of an
# Optional Text (a str with an after-validator) out of /openapi.json while still enforcing it.
_HEX = r"^[0-9a-fA-F]+$"
SecretHex = Annotated[str, Field(min_length=32, max_length=128, pattern=_HEX)]

__all__ = [
    "AgentIn",
    "AgentOut",
    "AgentsOut",
    "AuditEntryOut",
    "AuditOut",
    "IdentitiesOut",
    "IdentityIn",
    "IdentityOut",
    "InstitutionChangeIn",
    "InstitutionIn",
    "InstitutionOut",
    "InstitutionsOut",
    "IssuedTokenOut",
    "RewrapOut",
    "RotateIn",
    "SecretOut",
    "TerminalIn",
    "TerminalOut",
    "TerminalsOut",
    "TransportIn",
    "TransportOut",
]


class InstitutionIn(RequestModel):
    code: Text = Field(min_length=1, max_length=32)
    name: Text = Field(min_length=1, max_length=128)
    kind: Text = Field(min_length=1, max_length=16)
    level: int | None = Field(None, ge=1, le=3)


class InstitutionChangeIn(RequestModel):
    name: Text | None = Field(None, min_length=1, max_length=128)
    level: int | None = Field(None, ge=1, le=3)
    suspended: bool | None = None


class TransportIn(RequestModel):
    profile: Text = Field(min_length=1, max_length=16)
    # Plain str inside the Optional, as SecretHex: the pattern must reach /openapi.json.
    sm4_key_hex: Annotated[str, Field(min_length=32, max_length=32, pattern=_HEX)] | None = None
    his_public_key_hex: (
        Annotated[str, Field(min_length=130, max_length=130, pattern=_HEX)] | None
    ) = None


class TransportOut(BaseModel):
    institution_code: str
    profile: str
    kek_id: str | None


class InstitutionOut(BaseModel):
    code: str
    name: str
    kind: str
    level: int | None
    suspended: bool


class InstitutionsOut(BaseModel):
    institutions: list[InstitutionOut]


class TerminalIn(RequestModel):
    terminal_id: Text = Field(min_length=1, max_length=64)
    institution_code: Text = Field(min_length=1, max_length=32)
    # Imported secret, hex (16-64 bytes). Absent: the gateway makes one and answers it once.
    secret_hex: SecretHex | None = None


class RotateIn(RequestModel):
    overlap_s: int | None = Field(None, ge=0, le=30 * 86_400)
    secret_hex: SecretHex | None = None


class SecretOut(BaseModel):
    terminal_id: str
    institution_code: str
    kek_id: str
    previous_accepted_until_s: int | None
    # Only when the gateway made the secret: shown this once, never again.
    secret_hex: str | None


class TerminalOut(BaseModel):
    terminal_id: str
    institution_code: str
    enabled: bool
    kek_id: str
    previous_accepted_until_s: int | None


class TerminalsOut(BaseModel):
    terminals: list[TerminalOut]


class AgentIn(RequestModel):
    role: Text = Field(min_length=1, max_length=16)
    name: Text = Field(min_length=1, max_length=128)
    bank_code: Text | None = Field(None, max_length=8)
    employer_code: Text | None = Field(None, max_length=32)
    area_code: Text | None = Field(None, max_length=6)


class AgentOut(BaseModel):
    institution_code: str
    role: str
    name: str
    bank_code: str | None
    employer_code: str | None
    area_code: str | None


class AgentsOut(BaseModel):
    agents: list[AgentOut]


class IdentityIn(RequestModel):
    name: Text = Field(min_length=1, max_length=64)
    role: Text = Field(min_length=1, max_length=16)


class IdentityOut(BaseModel):
    name: str
    role: str
    created_at_s: int
    revoked_at_s: int | None


class IdentitiesOut(BaseModel):
    identities: list[IdentityOut]


class IssuedTokenOut(BaseModel):
    name: str
    role: str
    token: str  # shown this once, never again


class RewrapOut(BaseModel):
    kek_id: str
    moved: int
    sealed: int
    unchanged: int


class AuditEntryOut(BaseModel):
    id: int
    at_ms: int
    actor: str
    source: str
    action: str
    subject: str
    changes: str  # a JSON object, as recorded


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]
