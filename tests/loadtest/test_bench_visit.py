"""The visit benchmark: its overhead multiple is the arithmetic it promises, the database's CPU
is counted per backend, and a run against a real `gateway serve` on PostgreSQL reports every
figure, its own database's CPU included (values are not judged: this machine's speed is not
under test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from loadtest.bench.db_server import DatabaseCpu
from loadtest.bench.visit import overhead_multiple


def test_overhead_multiple_is_visit_cpu_over_five_hellos_and_one_verification() -> None:
    # 5 × 0.1 ms + 0.5 ms = 1.0 ms of floor; a visit costing 2.5 ms is 2.5 times that.
    assert overhead_multiple(2.5, 0.1, 0.5) == 2.5
    assert overhead_multiple(1.0, 0.1, 0.5) == 1.0
    # A side that was not measured gives no multiple rather than a made-up one.
    assert overhead_multiple(None, 0.1, 0.5) is None
    assert overhead_multiple(2.5, None, 0.5) is None
    assert overhead_multiple(2.5, 0.0, 0.0) is None


def test_database_cpu_counts_a_new_backend_from_zero_and_a_gone_one_not_at_all() -> None:
    before = {101: 1.0, 102: 2.0}
    after = {101: 1.5, 103: 0.25}  # 102 closed; 103 opened during the phase
    assert DatabaseCpu.used(before, after) == pytest.approx(0.75)


@pytest.mark.slow
def test_visit_bench_on_postgresql_prints_json_last_line(postgres_url: str) -> None:
    argv = [sys.executable, "-m", "loadtest.bench", "visit", "--json", "--seconds", "0.5",
            "--workers", "1", "--cards", "4", "--concurrency", "2",
            "--db", postgres_url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["database"] == "postgresql"
    assert report["visit_per_s"] > 0  # whole visits went through, settle included
    assert report["visit_errors"] == {}
    assert report["errors_half_capacity"] == {}
    assert report["warmup"]["errors"] == {}
    assert report["server_cpu_ms_per_visit"] > 0
    assert report["hello_cpu_ms_per_request"] > 0
    assert report["sm2_verify_ms"] > 0
    # The multiple is the promised quotient of the figures beside it.
    floor = 5 * report["hello_cpu_ms_per_request"] + report["sm2_verify_ms"]
    assert report["overhead_multiple"] == round(report["server_cpu_ms_per_visit"] / floor, 2)
    # The server's WAL over the measured phase: a visit's settle writes some.
    assert report["wal_bytes_per_visit"] > 0
    if os.geteuid() == 0:  # as in CI: the backends' /proc entries are readable
        assert report["db_cpu_ms_per_visit"] > 0
    else:  # otherwise the figure is missing and the report says why
        assert report["db_cpu_unreadable"]
    assert report["visit_p99_ms"] is not None
    assert "overhead multiple" in out
