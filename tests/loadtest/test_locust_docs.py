"""docs/load-testing.md copies the task mix's table for reading: it must say what
loadtest/locust/_mix.py says, row by row, and name every option the locustfile defines."""

from __future__ import annotations

import re
from pathlib import Path

from loadtest.locust import _mix as mix

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "load-testing.md").read_text(encoding="utf-8")
LOCUSTFILE = (ROOT / "loadtest" / "locust" / "locustfile.py").read_text(encoding="utf-8")


def _table_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] in mix.MIX:
            rows[cells[0]] = cells[1:]
    return rows


def test_the_weights_table_in_the_docs_is_the_modules() -> None:
    header = next(line for line in DOC.splitlines() if line.startswith("| terminal |"))
    assert [c.strip() for c in header.strip().strip("|").split("|")][1:] == list(mix.KINDS)
    rows = _table_rows()
    assert set(rows) == set(mix.MIX)
    for key, weights in mix.MIX.items():
        assert [int(cell) for cell in rows[key]] == list(weights), key


def test_the_user_and_level_weights_in_the_docs_are_the_modules() -> None:
    hospital, pharmacy = (
        mix.USER_CLASS_WEIGHTS["HospitalTerminal"],
        mix.USER_CLASS_WEIGHTS["PharmacyTerminal"],
    )
    assert f"`HospitalTerminal` {hospital} : `PharmacyTerminal` {pharmacy}" in DOC
    for level, weight in mix.HOSPITAL_LEVEL_WEIGHTS.items():
        assert f"level {level} {weight} %" in DOC


def test_every_option_is_documented() -> None:
    options = set(re.findall(r'"(--ssc-[a-z-]+)"', LOCUSTFILE))
    assert len(options) >= 8
    for option in options:
        assert f"`{option}`" in DOC, option
