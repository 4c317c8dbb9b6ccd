"""The settle benchmark runs end to end against a real `gateway serve` and reports every figure
it promises (values are not judged: this machine's speed is not under test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_settle_bench_prints_json_last_line() -> None:
    argv = [sys.executable, "-m", "loadtest.bench", "settle", "--json", "--seconds", "0.3",
            "--workers", "1", "--cards", "6", "--concurrency", "2", "--rate", "10",
            "--ledger-entries", "0,5000", "--steady-rate", "10"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    report = json.loads(out.strip().splitlines()[-1])
    for key in ("settle_per_s", "settle_p99_ms_at_500", "hello_per_s", "ratio_settle_to_hello"):
        assert key in report, key
    assert report["settle_per_s"] > 0  # at least one durable settlement went through
    assert report["hello_per_s"] > 0
    assert report["database"] == "sqlite"
    assert report["server_cpu_ms_per_settlement"] > 0
    # The ledger-size phases: history filled up to each size (4 entries per transaction, on
    # top of what the run itself posted), then settles measured at the steady rate.
    small, large = report["ledger_growth"]
    assert small["ledger_entries"] < 5000 <= large["ledger_entries"]
    assert large["ok"] > 0
    assert large["settle_p99_ms"] is not None
