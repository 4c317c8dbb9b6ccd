"""A real `python -m gateway serve` driven as remote (cross-province) demo cardholders, for the
tests/integration/test_crossprov_*.py tests: start/stop/SIGKILL the gateway against a hub
simulator (hubproc.py), authenticate demo cards as terminals, sign requests, settle many
visits concurrently, and read back both sides."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dbkit import BEIJING
from gateway.crossprov.demo import demo_remote_holders, demo_remote_psn_no
from settlement.crossprov.store import FilingType
from sscard import demo as sd
from sscard.crypto import sm2_sign
from sscard.layout import card_auth_message
from sscard.terminal_auth import demo_institution_code, demo_terminal, signed_headers

SEED = "itest-crossprov-seed"
START_TIMEOUT_S = 90.0
# The first demo institutions are hospitals; institution 0 is the demo referrals' target.
OPS_TERMINAL = 798  # institution 399, the last hospital: named an ops institution below
PROVINCES = ("110000", "320000", "330000", "340000", "440000", "510000")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def today() -> dt.date:
    return dt.datetime.now(BEIJING).date()


@dataclass
class Gateway:
    data_dir: Path
    port: int
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def start(self, workers: int = 2) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gateway", "serve", "--workers", str(workers)),
                    *("--port", str(self.port), "--data-dir", str(self.data_dir)),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    connection.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"gateway not ready within {START_TIMEOUT_S} s:\n{self.log()[-5000:]}")

    def kill(self) -> None:
        """SIGKILL the whole gateway (supervisor and workers): no shutdown at all."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def db(self) -> sqlite3.Connection:
        path = self.data_dir / "gateway.sqlite3"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


@contextlib.contextmanager
def running_gateway(
    tmp_path: Path,
    hub_url: str,
    *,
    workers: int = 2,
    extra: Mapping[str, str] | None = None,
    **settings: str,
) -> Iterator[Gateway]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    ops_institution = demo_institution_code(OPS_TERMINAL // 2)
    env.update(
        {
            "GATEWAY_DEMO_SEED": SEED,
            "GATEWAY_HUB_URL": hub_url,
            "GATEWAY_RECONCILIATION_OPS_INSTITUTIONS": ops_institution,
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
    )
    env.update(
        {f"GATEWAY_{name.upper()}": value for name, value in {**(extra or {}), **settings}.items()}
    )
    gateway = Gateway(tmp_path / "var", free_port(), tmp_path / "gateway.log", env)
    gateway.start(workers)
    try:
        yield gateway
    finally:
        gateway.kill()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


class Terminal:
    """Signed requests as demo terminal ``n`` (aiohttp; one session per test)."""

    def __init__(self, http: aiohttp.ClientSession, gateway: Gateway, n: int) -> None:
        self.http = http
        self.gateway = gateway
        self.terminal_id, self.secret = demo_terminal(SEED, n)
        self.n = n

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = signed_headers(
            self.secret,
            self.terminal_id,
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
        async with self.http.request(
            method,
            self.gateway.url + path,
            data=body,
            headers={**signed, **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=60),
        ) as response:
            raw = await response.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Answer(response.status, parsed, dict(response.headers))


_PKI: dict[str, sd.DemoPki] = {}


async def card_session(terminal: Terminal, h: int) -> str:
    """Full SM2 card authentication of holder ``h``'s third-generation card (demo card 2h)."""
    m = 2 * h
    card = sd.demo_card(SEED, m)
    pki = _PKI.setdefault(SEED, sd.demo_pki(SEED))
    granted = await terminal.request(
        "POST", "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
    )
    assert granted.status == 200, granted
    message = card_auth_message(
        bytes.fromhex(granted.body["challenge"]), bytes.fromhex(card.card_sn), terminal.terminal_id
    )
    signature = sm2_sign(sd.demo_card_key(SEED, m), message)
    answer = await terminal.request(
        "POST",
        "/v1/card-auth/response",
        {
            "challenge_id": granted.body["challenge_id"],
            "card_sn": card.card_sn,
            "signature": signature.hex(),
            "certificate": base64.b64encode(sd.demo_card_certificate(SEED, m, pki).der).decode(),
        },
    )
    assert answer.status == 200, answer
    token: str = answer.body["card_session"]
    return token


def claim(amount_fen: int = 2_500, visit_type: str = "outpatient") -> dict[str, Any]:
    return {
        "visit_type": visit_type,
        "visit_date": today().isoformat(),
        "lines": [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": amount_fen}],
    }


def holder(province: str, filing: FilingType | None, index: int = 0) -> int:
    return demo_remote_holders(province=province, filing=filing)[index]


def psn_no(h: int) -> str:
    return demo_remote_psn_no(h)


@dataclass
class Till:
    terminal: Terminal
    token: str
    h: int


@dataclass
class RunResult:
    settled: dict[str, Any] = field(default_factory=dict)  # idempotency key -> 201 body
    unknown_answers: int = 0
    unavailable_answers: int = 0
    other: list[Answer] = field(default_factory=list)


async def settle_until_done(
    till: Till, key: str, body: dict[str, Any], result: RunResult, *, deadline_s: float
) -> None:
    """What a terminal does: send; on HUB_OUTCOME_UNKNOWN / HUB_UNAVAILABLE / 409 / a broken
    connection, send again with the SAME key, until a 201 (or the deadline)."""
    headers = {"X-Card-Session": till.token, "Idempotency-Key": key}
    deadline = time.monotonic() + deadline_s
    delay = 0.05
    while time.monotonic() < deadline:
        try:
            answer = await till.terminal.request("POST", "/v1/settlements", body, headers)
        except (aiohttp.ClientError, TimeoutError, OSError):
            await asyncio.sleep(0.2)
            continue
        if answer.status == 201:
            result.settled[key] = answer.body
            return
        code = answer.body.get("code") if isinstance(answer.body, dict) else None
        if code == "HUB_OUTCOME_UNKNOWN":
            result.unknown_answers += 1
        elif code == "HUB_UNAVAILABLE":
            result.unavailable_answers += 1
        elif code not in ("IDEMPOTENCY_KEY_IN_USE", "DB_UNAVAILABLE", "OVERLOADED"):
            result.other.append(answer)
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    result.other.append(Answer(0, {"code": "DEADLINE", "key": key}, {}))


async def wait_until_settled_down(ops: Terminal, *, timeout_s: float) -> dict[str, Any]:
    """Until the reversal queue is empty and no settlement is intent or unknown."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            queue = await ops.request("GET", "/v1/crossprov/reversals?status=pending")
            rows = await all_remote_rows(ops)
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.5)
            continue
        assert queue.status == 200, queue
        open_rows = [r for r in rows if r["status"] in ("intent", "unknown")]
        last = {"depth": queue.body["depth"], "open": len(open_rows)}
        if queue.body["depth"] == 0 and not open_rows:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"reversal queue not drained within {timeout_s} s: {last}")


async def all_remote_rows(ops: Terminal) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = "0"
    while True:
        page = await ops.request(
            "GET", f"/v1/crossprov/settlements?date={today()}&scope=all&cursor={cursor}"
        )
        assert page.status == 200, page
        rows.extend(page.body["items"])
        if page.body["next_cursor"] is None:
            return rows
        cursor = page.body["next_cursor"]
