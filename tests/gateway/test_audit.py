"""The audit trail: the hook, append-only in the database, never a secret, CSV export."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gateway.audit import audit_csv, list_audit, record_audit


def _record(engine: Engine, **changes: object) -> None:
    with Session(engine) as session, session.begin():
        record_audit(
            session,
            actor="ops:alice",
            action="terminal.disable",
            subject="terminal:H0001-01",
            changes=changes,  # type: ignore[arg-type]
            source="203.0.113.7",
            at_ms=1_700_000_000_123,
        )


def test_a_row_is_appended_and_listed_newest_first(migrated_engine: Engine):
    _record(migrated_engine, enabled=[True, False])
    with Session(migrated_engine) as session, session.begin():
        record_audit(session, "cli:root", "institution.add", "institution:H1", {"kind": "hospital"})
    with Session(migrated_engine) as session:
        rows = list_audit(session, limit=10)
    assert [r.action for r in rows] == ["institution.add", "terminal.disable"]
    assert rows[1].actor == "ops:alice"
    assert rows[1].source == "203.0.113.7"
    assert json.loads(rows[1].changes) == {"enabled": [True, False]}
    with Session(migrated_engine) as session:
        assert [r.action for r in list_audit(session, limit=10, before_id=rows[0].id)] == [
            "terminal.disable"
        ]


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"]
)
def test_the_database_refuses_to_edit_or_delete_a_row(migrated_engine: Engine, statement: str):
    _record(migrated_engine, enabled=[True, False])
    with pytest.raises(DBAPIError, match="append-only"), migrated_engine.begin() as connection:
        connection.execute(text(statement))
    with Session(migrated_engine) as session:
        assert [r.actor for r in list_audit(session, limit=10)] == ["ops:alice"]


@pytest.mark.parametrize("key", ["secret", "new_secret", "ops_token", "sm4_key", "password"])
def test_a_change_naming_a_secret_is_refused_and_nothing_is_written(
    migrated_engine: Engine, key: str
):
    with pytest.raises(ValueError, match="secret material"):
        _record(migrated_engine, **{key: "x"})
    with Session(migrated_engine) as session:
        assert list_audit(session, limit=10) == []


def test_names_of_secrets_are_fine(migrated_engine: Engine):
    _record(migrated_engine, kek_id="ab12", token_name="alice", secret_fingerprint="0f")
    with Session(migrated_engine) as session:
        assert len(list_audit(session, limit=10)) == 1


@pytest.mark.parametrize("action", ["Terminal.Disable", "disable", "terminal..x", ""])
def test_a_malformed_action_is_refused(migrated_engine: Engine, action: str):
    with Session(migrated_engine) as session, pytest.raises(ValueError, match="action"):
        record_audit(session, "cli:root", action, "terminal:x", {})


def test_csv_has_a_header_utc_times_and_no_formulas(migrated_engine: Engine):
    with Session(migrated_engine) as session, session.begin():
        record_audit(
            session,
            "=cmd|' /C calc'!A0",
            "institution.change",
            "institution:H1",
            {"name": ["a", 'b, "c"']},
            at_ms=1_700_000_000_123,
        )
    with Session(migrated_engine) as session:
        text_csv = audit_csv(list_audit(session, limit=10))
    rows = list(csv.reader(io.StringIO(text_csv)))
    assert rows[0] == ["id", "at_utc", "actor", "source", "action", "subject", "changes"]
    assert rows[1][1] == "2023-11-14T22:13:20.123Z"
    assert rows[1][2].startswith("'=")
    assert json.loads(rows[1][6]) == {"name": ["a", 'b, "c"']}
