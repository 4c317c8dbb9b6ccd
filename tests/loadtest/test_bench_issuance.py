"""The issuance benchmark drives a real `gateway serve` over HTTP end to end at a small size (the
100,000-application run is manual) and reports every figure it promises; its CSV and programme
helpers are checked on their own."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tomllib

import pytest

from issuance.programme import parse_programme
from issuance.uploads import parse_upload
from loadtest.bench.issuance import PROGRAMME_FILE, csv_chunk, programme_for_today


def test_csv_chunks_are_valid_uploads_with_distinct_applicants() -> None:
    first, second = csv_chunk(0, 50, "ICBC"), csv_chunk(50, 120, "CCB")
    rows = parse_upload(first.decode()) + parse_upload(second.decode())
    assert len(rows) == 120
    assert len({r["citizen_id"] for r in rows}) == 120
    assert {r["salary_banks"] for r in rows[:50]} == {"ICBC"}


def test_programme_for_today_moves_only_the_employee_window() -> None:
    today = dt.date(2026, 11, 27)
    moved = parse_programme(tomllib.loads(programme_for_today(PROGRAMME_FILE.read_text(), today)))
    original = parse_programme(tomllib.loads(PROGRAMME_FILE.read_text()))
    window = moved.cohorts["employee"].window
    assert window is not None
    assert window[0] <= today <= window[1]
    assert original.cohorts["employee"].window != window
    for code in ("retiree", "pupil", "first_card"):
        assert moved.cohorts[code] == original.cohorts[code]
    assert moved.banks == original.banks


@pytest.mark.slow
def test_issuance_bench_over_http_prints_json_last_line() -> None:
    argv = [sys.executable, "-m", "loadtest.bench", "issuance", "--json",
            "--applications", "120", "--chunk", "50"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["transport"] == "http"
    assert report["applications"] == 120
    assert report["rejected"] == 0
    assert report["upload"]["uploads"] == 3
    assert report["batches"] == 1  # one channel, one collection day
    assert report["produced"] == 120
    assert report["stats_cards"]["produced"] == report["stats_cards"]["mailed"] == 120
    # CPU comes in clock ticks (10 ms): the tiny batch step may measure 0.
    for phase in ("upload", "batch", "produce"):
        assert report[phase]["server_cpu_ms_per_item"] >= 0, phase
    assert report["probe_failures"] == 0
    assert report["upload"]["probe_count"] > 0  # the hospital's echo answered meanwhile
    assert report["upload"]["server_cpu_s"] > 0
    assert report["produce"]["server_cpu_s"] > 0
    for key in ("server_peak_rss_mib", "bench_peak_rss_mib", "server_rss_after_upload_mib"):
        assert report[key] > 0, key
