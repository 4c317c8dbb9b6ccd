"""Issuing agents: the issuance role an institution acts in (issuance's ``issuance_agents``,
read by issuance.access). Set (add or change) and remove; the institution must be enrolled
and of an issuing kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit import record_audit
from gateway.enrolment.common import Actor, check_name, invalid, not_found
from gateway.enrolment.institutions import require_institution
from gateway.store import MEDICAL_KINDS
from issuance.access import Role
from issuance.store import IssuanceAgent

__all__ = ["AgentView", "list_agents", "remove_agent", "set_agent"]

_BANK: Final = re.compile(r"^[0-9A-Z]{1,8}$")
_AREA: Final = re.compile(r"^[0-9]{6}$")


@dataclass(frozen=True, slots=True)
class AgentView:
    institution_code: str
    role: str
    name: str
    bank_code: str | None
    employer_code: str | None
    area_code: str | None


def _view(row: IssuanceAgent) -> AgentView:
    return AgentView(
        row.institution_code, row.role, row.name, row.bank_code, row.employer_code, row.area_code
    )


def set_agent(
    session: Session,
    actor: Actor,
    *,
    institution_code: str,
    role: str,
    name: str,
    bank_code: str | None = None,
    employer_code: str | None = None,
    area_code: str | None = None,
) -> AgentView:
    institution = require_institution(session, institution_code)
    if institution.kind in MEDICAL_KINDS:
        invalid(f"a {institution.kind} does not issue cards: enrol an issuing institution")
    if role not in {r.value for r in Role}:
        invalid(f"role must be one of {', '.join(r.value for r in Role)}")
    name = check_name(name)
    if role in (Role.BANK, Role.EMPLOYER) and (bank_code is None or not _BANK.fullmatch(bank_code)):
        invalid("a bank or an employer needs its (partner) bank code: 1-8 of 0-9 A-Z")
    if role == Role.EMPLOYER and not employer_code:
        invalid("an employer needs its employer code")
    if role == Role.COMMUNITY and (area_code is None or not _AREA.fullmatch(area_code)):
        invalid("a community centre needs its district's 6-digit area code")
    row = session.get(IssuanceAgent, institution_code)
    before: tuple[str | None, str | None] = (None, None) if row is None else (row.role, row.name)
    if row is None:
        row = IssuanceAgent(institution_code=institution_code)
        session.add(row)
    row.role, row.name = role, name
    row.bank_code, row.employer_code, row.area_code = bank_code, employer_code, area_code
    session.flush()
    record_audit(
        session,
        actor.name,
        "issuing_agent.set",
        f"institution:{institution_code}",
        {
            "role": [before[0], role],
            "name": [before[1], name],
            "bank_code": bank_code,
            "employer_code": employer_code,
            "area_code": area_code,
        },
        source=actor.source,
        at_ms=actor.at_ms,
    )
    return _view(row)


def remove_agent(session: Session, actor: Actor, *, institution_code: str) -> None:
    row = session.get(IssuanceAgent, institution_code)
    if row is None:
        not_found(f"institution {institution_code} has no issuing role")
    session.delete(row)
    session.flush()
    record_audit(
        session,
        actor.name,
        "issuing_agent.remove",
        f"institution:{institution_code}",
        {"role": row.role},
        source=actor.source,
        at_ms=actor.at_ms,
    )


def list_agents(session: Session) -> list[AgentView]:
    return [
        _view(r)
        for r in session.scalars(select(IssuanceAgent).order_by(IssuanceAgent.institution_code))
    ]
