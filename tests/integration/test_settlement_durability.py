"""An acknowledged settlement survives SIGKILL: `python -m gateway serve` (embedded SQLite,
synchronous=FULL, and PostgreSQL in a schema of its own; demo world) settles, is killed with
SIGKILL the moment the 201 arrives, is started again on the same database, and still has the
settlement; the same Idempotency-Key and body replay the very first answer instead of settling
twice."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from democard import card_auth_response

from dbkit import BEIJING
from sscard import demo as sd
from sscard.terminal_auth import demo_terminal, signed_headers

pytestmark = pytest.mark.integration

SEED = "itest-settle-seed"
TERMINAL = 3  # a hospital's terminal in the demo world
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(
    data_dir: Path, port: int, log_path: Path, db_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env["GATEWAY_DEMO_SEED"] = SEED
    env.update(db_env)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "serve", "--workers", "1"),
                *("--port", str(port), "--data-dir", str(data_dir)),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                connection.close()
                return process
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gateway not ready within {START_TIMEOUT_S} s:\n{log_path.read_text()}")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def _request(
    port: int,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    body = b"" if payload is None else json.dumps(payload).encode()
    terminal_id, secret = demo_terminal(SEED, TERMINAL)
    signed = signed_headers(
        secret,
        terminal_id,
        method,
        path,
        body,
        timestamp=int(time.time()),
        nonce=secrets.token_urlsafe(24),
        card_session=(headers or {}).get("X-Card-Session"),
        idempotency_key=(headers or {}).get("Idempotency-Key"),
    )
    if payload is not None:
        signed["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={**signed, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def _card_session(port: int) -> str:
    card = sd.demo_card(SEED, 0)
    status, raw, _ = _request(
        port, "POST", "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
    )
    assert status == 200, raw
    body = card_auth_response(SEED, 0, json.loads(raw), demo_terminal(SEED, TERMINAL)[0])
    status, raw, _ = _request(port, "POST", "/v1/card-auth/response", body)
    assert status == 200, raw
    token: str = json.loads(raw)["card_session"]
    return token


def test_acknowledged_settlement_survives_sigkill(
    tmp_path: Path, data_dir: Path, serve_db_env: dict[str, str]
) -> None:
    port = _free_port()
    log_path = tmp_path / "gateway.log"
    process = _start(data_dir, port, log_path, serve_db_env)
    try:
        token = _card_session(port)
        today = dt.datetime.now(BEIJING).date().isoformat()
        claim = {
            "visit_type": "outpatient",
            "visit_date": today,
            "lines": [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_500}],
        }
        session_headers = {"X-Card-Session": token, "Idempotency-Key": "durable-1"}
        status, first, _ = _request(port, "POST", "/v1/settlements", claim, session_headers)
        # SIGKILL right after the acknowledgement: no shutdown, no flush, no checkpoint.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        assert status == 201, first
        setl_id = json.loads(first)["setl_id"]

        process = _start(data_dir, port, log_path, serve_db_env)
        status, raw, _ = _request(port, "GET", f"/v1/settlements/{setl_id}")
        assert status == 200, raw
        stored = json.loads(raw)
        assert stored["status"] == "settled"
        assert stored["medfee_sumamt"] == 2_500
        status, replay, headers = _request(port, "POST", "/v1/settlements", claim, session_headers)
        assert status == 201, replay
        assert headers.get("Idempotent-Replayed") == "true"
        assert replay == first
        status, raw, _ = _request(port, "GET", f"/v1/settlements?date={today}")
        assert [item["setl_id"] for item in json.loads(raw)["items"]] == [setl_id]
    finally:
        _kill(process)
