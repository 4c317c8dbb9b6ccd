"""``python -m gateway admin rollover`` as an operator runs it, on the real clock and an
embedded database migrated by ``python -m gateway db upgrade``: the current year has not
ended (refused, exit 2, nothing written); last year's roll-over completes (exit 0) and a
second run reports the same; a malformed year is a usage error."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from dbkit import BEIJING


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _rows(path: Path) -> list[tuple[int, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT year, accounts, amount_fen FROM rollover_years"
        ).fetchall()


def test_admin_rollover_from_the_command_line(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    upgraded = _gateway("db", "upgrade", *data)
    assert upgraded.returncode == 0, upgraded.stderr
    database = tmp_path / "gateway.sqlite3"
    this_year = dt.datetime.now(BEIJING).year

    refused = _gateway("admin", "rollover", "--year", str(this_year), *data)
    assert refused.returncode == 2, refused.stderr
    assert f"the year {this_year} has not ended" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert _rows(database) == []

    malformed = _gateway("admin", "rollover", "--year", "20x6", *data)
    assert malformed.returncode == 2
    assert "a year from 2000 to 2999" in malformed.stderr

    last_year = str(this_year - 1)
    checked = _gateway("admin", "rollover", "--year", last_year, "--check", *data)
    assert checked.returncode == 1, checked.stderr
    assert "NOT complete" in checked.stdout
    done = _gateway("admin", "rollover", "--year", last_year, *data)
    assert done.returncode == 0, done.stderr
    assert f"year-end roll-over of {last_year}: complete since" in done.stdout
    assert "0 accounts rolled, 0.00 yuan moved" in done.stdout
    again = _gateway("admin", "rollover", "--year", last_year, *data)
    assert (again.returncode, again.stdout) == (0, done.stdout)
    assert _rows(database) == [(this_year - 1, 0, 0)]
