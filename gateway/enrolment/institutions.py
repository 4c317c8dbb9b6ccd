"""Institutions: add (a hospital with its level, a pharmacy, an issuing kind), change, suspend
or reinstate, list. A suspended institution's terminals are refused (TERMINAL_DISABLED) by
every worker within the terminal directory's TTL; nothing is deleted."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit import JsonValue, record_audit
from gateway.enrolment.common import Actor, check_code, check_name, conflict, invalid, not_found
from gateway.store import Institution, InstitutionKind

__all__ = [
    "InstitutionView",
    "add_institution",
    "change_institution",
    "list_institutions",
    "require_institution",
    "suspend_institution",
]


@dataclass(frozen=True, slots=True)
class InstitutionView:
    code: str
    name: str
    kind: str
    level: int | None
    suspended: bool


def _view(row: Institution) -> InstitutionView:
    return InstitutionView(row.code, row.name, row.kind, row.level, bool(row.suspended))


def _kind_and_level(kind: str, level: int | None) -> tuple[str, int | None]:
    kinds = [k.value for k in InstitutionKind]
    if kind not in kinds:
        invalid(f"kind must be one of {', '.join(kinds)}")
    if kind == InstitutionKind.HOSPITAL:
        if level not in (1, 2, 3):
            invalid("a hospital needs its level: 1, 2 or 3")
    elif level is not None:
        invalid(f"only a hospital has a level, not a {kind}")
    return kind, level


def require_institution(session: Session, code: str) -> Institution:
    row = session.get(Institution, code)
    if row is None:
        not_found(f"no institution has the code {code}")
    return row


def add_institution(
    session: Session, actor: Actor, *, code: str, name: str, kind: str, level: int | None
) -> InstitutionView:
    code = check_code("institution code", code)
    name = check_name(name)
    kind, level = _kind_and_level(kind, level)
    if session.get(Institution, code) is not None:
        conflict(f"an institution with the code {code} is enrolled already")
    row = Institution(code=code, name=name, kind=kind, level=level, suspended=False)
    session.add(row)
    session.flush()
    record_audit(
        session,
        actor.name,
        "institution.add",
        f"institution:{code}",
        {"name": name, "kind": kind, "level": level},
        source=actor.source,
        at_ms=actor.at_ms,
    )
    return _view(row)


def change_institution(
    session: Session,
    actor: Actor,
    *,
    code: str,
    name: str | None = None,
    level: int | None = None,
) -> InstitutionView:
    """Change the name and/or a hospital's level (the kind never changes: enrol anew)."""
    row = require_institution(session, code)
    if name is None and level is None:
        invalid("nothing to change: give a name or a level")
    changes: dict[str, JsonValue] = {}
    if name is not None:
        name = check_name(name)
        if name != row.name:
            changes["name"] = [row.name, name]
            row.name = name
    if level is not None:
        _kind_and_level(row.kind, level)
        if level != row.level:
            changes["level"] = [row.level, level]
            row.level = level
    session.flush()
    if changes:
        record_audit(
            session,
            actor.name,
            "institution.change",
            f"institution:{code}",
            changes,
            source=actor.source,
            at_ms=actor.at_ms,
        )
    return _view(row)


def suspend_institution(
    session: Session, actor: Actor, *, code: str, suspended: bool = True
) -> InstitutionView:
    row = require_institution(session, code)
    if bool(row.suspended) != suspended:
        row.suspended = suspended
        session.flush()
        record_audit(
            session,
            actor.name,
            "institution.suspend" if suspended else "institution.reinstate",
            f"institution:{code}",
            {"suspended": [not suspended, suspended]},
            source=actor.source,
            at_ms=actor.at_ms,
        )
    return _view(row)


def list_institutions(
    session: Session, *, kind: str | None = None, after: str | None = None, limit: int = 500
) -> list[InstitutionView]:
    """By code, ``limit`` at a time (``after``: the last code of the previous page)."""
    query = select(Institution).order_by(Institution.code).limit(limit)
    if kind is not None:
        query = query.where(Institution.kind == kind)
    if after is not None:
        query = query.where(Institution.code > after)
    return [_view(row) for row in session.scalars(query)]
