"""The demo-load benchmark runs and reports every figure it promises (its values are not
judged: speed is not asserted in tests, docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_bench_prints_its_figures() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "demo", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["first_start_s"] > 0
    assert report["restart_s"] > 0
    ratio = report["first_start_s"] / report["restart_s"]
    assert abs(report["ratio_first_start_to_restart"] - ratio) <= 0.01
    assert "the load costs" in out
