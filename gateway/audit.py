"""The audit trail: one append-only row per admin or ops write (enrol, rotate, disable, CRL
import, policy change): who, when, from where, what changed. Never a secret.

:func:`record_audit` is THE hook. Call it inside the unit of work that makes the change, so
the change and its audit row commit together or not at all::

    record_audit(session, actor="ops:alice", action="terminal.disable",
                 subject="terminal:H0001-01", changes={"enabled": [True, False]},
                 source="203.0.113.7", at_ms=now_ms)

``changes`` is a flat mapping of field name to a JSON value (for an update, ``[before,
after]`` by convention). A key that names a secret (``secret``, ``token``, ``password``,
``pin``, ``sm4_key`` …) is refused outright: an audit row is read by people who must never see
one, and exported as CSV. Record what identifies a secret instead (its KEK id, a fingerprint).

Append-only is enforced by the database, as the ledger's entries are: triggers refuse UPDATE
and DELETE on SQLite and PostgreSQL (migration gw0004). The gateway has no code path that
edits a row.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import BigInteger, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.store import GatewayBase

__all__ = [
    "AUDIT_APPEND_ONLY_DDL",
    "AUDIT_APPEND_ONLY_DROP_DDL",
    "AuditEntry",
    "AuditRow",
    "JsonValue",
    "audit_csv",
    "audit_csv_header",
    "audit_csv_rows",
    "list_audit",
    "record_audit",
]

# Bounds of one row (a reader's screen, a CSV cell): stated where set.
ACTOR_MAX: Final = 64
SOURCE_MAX: Final = 64
ACTION_MAX: Final = 48
SUBJECT_MAX: Final = 128
CHANGES_MAX_CHARS: Final = 4000
_ACTION: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# A key that names secret material. ``*_id`` / ``*_name`` / ``*_fingerprint`` name one
# without being one (kek_id, token_name) and pass.
_SECRET_KEY: Final = re.compile(r"secret|token|password|passwd|\bpin\b|sm4_key|kek\b|private")
_NAMES_ONLY: Final = ("_id", "_name", "_fingerprint", "_role", "_count")


class AuditRow(GatewayBase):
    """One audited write. Append-only: triggers refuse UPDATE and DELETE (gw0004)."""

    __tablename__ = "audit_log"

    # SQLite autoincrements an INTEGER PRIMARY KEY only; BIGINT on PostgreSQL.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    source: Mapped[str] = mapped_column(String(SOURCE_MAX))
    action: Mapped[str] = mapped_column(String(ACTION_MAX))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    # JSON object, keys sorted: what changed (never a secret).
    changes: Mapped[str] = mapped_column(Text)


# The DDL of the append-only rule, per dialect (migration gw0004 runs it; tests read it).
AUDIT_APPEND_ONLY_DDL: Final[Mapping[str, tuple[str, ...]]] = {
    "sqlite": (
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
        # TRUNCATE fires no row trigger: refuse it by a statement trigger as well.
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
    ),
}
AUDIT_APPEND_ONLY_DROP_DDL: Final[Mapping[str, tuple[str, ...]]] = {
    "sqlite": (
        "DROP TRIGGER IF EXISTS audit_log_no_update",
        "DROP TRIGGER IF EXISTS audit_log_no_delete",
    ),
    "postgresql": (
        "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
        "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
        "DROP FUNCTION IF EXISTS audit_log_append_only()",
    ),
}

JsonScalar = str | int | bool | None
JsonValue = JsonScalar | list[JsonScalar]


def _check_changes(changes: Mapping[str, JsonValue]) -> str:
    for key, value in changes.items():
        if _SECRET_KEY.search(key.lower()) and not key.lower().endswith(_NAMES_ONLY):
            raise ValueError(f"audit: {key!r} names secret material; record its id instead")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not (item is None or isinstance(item, str | int | bool)):
                raise ValueError(f"audit: {key!r} must be a JSON scalar or a list of them")
    text = json.dumps(dict(changes), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    if len(text) > CHANGES_MAX_CHARS:
        raise ValueError(f"audit: changes are over {CHANGES_MAX_CHARS} characters")
    return text


def _bounded(name: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or not value.isprintable():
        raise ValueError(f"audit: {name} must be 1 to {limit} printable characters")
    return value


def record_audit(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    changes: Mapping[str, JsonValue],
    *,
    source: str = "cli",
    at_ms: int | None = None,
) -> None:
    """Append one audit row in the caller's unit of work (it commits with the change).

    ``actor``: who (``ops:<name>``, ``ops:bootstrap``, ``cli:<user>``); ``action``: dotted,
    lowercase (``terminal.enrol``, ``crl.import``); ``subject``: what (``terminal:<id>``);
    ``source``: from where (the client address, or ``cli``). ValueError on a malformed row or
    a change that names a secret: a programming error, never the user's input."""
    if not _ACTION.fullmatch(action) or len(action) > ACTION_MAX:
        raise ValueError(f"audit: action {action!r} must be dotted lowercase words")
    session.add(
        AuditRow(
            at_ms=int(time.time() * 1000) if at_ms is None else at_ms,
            actor=_bounded("actor", actor, ACTOR_MAX),
            source=_bounded("source", source[:SOURCE_MAX] or "unknown", SOURCE_MAX),
            action=action,
            subject=_bounded("subject", subject, SUBJECT_MAX),
            changes=_check_changes(changes),
        )
    )
    session.flush()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at_ms: int
    actor: str
    source: str
    action: str
    subject: str
    changes: str  # JSON object text


def list_audit(
    session: Session,
    *,
    limit: int,
    before_id: int | None = None,
    action: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[AuditEntry]:
    """The newest ``limit`` rows (before ``before_id``: the next page), newest first; only
    those written from ``since_ms`` (included) to ``until_ms`` (excluded) if given."""
    assert 1 <= limit <= 10_000
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditRow.id < before_id)
    if action is not None:
        query = query.where(AuditRow.action == action)
    if since_ms is not None:
        query = query.where(AuditRow.at_ms >= since_ms)
    if until_ms is not None:
        query = query.where(AuditRow.at_ms < until_ms)
    return [
        AuditEntry(r.id, r.at_ms, r.actor, r.source, r.action, r.subject, r.changes)
        for r in session.scalars(query)
    ]


_CSV_HEADER: Final = ("id", "at_utc", "actor", "source", "action", "subject", "changes")
# A cell starting with one of these is a formula to a spreadsheet (CSV injection): prefixed.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def audit_csv(entries: Iterable[AuditEntry]) -> str:
    """RFC 4180 CSV with a header row; times in UTC ISO 8601."""
    return audit_csv_header() + audit_csv_rows(entries)


def audit_csv_header() -> str:
    """The CSV's header row (a streamed export writes it, then pages of rows)."""
    return audit_csv_rows((), header=True)


def audit_csv_rows(entries: Iterable[AuditEntry], *, header: bool = False) -> str:
    """Rows of the CSV, without the header row unless ``header``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(_CSV_HEADER)
    for e in entries:
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e.at_ms / 1000))
        at += f".{e.at_ms % 1000:03d}Z"
        cells = (e.actor, e.source, e.action, e.subject, e.changes)
        writer.writerow([str(e.id), at, *(_cell(v) for v in cells)])
    return out.getvalue()
