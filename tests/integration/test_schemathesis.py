"""Schemathesis against a real `gateway serve` (SQLite demo world): every operation of
/openapi.json, every check, the examples, coverage, fuzzing and stateful phases, requests signed
as demo terminals and settlement routes given a card session (schemathesis_hooks.py).

It must end with no failure and no schema error: a 5xx, an undocumented status or content
type, a response that does not match its schema, a request the document calls valid refused as
malformed, or one it calls invalid accepted. Bounded by ``MAX_EXAMPLES`` per operation and phase
(about two minutes on two cores); the counts are in docs/benchmarks.md.

The document itself must validate as OpenAPI 3.1 (openapi-spec-validator) first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from democard import card_auth_response

from sscard import demo as sd
from sscard.terminal_auth import demo_terminal, signed_headers

pytestmark = pytest.mark.integration

SEED = "itest-schemathesis"
METRICS_TOKEN = "schemathesis-metrics-token-" + "m" * 16
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
START_TIMEOUT_S = 90.0
# Per operation and phase: ~2,500 cases over 45 operations, one to two minutes on 2 cores.
MAX_EXAMPLES = int(os.environ.get("SSC_ST_MAX_EXAMPLES", "15"))
RUN_TIMEOUT_S = 420.0
PHASES = "examples,coverage,fuzzing,stateful"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = _free_port()
    env = _env()
    env.update(
        GATEWAY_DEMO_SEED=SEED,
        # One terminal sends every request: no rate limit in the way of the run.
        GATEWAY_TERMINAL_RATE_PER_S="100000",
        GATEWAY_TERMINAL_BURST="100000",
        GATEWAY_CARD_SESSION_TTL_S="3600",
        # The hooks' hospital terminal may call the operations views (clearing, reversals).
        GATEWAY_RECONCILIATION_OPS_INSTITUTIONS="H31000000001",
        # /metrics as production should run it: behind its bearer token (the document says so).
        GATEWAY_METRICS_TOKEN=METRICS_TOKEN,
        GATEWAY_SHUTDOWN_TIMEOUT_S="10",
    )
    log_path = tmp_path / "gateway.log"
    data_dir = tmp_path / "var"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--workers", "1", "--port", str(port),
             "--data-dir", str(data_dir)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
    gw = Served(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"gateway exited with {process.returncode}:\n{gw.log()}")
            try:
                with _OPENER.open(f"{gw.base_url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gateway not ready within {START_TIMEOUT_S} s:\n{gw.log()}")
            time.sleep(0.1)
        yield gw
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _signed_post(gw: Served, path: str, body: dict[str, object]) -> dict[str, object]:
    terminal_id, secret = demo_terminal(SEED, 0)
    raw = json.dumps(body).encode()
    headers = signed_headers(
        secret,
        terminal_id,
        "POST",
        path,
        raw,
        timestamp=int(time.time()),
        nonce=os.urandom(12).hex(),
    )
    request = urllib.request.Request(
        gw.base_url + path,
        data=raw,
        method="POST",
        headers={**headers, "Content-Type": "application/json"},
    )
    with _OPENER.open(request, timeout=10) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def _card_session(gw: Served) -> str:
    card = sd.demo_card(SEED, 0)
    granted = _signed_post(
        gw, "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
    )
    body = card_auth_response(SEED, 0, granted, demo_terminal(SEED, 0)[0])
    token = _signed_post(gw, "/v1/card-auth/response", body)["card_session"]
    assert isinstance(token, str)
    return token


def test_schemathesis_finds_nothing(served: Served, tmp_path: Path) -> None:
    """One test (one gateway, wherever xdist puts it): the served document validates, then
    schemathesis finds nothing."""
    from openapi_spec_validator import validate

    with _OPENER.open(f"{served.base_url}/openapi.json", timeout=10) as answer:
        validate(json.loads(answer.read()))  # raises with the first error
    env = _env()
    env.update(
        SCHEMATHESIS_HOOKS="schemathesis_hooks",
        PYTHONPATH=os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")]),
        SSC_ST_SEED=SEED,
        SSC_ST_CARD_SESSION=_card_session(served),
        SSC_ST_OPS_TOKEN=(served.data_dir / "ops-token").read_text().strip(),
        SSC_ST_METRICS_TOKEN=METRICS_TOKEN,
        SSC_ST_TOLERATED=str(tmp_path / "tolerated.jsonl"),
    )
    junit = tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(HERE / "schemathesis.toml"),
        "--no-color",
        "run", f"{served.base_url}/openapi.json",
        "--checks", "all",
        "--phases", PHASES,
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--seed", "17",
        "--report", "junit", "--report-junit-path", str(junit),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env=env,
        cwd=tmp_path,  # its cache (.schemathesis/) goes there, not into the checkout
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    print(output)
    summary = _summary(output)
    print("SCHEMATHESIS SUMMARY", json.dumps(summary))
    print("TOLERATED (valid by the document, refused by a rule it can only describe):")
    print(json.dumps(_tolerated(tmp_path / "tolerated.jsonl"), indent=1, ensure_ascii=False))
    assert result.returncode == 0, output[-20_000:]
    assert summary.get("failures", 0) == 0, output[-20_000:]
    assert "errors" not in summary, output[-20_000:]


def _tolerated(path: Path) -> dict[str, int]:
    """operation field type -> count, of the positive cases refused by a semantic rule."""
    counts: dict[str, int] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            key = f"{record['operation']} {record['field']} {record['type']}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _summary(output: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for key, pattern in {
        "operations": r"(\d+) (?:tested|selected)",
        "test_cases": r"(\d+) generated",
        "failures": r"(\d+) (?:unique )?failures?",
        "errors": r"(\d+) errors?",
    }.items():
        match = re.search(pattern, output)
        if match:
            found[key] = int(match.group(1))
    return found
