"""The settle benchmark runs end to end against a real `gateway serve` and reports every figure
it promises (values are not judged: this machine's speed is not under test); its load
generator sends ordinary HTTP/1.1 requests, each signed afresh, and counts refusals by kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from loadtest.bench import auth
from loadtest.bench.settle import (
    LINES,
    PRE_SETTLE_PATH,
    SETTLE_PATH,
    Generator,
    SignedVisitPost,
    Till,
    visit_body,
)
from sscard import demo as sd
from sscard import terminal_auth as ta

TERMINAL_ID, SECRET = ta.demo_terminal(sd.DEFAULT_DEMO_SEED, 0)
TILL = Till(TERMINAL_ID, SECRET, "card-session-token.abc")
BODY = visit_body("2026-11-28")


def _parse(request: bytes) -> tuple[str, dict[str, str], bytes]:
    head, sep, body = request.partition(b"\r\n\r\n")
    assert sep
    request_line, *lines = head.decode("ascii").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(": ")
        assert colon, line
        assert name not in headers, f"{name} twice"
        headers[name] = value
    assert int(headers["Content-Length"]) == len(body)
    return request_line, headers, body


def _verify(headers: dict[str, str], path: str, body: bytes, secret: bytes = SECRET) -> None:
    # Version 2: the card session and the Idempotency-Key are inside the signature.
    assert ta.verify_signed_headers(secret, "POST", path, body, headers) == ta.SIGNATURE_VERSION


def test_visit_body_is_the_outpatient_visit_as_compact_json() -> None:
    assert json.loads(BODY) == {
        "visit_type": "outpatient",
        "visit_date": "2026-11-28",
        "lines": list(LINES),
    }
    assert b" " not in BODY


def test_each_built_settle_request_is_signed_afresh_with_every_header() -> None:
    post = SignedVisitPost("127.0.0.1:8080", SETTLE_PATH, TILL, BODY)
    first, second = post.build("b1234-0"), post.build("b1234-1")
    nonces, signatures = set(), set()
    for request, key in ((first, "b1234-0"), (second, "b1234-1")):
        request_line, headers, body = _parse(request)
        assert request_line == f"POST {SETTLE_PATH} HTTP/1.1"
        assert body == BODY
        assert headers["Host"] == "127.0.0.1:8080"
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Card-Session"] == TILL.card_session
        assert headers["Idempotency-Key"] == key
        assert headers[ta.HEADER_TERMINAL_ID] == TERMINAL_ID
        assert abs(int(headers[ta.HEADER_TIMESTAMP]) - time.time()) < 300
        _verify(headers, SETTLE_PATH, body)
        nonces.add(headers[ta.HEADER_NONCE])
        signatures.add(headers[ta.HEADER_SIGNATURE])
    assert len(nonces) == 2  # a fresh nonce per request: never a replayed signature
    assert len(signatures) == 2


def test_the_signature_covers_the_body_path_and_secret() -> None:
    _, headers, body = _parse(SignedVisitPost("h:1", SETTLE_PATH, TILL, BODY).build("k-1"))
    _verify(headers, SETTLE_PATH, body)
    with pytest.raises(ta.SignatureMismatch):
        _verify(headers, SETTLE_PATH, body.replace(b"2026-11-28", b"2026-11-29"))
    with pytest.raises(ta.SignatureMismatch):
        _verify(headers, PRE_SETTLE_PATH, body)
    with pytest.raises(ta.SignatureMismatch):
        _verify(headers, SETTLE_PATH, body, ta.demo_terminal(sd.DEFAULT_DEMO_SEED, 1)[1])


def test_a_pre_settle_request_carries_no_idempotency_key() -> None:
    request_line, headers, body = _parse(
        SignedVisitPost("h:1", PRE_SETTLE_PATH, TILL, BODY).build()
    )
    assert request_line == f"POST {PRE_SETTLE_PATH} HTTP/1.1"
    assert "Idempotency-Key" not in headers
    assert headers["X-Card-Session"] == TILL.card_session
    _verify(headers, PRE_SETTLE_PATH, body)


def test_a_card_session_that_could_break_the_head_is_refused() -> None:
    with pytest.raises(ValueError, match="card session"):
        SignedVisitPost("h:1", SETTLE_PATH, Till(TERMINAL_ID, SECRET, "a\r\nX-Evil: 1"), BODY)
    with pytest.raises(ta.MalformedAuthField):
        SignedVisitPost("h:1", SETTLE_PATH, Till("bad id", SECRET, "s"), BODY)


class _GatewayLike:
    """An aiohttp server (the gateway's HTTP stack) that checks each request's signature as
    the gateway does and answers from a script: (status, JSON or text) per request and path,
    success (200 pre-settle, 201 settle) when the script runs out."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.peers: set[object] = set()
        self.script: dict[str, list[tuple[int, Any]]] = {PRE_SETTLE_PATH: [], SETTLE_PATH: []}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        try:
            _verify(headers, request.raw_path, body)
        except ta.TerminalAuthError:
            return web.json_response({"code": "SIGNATURE_INVALID"}, status=401)
        self.seen.append((request.path, headers, body))
        script = self.script[request.path]
        if script:
            status, answer = script.pop(0)
            if isinstance(answer, str):
                return web.Response(status=status, text=answer)
            return web.json_response(answer, status=status)
        ok = 201 if request.path == SETTLE_PATH else 200
        return web.json_response({"ok": True}, status=ok)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PRE_SETTLE_PATH, self.handle)
        app.router.add_post(SETTLE_PATH, self.handle)
        return app


async def test_settlements_are_accepted_with_fresh_nonces_over_kept_alive_connections() -> None:
    gateway = _GatewayLike()
    async with TestServer(gateway.app(), host="127.0.0.1") as server:
        assert server.port is not None
        gen = Generator("127.0.0.1", server.port, BODY)
        gen.add_till(TILL)
        async with gen.connections(limit=4):
            phase = await auth.closed_loop(gen.settlement, 4, 600, limit=20)
    assert (phase.ok, dict(phase.errors)) == (20, {})
    assert [path for path, _, _ in gateway.seen].count(PRE_SETTLE_PATH) == 20
    settles = [headers for path, headers, _ in gateway.seen if path == SETTLE_PATH]
    assert sorted(h["Idempotency-Key"] for h in settles) == sorted(
        f"b{gen.run_id}-{i}" for i in range(20)
    )
    assert len({headers[ta.HEADER_NONCE] for _, headers, _ in gateway.seen}) == 40
    assert all(body == BODY for _, _, body in gateway.seen)
    assert len(gateway.peers) <= 4  # keep-alive: at most one connection per task


async def test_refusals_are_counted_by_the_gateway_code() -> None:
    gateway = _GatewayLike()
    gateway.script[PRE_SETTLE_PATH] = [(200, {}), (409, {"code": "CARD_SESSION_EXPIRED"})]
    gateway.script[SETTLE_PATH] = [
        (201, {}),
        (422, {"code": "VISIT_INVALID", "message": "no"}),
        (500, "oops"),
        (503, {"message": "no code"}),
    ]
    async with TestServer(gateway.app(), host="127.0.0.1") as server:
        assert server.port is not None
        gen = Generator("127.0.0.1", server.port, BODY)
        gen.add_till(TILL)
        async with gen.connections(limit=1):
            phase = await auth.closed_loop(gen.settlement, 1, 600, limit=5)
    assert phase.ok == 1
    assert phase.errors == Counter(
        {"PRE_CARD_SESSION_EXPIRED": 1, "VISIT_INVALID": 1, "HTTP_500_NOT_JSON": 1, "HTTP_503": 1}
    )
    keys = [h["Idempotency-Key"] for path, h, _ in gateway.seen if path == SETTLE_PATH]
    assert keys == [f"b{gen.run_id}-{i}" for i in (0, 2, 3, 4)]  # no settle after a refused pre


async def test_a_transport_failure_is_counted_as_a_client_error() -> None:
    gen = Generator("127.0.0.1", auth._free_port(), BODY)  # nothing listens there
    gen.add_till(TILL)
    async with gen.connections(limit=1):
        phase = await auth.closed_loop(gen.settlement, 1, 600, limit=2)
    assert phase.ok == 0
    assert phase.errors == Counter({"CLIENT_CONNECT": 2})  # the kind, whichever request


@pytest.mark.slow
def test_settle_bench_prints_json_last_line() -> None:
    argv = [sys.executable, "-m", "loadtest.bench", "settle", "--json", "--seconds", "0.3",
            "--workers", "1", "--cards", "6", "--concurrency", "2", "--rate", "10",
            "--ledger-entries", "0,5000", "--steady-rate", "10"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    report = json.loads(out.strip().splitlines()[-1])
    for key in ("settle_per_s", "settle_p99_ms_at_500", "hello_per_s", "ratio_settle_to_hello"):
        assert key in report, key
    assert report["settle_per_s"] > 0  # at least one durable settlement went through
    # The lean client's requests are accepted: nothing refused at this gentle load.
    assert report["settle_errors"] == {}
    assert report["errors_at_500"] == {}
    assert report["hello_per_s"] > 0
    assert report["database"] == "sqlite"
    assert report["server_cpu_ms_per_settlement"] > 0
    assert report["client_cpu_ms_per_settlement"] > 0
    assert report["client_loop"] in ("uvloop", "asyncio")
    assert "client CPU" in out
    # The ledger-size phases: history filled up to each size (4 entries per transaction, on
    # top of what the run itself posted), then settles measured at the steady rate.
    small, large = report["ledger_growth"]
    assert small["ledger_entries"] < 5000 <= large["ledger_entries"]
    assert large["ok"] > 0
    assert large["errors"] == {}
    assert large["settle_p99_ms"] is not None


@pytest.mark.slow
@pytest.mark.postgres
def test_settle_bench_on_postgresql_reports_the_database_servers_share(postgres_url: str) -> None:
    argv = [sys.executable, "-m", "loadtest.bench", "settle", "--json", "--seconds", "0.3",
            "--workers", "1", "--cards", "4", "--concurrency", "2", "--rate", "10",
            "--db", postgres_url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["database"] == "postgresql"
    assert report["settle_per_s"] > 0
    assert report["settle_errors"] == {}
    assert report["server_cpu_ms_per_settlement"] > 0
    # Beside the gateway's CPU: the database server's WAL and (where /proc is readable) CPU.
    assert report["wal_bytes_per_settlement"] > 0
    if os.geteuid() == 0:  # as in CI: the backends' /proc entries are readable
        assert report["db_cpu_ms_per_settlement"] > 0
    else:
        assert report["db_cpu_unreadable"]
    assert "database CPU" in out
