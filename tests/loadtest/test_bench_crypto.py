"""The crypto benchmark runs and reports every figure it promises (its values are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_crypto_bench_prints_json_last_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "crypto", "--json", "--seconds", "0.2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    for key in ("verify_per_s", "verify_per_s_reference", "sign_per_s", "sign_per_s_reference"):
        assert report[key] > 0, key
    # openssl is installed by the bootstrap, so its figures and the ratio must be present.
    assert report["verify_per_s_openssl"] > 0
    assert report["ratio_verify_to_openssl"] == round(
        report["verify_per_s"] / report["verify_per_s_openssl"], 3
    )
    assert "openssl speed" in out
