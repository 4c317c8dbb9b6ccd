"""The Locust suite against a real `python -m gateway serve` (demo world, SQLite in a temp dir,
its hub simulator): a 20-second headless run of both user classes under the compressed day
shape, distributed (`--processes 2`: each worker sends its tally to the master, which checks
the books), ends with no failure but the deliberate card refusals (which are successes, named
apart) and the books check passing; and a short single-process run during which someone else
settles at the suite's hospital ends with the books check failing and exit code 3."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtest.locust._gateway_books import GatewayBooks
from sscard import demo as sd
from sscard import terminal_auth as ta
from sscard.crypto import sm2_sign
from sscard.layout import card_auth_message

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEED = "locust-itest"
START_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 180.0
BEIJING = dt.timezone(dt.timedelta(hours=8))
# Demo hospital 0: the only hospital of the short run, and the intruder's institution.
HOSPITAL = ta.demo_institution_code(0)
# The short run lasts 8 s; its users settle within a second or two of spawning.
FIRST_SETTLEMENT_TIMEOUT_S = 6.0


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-5000:]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LOCUST_"))}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("locust-gateway")
    port = _free_port()
    env = _clean_env()
    env["GATEWAY_DEMO_SEED"] = SEED
    env["GATEWAY_SHUTDOWN_TIMEOUT_S"] = "10"
    log_path = tmp / "gateway.log"
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
                str(tmp / "var"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    gw = Gateway(process, port, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"gateway exited with {process.returncode}:\n{gw.log()}")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                pytest.fail(f"gateway not ready in {START_TIMEOUT_S} s:\n{gw.log()}")
            time.sleep(0.2)
        yield gw
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _locust(gateway: Gateway, tmp: Path, *args: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "locust", "-f", "loadtest/locust", "--headless",
        "--host", gateway.url, "--ssc-seed", SEED, "--only-summary",
        "--csv", str(tmp / "run"), "--html", str(tmp / "run.html"),
        "--ssc-books-report", str(tmp / "books.json"), *args,
    ]  # fmt: skip
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(process: subprocess.Popen[str]) -> str:
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"locust did not finish in {RUN_TIMEOUT_S} s:\n{output[-5000:]}")
    return output


def _stats(tmp: Path) -> dict[str, dict[str, str]]:
    with (tmp / "run_stats.csv").open(encoding="utf-8", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_a_compressed_day_distributed_fails_nothing_and_balances_the_books(
    gateway: Gateway, tmp_path: Path
) -> None:
    started = time.monotonic()
    # The master listens on loopback only, on a free port (Locust's default is every
    # interface's 5557, which another Locust on this machine may hold).
    master_port = str(_free_port())
    process = _locust(
        gateway,
        tmp_path,
        "--processes", "2",
        "--master-bind-host", "127.0.0.1", "--master-bind-port", master_port,
        "--master-host", "127.0.0.1", "--master-port", master_port,
        "--ssc-shape", "day", "--ssc-duration", "20", "--ssc-peak-users", "8",
        "--ssc-cover-mix",
    )  # fmt: skip
    output = _finish(process)
    (tmp_path / "locust.out").write_text(output, encoding="utf-8")  # the whole log, to read
    took_s = time.monotonic() - started
    assert process.returncode == 0, output[-5000:]
    assert "SSC books check PASSED" in output, output[-5000:]
    assert took_s < RUN_TIMEOUT_S

    books = json.loads((tmp_path / "books.json").read_text(encoding="utf-8"))
    assert books["ok"] is True
    figures = books["figures"]
    # Both user classes ran and settled: settlements at hospitals (H...) and pharmacies
    # (P...). How many depends on how busy the machine is: this test judges correctness,
    # never speed.
    assert figures["hospital_settlements"] > 0
    assert figures["pharmacy_settlements"] > 0
    assert figures["statements"] > 0
    assert figures["statements_matched"] == figures["statements"]
    assert figures["doubled"] == figures["missing"] == figures["in_doubt"] == 0

    stats = _stats(tmp_path)
    total = stats.pop("Aggregated")
    assert int(total["Failure Count"]) == 0, {n: r["Failure Count"] for n, r in stats.items()}
    # Deliberate refusals (lost and superseded cards) are successes under their own names;
    # any that happened are counted there, none as a failure.
    refused = [name for name in stats if "[expect CARD_" in name]
    assert all(int(stats[name]["Failure Count"]) == 0 for name in refused)
    assert not any("CARD_LOST" in name or "CARD_SUPERSEDED" in name
                   for name in stats if "[expect" not in name)  # fmt: skip
    assert "/v1/settlements" in (tmp_path / "run.html").read_text(encoding="utf-8")


def _settle_behind_the_suites_back(gateway: Gateway) -> str:
    """A settlement at demo hospital 0 (the suite's only hospital in that run), not by Locust."""
    terminal_id, secret = ta.demo_terminal(SEED, 0)
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)

    def post(path: str, payload: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        headers = ta.signed_headers(
            secret, terminal_id, "POST", path, body,
            timestamp=int(time.time()), nonce=secrets.token_urlsafe(16),
            card_session=extra.get("X-Card-Session"),
            idempotency_key=extra.get("Idempotency-Key"),
        )  # fmt: skip
        headers.update({"Content-Type": "application/json", **extra})
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer: dict[str, Any] = json.loads(response.read())
        assert response.status in (200, 201), answer
        return answer

    card = sd.demo_card(SEED, 40)  # holder 20: an active third-generation card
    challenge = post("/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}, {})
    message = card_auth_message(
        bytes.fromhex(challenge["challenge"]), card.identity.card_sn, terminal_id
    )
    certificate = sd.demo_card_certificate(SEED, 40, sd.demo_pki(SEED)).der
    session = post(
        "/v1/card-auth/response",
        {
            "challenge_id": challenge["challenge_id"],
            "card_sn": card.card_sn,
            "signature": sm2_sign(sd.demo_card_key(SEED, 40), message).hex(),
            "certificate": base64.b64encode(certificate).decode(),
        },
        {},
    )["card_session"]
    visit = {
        "visit_type": "outpatient",
        "visit_date": dt.datetime.now(BEIJING).date().isoformat(),
        "lines": [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_500}],
    }
    settled = post(
        "/v1/settlements",
        visit,
        {"X-Card-Session": session, "Idempotency-Key": "not-locust-" + secrets.token_hex(6)},
    )
    connection.close()
    return str(settled["setl_id"])


def _hospital_settlements(gateway: Gateway) -> set[str]:
    """The setl_ids booked today at demo hospital 0, as the books check reads them."""
    books = GatewayBooks(gateway.url, SEED)
    try:
        rows, _ = books.rows(HOSPITAL, dt.datetime.now(BEIJING).date())
    finally:
        books.close()
    return {row.setl_id for row in rows}


def _wait_for_the_suites_first_settlement(
    gateway: Gateway, *, before: set[str], output: list[str]
) -> None:
    """Poll the hospital's day listing until a settlement not in ``before`` is booked."""
    deadline = time.monotonic() + FIRST_SETTLEMENT_TIMEOUT_S
    while not _hospital_settlements(gateway) - before:
        if time.monotonic() > deadline:
            pytest.fail(
                f"the suite booked nothing at {HOSPITAL} in {FIRST_SETTLEMENT_TIMEOUT_S} s:\n"
                + "".join(output)[-5000:]
            )
        time.sleep(0.1)


def test_a_settlement_the_users_never_saw_fails_the_books_and_the_exit_code(
    gateway: Gateway, tmp_path: Path
) -> None:
    before = _hospital_settlements(gateway)
    process = _locust(
        gateway,
        tmp_path,
        "--ssc-shape", "none", "-u", "2", "-r", "2", "-t", "8s",
        "--ssc-hospitals", "1", "--ssc-pharmacies", "1",
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    spawned = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "All users spawned" in line:
                spawned.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert spawned.wait(60), "".join(lines)[-5000:]
    # The intruder must land inside the run: after the books check's cutoff (taken before
    # the users spawn) and at an institution the suite settles at (only those are checked).
    # Both hold once the suite's own first settlement at the hospital is booked.
    try:
        _wait_for_the_suites_first_settlement(gateway, before=before, output=lines)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    intruder = _settle_behind_the_suites_back(gateway)
    try:
        process.wait(RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("locust did not finish")
    reader.join(10)
    process.stdout.close()
    output = "".join(lines)
    assert process.returncode == 3, output[-5000:]
    assert "SSC books check FAILED" in output
    books = json.loads((tmp_path / "books.json").read_text(encoding="utf-8"))
    assert books["ok"] is False
    assert books["figures"]["doubled"] == 1
    assert any(
        intruder in problem and "never confirmed" in problem for problem in books["problems"]
    )
