"""One CI detection: `.ci/run` exports SSC_CI=1 (and CI=true), tests/cikit.py is the only
reader, and a test whose prerequisite is missing fails under CI instead of skipping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cikit import CI_VARIABLE, fail_or_skip, in_ci

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"SSC_CI": "1"}, True),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"SSC_CI": "0", "CI": ""}, False),
    ],
)
def test_in_ci_reads_ssc_ci_or_ci(environ: dict[str, str], expected: bool) -> None:
    assert in_ci(environ) is expected


def test_fail_or_skip_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(CI_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match="no widget"):
        fail_or_skip("no widget")


def test_fail_or_skip_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(CI_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        fail_or_skip("no widget")


def test_ci_run_exports_the_ci_variables(tmp_path: Path) -> None:
    """.ci/run, copied beside a scripts/test that prints its environment, hands it SSC_CI=1
    and CI=true even when the caller set neither."""
    (tmp_path / ".ci").mkdir()
    shutil.copy2(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "scripts").mkdir()
    fake = tmp_path / "scripts" / "test"
    fake.write_text('#!/usr/bin/env bash\necho "SSC_CI=${SSC_CI-} CI=${CI-} ARGS=$*"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("SSC_CI", "CI")}
    result = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run"), "-k", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert result.stdout.strip() == "SSC_CI=1 CI=true ARGS=-k x"


def test_no_test_reads_the_ci_variables_itself() -> None:
    """Every other module goes through cikit, so CI means one thing everywhere."""
    pattern = re.compile(r"""environ(?:\.get\(|\[)\s*["'](?:SSC_)?CI["']""")
    offenders = [
        str(path.relative_to(REPO))
        for path in TESTS.rglob("*.py")
        if path.name != "cikit.py" and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
