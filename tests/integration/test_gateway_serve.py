"""`python -m gateway serve --workers 2` as a real process: both workers serve, metrics add up
across them, a replay is refused by the other worker, a killed worker is replaced, and SIGTERM
stops everything cleanly with exit code 0."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sscard import demo as sd
from sscard.apdu import internal_authenticate, select_aid
from sscard.layout import CERT_ADF_AID, PKI_AID, card_auth_message
from sscard.softcard import make_third_gen_card
from sscard.terminal_auth import demo_terminal, signed_headers

pytestmark = pytest.mark.integration

SEED = "itest-seed"
START_TIMEOUT_S = 60.0


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _clean_env() -> dict[str, str]:
    """This environment without the gateway's own settings (the child must see only ours)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path, serve_db_env: dict[str, str]) -> Iterator[Gateway]:
    """Two workers on SQLite, and on PostgreSQL (a schema of its own)."""
    port = _free_port()
    env = _clean_env()
    env.update(serve_db_env)
    env["GATEWAY_DEMO_SEED"] = SEED
    env["GATEWAY_SHUTDOWN_TIMEOUT_S"] = "10"
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--workers",
                "2",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "var"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so cleanup can reach the workers
        )
    gw = Gateway(process, port, log_path)
    try:
        _wait_ready(gw)
        yield gw
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _wait_ready(gw: Gateway) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if gw.process.poll() is not None:
            pytest.fail(f"gateway exited with {gw.process.returncode}:\n{gw.log()}")
        try:
            status, _ = _get(gw, "/readyz")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gateway not ready within {START_TIMEOUT_S} s:\n{gw.log()}")


def _get(gw: Gateway, path: str) -> tuple[int, bytes]:
    connection = gw.connection()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _signed_echo(
    connection: http.client.HTTPConnection, n: int, *, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST /v1/echo as demo terminal n; returns (status, body, the headers sent)."""
    body = json.dumps({"message": f"from terminal {n}"}).encode()
    if headers is None:
        terminal_id, secret = demo_terminal(SEED, n)
        headers = signed_headers(
            secret,
            terminal_id,
            "POST",
            "/v1/echo",
            body,
            timestamp=int(time.time()),
            nonce=secrets.token_urlsafe(24),
        )
        headers["Content-Type"] = "application/json"
    connection.request("POST", "/v1/echo", body=body, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read()), headers


def _signed_post(
    connection: http.client.HTTPConnection, n: int, path: str, payload: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """POST ``payload`` to ``path`` as demo terminal n; returns (status, body)."""
    body = json.dumps(payload).encode()
    terminal_id, secret = demo_terminal(SEED, n)
    headers = signed_headers(
        secret,
        terminal_id,
        "POST",
        path,
        body,
        timestamp=int(time.time()),
        nonce=secrets.token_urlsafe(24),
    )
    headers["Content-Type"] = "application/json"
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _card_authentication_across_workers(
    conn_a: http.client.HTTPConnection, conn_b: http.client.HTTPConnection
) -> None:
    """Demo card 0 (the demo registry and PKI of SEED): challenge from worker A, the card's
    answer to worker B, the same answer again to worker A (refused: one use, in the DB)."""
    card = sd.demo_card(SEED, 0)
    soft = make_third_gen_card(
        card.identity,
        sd.demo_card_key(SEED, 0),
        sd.demo_card_certificate(SEED, 0, sd.demo_pki(SEED)).der,
        sd.DEMO_PIN,
    )
    terminal_id = demo_terminal(SEED, 3)[0]
    status, granted = _signed_post(
        conn_a, 3, "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
    )
    assert status == 200, granted
    # What a terminal sends the card: SELECT PKI, SELECT SS.CERT.ADF1, INTERNAL AUTHENTICATE.
    for command in (select_aid(PKI_AID), select_aid(CERT_ADF_AID)):
        assert soft.transmit(command.to_bytes())[-2:] == b"\x90\x00"
    message = card_auth_message(bytes.fromhex(granted["challenge"]), soft.card_sn, terminal_id)
    answer = soft.transmit(internal_authenticate(message).to_bytes())
    assert answer[-2:] == b"\x90\x00"
    payload = {
        "challenge_id": granted["challenge_id"],
        "card_sn": card.card_sn,
        "signature": answer[:-2].hex(),
        "certificate": base64.b64encode(soft.certificate_der).decode(),
    }
    status, body = _signed_post(conn_b, 3, "/v1/card-auth/response", payload)
    assert status == 200, body
    assert (body["card_sn"], body["generation"]) == (card.card_sn, 3)
    status, body = _signed_post(conn_a, 3, "/v1/card-auth/response", payload)
    assert (status, body["code"]) == (409, "CHALLENGE_REUSED")


def _connections_on_two_workers(gw: Gateway) -> dict[int, http.client.HTTPConnection]:
    """Keep-alive connections, one per worker pid (SO_REUSEPORT spreads new connections)."""
    by_pid: dict[int, http.client.HTTPConnection] = {}
    # Bounded by time, not only by count: on a loaded machine the second worker may still be
    # starting (it is not listening yet, so the kernel gives every connection to the first).
    deadline = time.monotonic() + 60
    attempt = 0
    while time.monotonic() < deadline:
        connection = gw.connection()
        status, body, _ = _signed_echo(connection, attempt % 2400)
        attempt += 1
        assert status == 200, body
        if body["worker_pid"] in by_pid:
            connection.close()
            if attempt % 50 == 0:
                time.sleep(0.2)
        else:
            by_pid[body["worker_pid"]] = connection
        if len(by_pid) == 2:
            return by_pid
    pytest.fail(f"{attempt} connections in 60 s all reached one worker: {list(by_pid)}")


def _metric(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_serve_two_workers(gateway: Gateway) -> None:
    connections = _connections_on_two_workers(gateway)
    (pid_a, conn_a), (pid_b, conn_b) = connections.items()
    assert pid_a != pid_b
    assert gateway.process.pid not in connections  # the supervisor serves nothing itself

    # Metrics: every worker's echoes, summed, whichever worker answers the scrape.
    status, text = _get(gateway, "/metrics")
    assert status == 200
    ok_before = _metric(text.decode(), "gateway_requests_total", route="/v1/echo", status="200")
    sent = 0
    for pid, connection in connections.items():
        for n in range(5):
            status, body, _ = _signed_echo(connection, 100 + n)
            assert (status, body["worker_pid"]) == (200, pid)
            sent += 1
    for _ in range(4):  # new connections: answered by either worker
        status, text = _get(gateway, "/metrics")
        ok_after = _metric(text.decode(), "gateway_requests_total", route="/v1/echo", status="200")
        assert ok_after - ok_before == sent

    # Replay across workers: accepted by worker A, the same bytes refused by worker B.
    status, body, headers = _signed_echo(conn_a, 7)
    assert (status, body["worker_pid"]) == (200, pid_a)
    status, body, _ = _signed_echo(conn_b, 7, headers=headers)
    assert status == 401
    assert body["code"] == "REQUEST_REPLAYED"
    status, text = _get(gateway, "/metrics")
    assert _metric(text.decode(), "gateway_rejections_total", code="REQUEST_REPLAYED") == 1
    _card_authentication_across_workers(conn_a, conn_b)
    for connection in connections.values():
        connection.close()

    # A worker that dies is replaced; the service keeps answering meanwhile. (Connections
    # queued on the dying worker's own SO_REUSEPORT socket are reset: the price of kernel
    # balancing. Later connections go to the survivor.)
    os.kill(pid_a, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    answered = 0
    while gateway.log().count('"event": "worker ready"') < 3:
        assert time.monotonic() < deadline, gateway.log()
        time.sleep(0.2)
        with contextlib.suppress(ConnectionError):
            answered += _get(gateway, "/healthz")[0] == 200
    assert answered >= 1
    assert "worker exited unexpectedly" in gateway.log()
    replacement = _connections_on_two_workers(gateway)
    assert pid_b in replacement
    assert pid_a not in replacement
    for connection in replacement.values():
        connection.close()

    # SIGTERM: workers drain and exit, the supervisor exits 0.
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(timeout=30) == 0, gateway.log()
    for pid in replacement:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = gateway.log()
    assert '"clean": true' in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert {line["event"] for line in lines} >= {
        "gateway starting",
        "worker ready",
        "worker draining",
        "worker stopped",
        "gateway stopped",
    }
    # No personal data and no signature material in the logs.
    assert "from terminal" not in log
    assert headers["X-Signature"] not in log


def test_serve_exits_1_with_a_clear_error_when_the_port_is_taken(tmp_path: Path) -> None:
    env = _clean_env()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--port",
                str(other.getsockname()[1]),
                "--data-dir",
                str(tmp_path / "var"),
            ],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert b'"event": "cannot bind the port"' in result.stderr


def test_serve_refuses_bad_configuration_with_exit_code_2(tmp_path: Path) -> None:
    env = _clean_env()
    env["GATEWAY_WORKERS"] = "lots"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"environment variable GATEWAY_WORKERS" in result.stderr
    assert not (tmp_path / "gateway.sqlite3").exists()  # refused before touching anything
