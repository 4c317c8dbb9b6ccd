"""Run it for real (issue 14): `gateway serve --workers 2` with the demo world OFF on an empty
PostgreSQL schema of its own; an institution and a terminal enrolled with `gateway admin` (a
subprocess, as an operator would); a whole visit with a software card from that terminal;
its secret rotated (both accepted during the overlap, only the new one after); then disabled
(refused by both workers within the terminal directory's TTL). Every wait is a poll with a
deadline, never a fixed sleep.

What enrolment does not do is set up here the way a deployment gets it from elsewhere: the
card issuer's CA certificates as PEM files (the settings an operator sets), and cardholders,
cards and insured persons in the registry (issuance and the bureau's feeds; here the demo
registry's rows for a few holders, written into the database directly).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from gateway.card_auth.demo_cards import DemoCards
from gateway.settlement_api.demo import DemoSettlementPersons
from sscard import demo as sd
from sscard.terminal_auth import signed_headers
from terminal_sdk import FeeLine, GatewayClient, MemoryReader, SocialSecurityCard, pharmacy_purchase
from terminal_sdk.demo import demo_software_card

pytestmark = pytest.mark.integration

SEED = "enrolment-itest"
START_TIMEOUT_S = 90.0
TTL_S = 1.0
# Beyond the TTL: a loaded 2-core machine schedules the workers' next request late.
SLACK_S = 5.0
OVERLAP_S = 30
TERMINAL = "P-ENROL-01"
HOLDERS = 20


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _until(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``check`` until true; the seconds it took. Fails after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def served(tmp_path: Path, postgres_schema_url: str) -> Iterator[Served]:
    pki = sd.demo_pki(SEED)
    (tmp_path / "root.pem").write_bytes(pki.root.to_pem())
    (tmp_path / "issuing.pem").write_bytes(pki.issuing.to_pem())
    (tmp_path / "kek").write_text(secrets.token_hex(32) + "\n")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env |= {
        "GATEWAY_DB_URL": postgres_schema_url,
        "GATEWAY_DATA_DIR": str(tmp_path / "var"),
        "GATEWAY_DEMO_WORLD": "off",
        "GATEWAY_KEK_FILE": str(tmp_path / "kek"),
        "GATEWAY_TERMINAL_CACHE_TTL_S": str(TTL_S),
        "GATEWAY_CARD_TRUST_ROOT_PEM": str(tmp_path / "root.pem"),
        "GATEWAY_CARD_ISSUING_CA_PEMS": str(tmp_path / "issuing.pem"),
        "GATEWAY_SHUTDOWN_TIMEOUT_S": "5",
    }
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    gw = Served(process, port, env, log_path)
    try:
        _until("the gateway is ready", lambda: _ready(gw), START_TIMEOUT_S)
        yield gw
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _ready(gw: Served) -> bool:
    if gw.process.poll() is not None:
        pytest.fail(f"gateway exited with {gw.process.returncode}:\n{gw.log()}")
    connection = gw.connection()
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def admin(gw: Served, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "admin", *argv],
        env=gw.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _registry(gw: Served) -> None:
    """Cardholders, cards and insured persons, as issuance and the bureau would have them."""
    engine = create_engine(gw.env["GATEWAY_DB_URL"])
    try:
        with Session(engine) as session, session.begin():
            DemoCards(holders=HOLDERS).load(session, SEED)
            DemoSettlementPersons().load(session, SEED)
    finally:
        engine.dispose()


def _echo(connection: http.client.HTTPConnection, secret: bytes) -> tuple[int, dict[str, object]]:
    body = json.dumps({"message": "enrolled"}).encode()
    headers = signed_headers(
        secret,
        TERMINAL,
        "POST",
        "/v1/echo",
        body,
        timestamp=int(time.time()),
        nonce=secrets.token_urlsafe(24),
    )
    headers["Content-Type"] = "application/json"
    connection.request("POST", "/v1/echo", body=body, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _one_per_worker(gw: Served, secret: bytes) -> list[http.client.HTTPConnection]:
    """Keep-alive connections, one on each worker (SO_REUSEPORT spreads new connections)."""
    by_pid: dict[int, http.client.HTTPConnection] = {}

    def another() -> bool:
        connection = gw.connection()
        status, body = _echo(connection, secret)
        assert status == 200, body
        pid = body["worker_pid"]
        assert isinstance(pid, int)
        if pid in by_pid:
            connection.close()
        else:
            by_pid[pid] = connection
        return len(by_pid) == 2

    _until("a connection on each of the two workers", another, 60)
    return list(by_pid.values())


def _code(connection: http.client.HTTPConnection, secret: bytes) -> str:
    status, body = _echo(connection, secret)
    return "OK" if status == 200 else str(body["code"])


def _everywhere(workers: list[http.client.HTTPConnection], secret: bytes, code: str) -> bool:
    return all(_code(c, secret) == code for c in workers)


async def test_enrol_visit_rotate_disable_on_two_workers(served: Served) -> None:
    out = admin(
        served, "institution", "add", "P-ENROL", "--name", "Enrolled Pharmacy", "--kind", "pharmacy"
    )
    assert "added" in out
    out = admin(served, "terminal", "enrol", TERMINAL, "--institution", "P-ENROL")
    first = bytes.fromhex(re.search(r"shown ONCE[^:]*: ([0-9a-f]+)", out).group(1))  # type: ignore[union-attr]
    _registry(served)

    # A whole visit from the enrolled terminal, with a software card.
    card_m = sd.find_demo_cards(SEED, generation=3, state=sd.ACTIVE)[0].number
    assert card_m < 2 * HOLDERS
    reader = MemoryReader()
    try:
        reader.insert(demo_software_card(SEED, card_m))
        card = SocialSecurityCard.connect(reader)
        async with GatewayClient(served.url, TERMINAL, first) as client:
            visit = await pharmacy_purchase(client, card, [FeeLine("DEMO-B-001", 1, 4600)])
    finally:
        reader.close()
    assert visit.receipt.medfee_sumamt == 4600
    assert visit.receipt.setl_id

    workers = _one_per_worker(served, first)

    # Rotate: during the overlap both secrets work on both workers, then only the new one.
    out = admin(served, "terminal", "rotate", TERMINAL, "--overlap-s", str(OVERLAP_S))
    second = bytes.fromhex(re.search(r"shown ONCE[^:]*: ([0-9a-f]+)", out).group(1))  # type: ignore[union-attr]
    until_s = int(re.search(r"accepted until (\d+)", out).group(1))  # type: ignore[union-attr]
    _until(
        "the new secret on both workers",
        lambda: _everywhere(workers, second, "OK"),
        TTL_S + SLACK_S,
    )
    if time.time() < until_s - 1:
        assert _everywhere(workers, first, "OK"), "the previous secret within its overlap"
    _until(
        "the previous secret refused after its overlap",
        lambda: _everywhere(workers, first, "SIGNATURE_INVALID"),
        until_s - time.time() + TTL_S + SLACK_S,
    )
    assert time.time() >= until_s
    assert _everywhere(workers, second, "OK")

    # Disable: refused by both workers within the TTL (measured from the committed change).
    admin(served, "terminal", "disable", TERMINAL)
    took_s = _until(
        "the disabled terminal refused by both workers",
        lambda: _everywhere(workers, second, "TERMINAL_DISABLED"),
        TTL_S + SLACK_S,
    )
    assert took_s <= TTL_S + SLACK_S
    for connection in workers:
        connection.close()

    audit = admin(served, "audit", "list")
    for action in ("institution.add", "terminal.enrol", "terminal.rotate", "terminal.disable"):
        assert action in audit
    for secret in (first, second):
        assert secret.hex() not in audit
        assert secret.hex() not in served.log()
