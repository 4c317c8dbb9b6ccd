"""The auth benchmark runs end to end against a real `gateway serve` and reports every figure
it promises (values are not judged: this machine's speed is not under test), and the load
generator's offline/online SM2 signatures are ordinary SM2 signatures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from loadtest.bench.cards import make_cards, make_presignatures, sign_presigned
from loadtest.bench.lean_http import LeanHttpClient, LeanHttpError
from sscard import demo as sd
from sscard.crypto import SM2PrivateKey, sm2_verify
from sscard.layout import card_auth_message

REQUIRED_KEYS = (
    "auth_per_s",
    "auth_p99_ms_at_500",
    "auth_p50_ms_at_500",
    "hello_per_s",
    "ratio_auth_to_hello",
    "verify_per_s",
    "workers",
    "concurrency",
    "achieved_rate_at_500",
    "errors_at_500",
    "server_cpu_ms_per_auth",
)


@pytest.mark.slow
def test_auth_bench_prints_json_last_line() -> None:
    argv = [sys.executable, "-m", "loadtest.bench", "auth", "--json", "--seconds", "0.3",
            "--workers", "1", "--cards", "6", "--terminals", "12", "--concurrency", "2,4",
            "--rate", "20"]  # fmt: skip
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    for key in REQUIRED_KEYS:
        assert key in report, key
    assert report["bench"] == "auth"
    assert report["workers"] == 1
    assert report["concurrency"] in (2, 4)
    assert report["auth_per_s"] > 0  # at least one full authentication went through
    assert report["hello_per_s"] > 0
    assert report["verify_per_s"] > 0
    assert report["warmup"]["ok"] > 0
    assert "open loop" in out


def test_presigned_signatures_verify_and_never_share_a_nonce() -> None:
    key = SM2PrivateKey.generate()
    presignatures = make_presignatures(5)
    assert len({p.k for p in presignatures}) == 5
    for i, presignature in enumerate(presignatures):
        message = b"card auth message %d" % i
        signature = sign_presigned(key.d, key.public_key, message, presignature)
        assert signature is not None
        sm2_verify(key.public_key, message, signature)


def test_bench_cards_are_active_third_generation_cards_that_sign() -> None:
    (card,) = make_cards(sd.DEFAULT_DEMO_SEED, 1)
    demo = sd.demo_card(sd.DEFAULT_DEMO_SEED, card.number)
    assert (demo.generation, demo.state) == (3, sd.ACTIVE)
    message = card_auth_message(bytes(16), card.raw_sn, "H31000000001-01")
    signature = card.sign(message, make_presignatures(1)[0])
    assert signature is not None
    sm2_verify(card.public_key, message, signature)


async def test_lean_client_reuses_keepalive_connections_and_reads_answers() -> None:
    peers: list[object] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        if request.path == "/chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b"x")
            await response.write_eof()
            return response
        return web.json_response(
            {"body": body.decode(), "sig": request.headers.get("X-Sig")},
            status=201 if request.method == "POST" else 200,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with (
        TestServer(app) as server,
        LeanHttpClient(server.host, server.port, limit=1, timeout_s=5) as client,
    ):
        status, body = await client.request("POST", "/a", {"X-Sig": "s1"}, b"hello")
        assert (status, json.loads(body)) == (201, {"body": "hello", "sig": "s1"})
        status, body = await client.request("GET", "/b", {})
        assert (status, json.loads(body)) == (200, {"body": "", "sig": None})
        assert len(peers) == 2
        assert peers[0] == peers[1]  # one keep-alive connection
        with pytest.raises(LeanHttpError) as refused:
            await client.request("GET", "/chunked", {})
        assert refused.value.kind == "CHUNKED"
        status, _ = await client.request("GET", "/c", {})  # a fresh connection
        assert status == 200
        assert peers[-1] != peers[0]
