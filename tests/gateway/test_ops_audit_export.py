"""GET /v1/ops/audit.csv (gateway.ops.audit_export): the whole trail, streamed in pages by id,
newest first, complete and in order past one page and past the 10,000 rows the export was
once capped at; the days asked for (?from=&to=, Beijing); ?limit=; a failure after the answer
began drops the connection instead of ending a short file. And `gateway admin audit export`,
which was capped likewise.

Runs on SQLite and (mark ``postgres``) PostgreSQL through the shared ``db_url`` fixture.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import aiohttp
import pytest
from gateway_testkit import Client, assert_problem
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from dbkit import BEIJING
from gateway.audit import AuditRow
from gateway.cli import main
from gateway.ops import audit_export
from gateway.settings import Settings

OPS_TOKEN = "e" * 40
BEARER = {"Authorization": f"Bearer {OPS_TOKEN}"}
# More than ten pages, and more than the 10,000 newest rows the export used to stop at.
ROWS = 10 * audit_export.PAGE_ROWS + 50
DAY_MS = 86_400_000
# 2026-12-01 00:00 Beijing time; the rows are spread over the days from there.
FIRST_DAY = dt.date(2026, 12, 1)
FIRST_MS = int(dt.datetime(2026, 12, 1, tzinfo=BEIJING).timestamp() * 1000)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"ops_token": OPS_TOKEN}


def _trail(engine: Engine, count: int, *, step_ms: int) -> None:
    """``count`` audit rows in one statement, ``step_ms`` apart from FIRST_MS."""
    rows = [
        {
            "at_ms": FIRST_MS + n * step_ms,
            "actor": "cli:test",
            "source": "cli",
            "action": "terminal.enrol",
            "subject": f"terminal:T{n:05d}",
            "changes": "{}",
        }
        for n in range(count)
    ]
    with Session(engine) as session, session.begin():
        session.execute(insert(AuditRow), rows)


async def _export(client: Client, query: str = "") -> list[list[str]]:
    response = await client.get(f"/v1/ops/audit.csv{query}", headers=BEARER)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/csv"
    assert response.headers.get("X-Request-Id")
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["id", "at_utc", "actor", "source", "action", "subject", "changes"]
    return rows[1:]


async def test_the_whole_trail_comes_out_complete_and_newest_first(
    client: Client, engine: Engine
) -> None:
    _trail(engine, ROWS, step_ms=1000)
    rows = await _export(client)
    assert len(rows) == ROWS
    assert [row[5] for row in rows] == [f"terminal:T{n:05d}" for n in reversed(range(ROWS))]
    ids = [int(row[0]) for row in rows]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == ROWS
    # ?limit=: the newest that many, across a page boundary.
    limited = await _export(client, f"?limit={audit_export.PAGE_ROWS + 1}")
    assert limited == rows[: audit_export.PAGE_ROWS + 1]


async def test_the_days_asked_for_in_beijing_time(client: Client, engine: Engine) -> None:
    # One row every 6 hours: four a day, from 2026-12-01 00:00 Beijing (16:00 UTC the day
    # before), ten days.
    _trail(engine, 40, step_ms=DAY_MS // 4)
    rows = await _export(client, "?from=2026-12-03&to=2026-12-04")
    assert [row[5] for row in rows] == [f"terminal:T{n:05d}" for n in reversed(range(8, 16))]
    assert rows[-1][1] == "2026-12-02T16:00:00.000Z"  # 2026-12-03 00:00 in Beijing
    assert len(await _export(client, "?from=2026-12-09")) == 8
    assert len(await _export(client, "?to=2026-12-01")) == 4
    assert await _export(client, "?from=2026-12-05&to=2026-12-04") == []  # empty, not refused
    assert len(await _export(client, "?from=2026-12-01&to=9999-12-31")) == 40


@pytest.mark.parametrize(
    "query", ["?from=2026-12-3", "?to=tomorrow", "?limit=0", "?limit=1000000", "?limit=٣"]
)
async def test_bad_parameters_are_refused(client: Client, query: str) -> None:
    response = await client.get(f"/v1/ops/audit.csv{query}", headers=BEARER)
    await assert_problem(response, 422, "VALIDATION_FAILED")


async def test_a_failure_after_the_answer_began_cuts_the_body_short(
    client: Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trail(engine, 3 * audit_export.PAGE_ROWS, step_ms=1000)
    real = audit_export.list_audit
    pages = 0

    def failing_second_page(session: Session, **kw: Any) -> Any:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise RuntimeError("the database went away")
        return real(session, **kw)

    monkeypatch.setattr(audit_export, "list_audit", failing_second_page)
    response = await client.get("/v1/ops/audit.csv", headers=BEARER)
    assert response.status == 200  # the first page was read before the answer began
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


def test_the_admin_command_exports_the_whole_trail(
    engine: Engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _trail(engine, ROWS, step_ms=1000)
    monkeypatch.setenv("GATEWAY_DB_URL", settings.database_url)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GATEWAY_DEMO_WORLD", "off")
    assert main(["admin", "audit", "export"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][0] == "id"
    assert [row[5] for row in rows[1:]] == [f"terminal:T{n:05d}" for n in reversed(range(ROWS))]
