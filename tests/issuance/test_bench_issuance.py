"""The issuance benchmark runs end to end at a small size (the 100,000 run is manual)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.bench.__main__ import main


def test_issuance_bench_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    assert (
        main(
            [
                "issuance",
                "--applications",
                "60",
                "--chunk",
                "25",
                "--produce",
                "5",
                "--db",
                db,
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert '"applications": 60' in out
    assert '"produced": 5' in out
    assert '"batches": 2' in out  # two channels, one collection day
    assert "peak_rss_mib" in out
