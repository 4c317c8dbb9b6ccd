"""An in-process fake of the gateway's HTTP contract (docs/CONTRACTS.md), for SDK tests.

It verifies every request's signature with sscard.terminal_auth (and refuses a reused nonce,
as the gateway does), authenticates software cards of the test PKI, and plays the Settlement
API with a toy split and a real idempotency store. Tests script misbehaviour per route:
``fake.script["POST /v1/settlements"] = [DROP_AFTER_WORK, None]`` drops the connection after
doing the work on the first attempt and answers normally on the second.

It runs in its own thread with its own event loop, so synchronous clients can block on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from sdk_testkit import MASTER_KEY, NOW, Pki

from sscard.certs import load_der, verify_chain
from sscard.crypto import sm2_verify, sm3
from sscard.layout import CardSn, card_auth_message
from sscard.softcard import diversify_card_key, legacy_cryptogram
from sscard.terminal_auth import (
    HEADER_NONCE,
    HEADER_TERMINAL_ID,
    HEADER_TIMESTAMP,
    SIGNATURE_VERSION,
    verify_signed_headers,
)

TERMINAL_ID: Final = "H31000000001-01"
SECRET: Final = b"s" * 32

DROP: Final = "drop"  # close the connection before doing anything
DROP_AFTER_WORK: Final = "drop-after-work"  # do the work, then close without answering


@dataclass
class Problem:
    status: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # None: a problem+json body for code


Action = str | Problem | Callable[[], object] | None


def problem(status: int, code: str, **headers: str) -> Problem:
    return Problem(status, code, dict(headers))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeGateway:
    pki: Pki
    settlement_routes: bool = True
    terminal_id: str = TERMINAL_ID
    secret: bytes = SECRET
    master_key: bytes = MASTER_KEY
    script: dict[str, list[Action]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    known_certificates: set[bytes] = field(default_factory=set)
    challenges: dict[str, tuple[bytes, str, int]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    settlements: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, tuple[bytes, int, dict[str, Any]]] = field(default_factory=dict)
    balance_fen: int = 50_000
    on_settle: Callable[[], object] | None = None  # runs inside the settlement, e.g. pull the card
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeGateway:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._runner = web.AppRunner(self._app(), handle_signals=False)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        assert self._loop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def calls(self, route: str) -> list[Seen]:
        method, path = route.split(" ", 1)
        pattern = re.compile(re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(path)))
        return [
            s for s in self.seen if s.method == method and pattern.fullmatch(s.path.split("?")[0])
        ]

    # -- the app ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/card-auth/challenge", self._challenge)
        app.router.add_post("/v1/card-auth/response", self._response)
        app.router.add_get("/v1/echo", self._echo)
        app.router.add_post("/v1/echo", self._echo)
        if self.settlement_routes:
            app.router.add_post("/v1/eligibility", self._eligibility)
            app.router.add_post("/v1/settlements/pre-settle", self._pre_settle)
            app.router.add_post("/v1/settlements", self._settle)
            app.router.add_post("/v1/settlements/{setl_id}/cancel", self._cancel)
            app.router.add_get("/v1/settlements/{setl_id}", self._get)
            app.router.add_get("/v1/settlements", self._list)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        if request.match_info.http_exception is not None:
            return _problem(Problem(404, "NOT_FOUND"))
        try:
            nonce = request.headers[HEADER_NONCE]
            assert request.headers[HEADER_TERMINAL_ID] == self.terminal_id
            timestamp = int(request.headers[HEADER_TIMESTAMP])
            assert abs(timestamp - time.time()) < 300
            # The SDK signs version 2: the card session and the key are inside.
            version = verify_signed_headers(
                self.secret, request.method, request.raw_path, body, request.headers
            )
            assert version == SIGNATURE_VERSION
        except (KeyError, AssertionError, ValueError):
            return _problem(Problem(401, "SIGNATURE_INVALID"))
        if nonce in self.nonces:
            return _problem(Problem(401, "REQUEST_REPLAYED"))
        self.nonces.add(nonce)
        route = f"{request.method} {request.match_info.route.resource.canonical}"  # type: ignore[union-attr]
        queue = self.script.get(route)
        action: Action = queue.pop(0) if queue else None
        if isinstance(action, Problem):
            return _problem(action)
        if action == DROP:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        if callable(action):
            action()
        response: web.StreamResponse = await handler(request)
        if action == DROP_AFTER_WORK:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return response

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response({"path": request.raw_path})

    # -- card authentication ------------------------------------------------------------------

    async def _challenge(self, request: web.Request) -> web.Response:
        body = await request.json()
        generation = body["generation"]
        challenge = secrets.token_bytes(16 if generation == 3 else 8)
        challenge_id = secrets.token_urlsafe(16)
        self.challenges[challenge_id] = (challenge, body["card_sn"], generation)
        return web.json_response(
            {"challenge_id": challenge_id, "challenge": challenge.hex().upper(), "expires_in_s": 60}
        )

    async def _response(self, request: web.Request) -> web.Response:
        body = await request.json()
        entry = self.challenges.pop(body["challenge_id"], None)
        if entry is None:
            return _problem(Problem(404, "CHALLENGE_UNKNOWN"))
        challenge, card_sn, generation = entry
        sn = CardSn.from_hex(card_sn)
        if generation == 3:
            if "certificate" in body:
                der = base64.b64decode(body["certificate"])
                self.known_certificates.add(sm3(der))
            else:
                digest = bytes.fromhex(body["certificate_sm3"])
                if digest not in self.known_certificates:
                    return _problem(Problem(422, "CERT_UNKNOWN"))
                der = self.pki.card_cert.der
            verified = verify_chain(load_der(der), [self.pki.ca], self.pki.root, at=NOW)
            message = card_auth_message(challenge, sn, request.headers[HEADER_TERMINAL_ID])
            try:
                sm2_verify(verified.public_key, message, bytes.fromhex(body["signature"]))
            except Exception:
                return _problem(Problem(401, "CARD_SIGNATURE_INVALID"))
        else:
            expected = legacy_cryptogram(diversify_card_key(self.master_key, sn), challenge, sn)
            if bytes.fromhex(body["cryptogram"]) != expected:
                return _problem(Problem(401, "CRYPTOGRAM_INVALID"))
        token = secrets.token_urlsafe(24)
        self.sessions[token] = card_sn
        return web.json_response(
            {
                "card_session": token,
                "expires_in_s": 300,
                "card_sn": card_sn,
                "generation": generation,
            }
        )

    # -- settlement ---------------------------------------------------------------------------

    def _holder(self, request: web.Request) -> str | None:
        return self.sessions.get(request.headers.get("X-Card-Session", ""))

    async def _eligibility(self, request: web.Request) -> web.Response:
        if self._holder(request) is None:
            return _problem(Problem(401, "CARD_SESSION_INVALID"))
        return web.json_response(
            {
                "psn_no": "310000000000001",
                "benefit_category": "employee_in_service",
                "insuinfo": [{"insutype": "310", "balc": self.balance_fen}],
            }
        )

    def _split(self, claim: dict[str, Any]) -> dict[str, Any]:
        total = sum(line["quantity"] * line["unit_price_fen"] for line in claim["lines"])
        fund = total * 70 // 100
        acct = min(self.balance_fen, total - fund)
        return {
            "medfee_sumamt": total,
            "hifp_pay": fund,
            "hifob_pay": 0,
            "fund_pay_sumamt": fund,
            "acct_pay": acct,
            "psn_cash_pay": total - fund - acct,
            "psn_part_amt": total - fund,
            "balc": self.balance_fen - acct,
            "setldetail": [
                {"fund_pay_type": "310100", "fund_name": "统筹基金", "fund_payamt": fund}
            ],
        }

    async def _pre_settle(self, request: web.Request) -> web.Response:
        if self._holder(request) is None:
            return _problem(Problem(401, "CARD_SESSION_INVALID"))
        return web.json_response(self._split(await request.json()))

    def _keyed(
        self, request: web.Request, body: bytes, work: Callable[[], tuple[int, dict[str, Any]]]
    ) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return _problem(Problem(400, "IDEMPOTENCY_KEY_MISSING"))
        stored = self.keys.get(key)
        if stored is not None:
            if stored[0] != body:
                return _problem(Problem(422, "IDEMPOTENCY_KEY_REUSED"))
            return web.json_response(stored[2], status=stored[1])
        status, answer = work()
        self.keys[key] = (body, status, answer)
        return web.json_response(answer, status=status)

    async def _settle(self, request: web.Request) -> web.Response:
        if self._holder(request) is None:
            return _problem(Problem(401, "CARD_SESSION_INVALID"))
        body = await request.read()

        def work() -> tuple[int, dict[str, Any]]:
            if self.on_settle is not None:
                self.on_settle()
            claim = json.loads(body)
            setl_id = f"S{len(self.settlements) + 1:08d}"
            answer = {"setl_id": setl_id, "status": "settled", **self._split(claim)}
            self.balance_fen = answer["balc"]
            self.settlements[setl_id] = answer
            return 201, answer

        return self._keyed(request, body, work)

    async def _cancel(self, request: web.Request) -> web.Response:
        setl_id = request.match_info["setl_id"]
        body = await request.read()

        def work() -> tuple[int, dict[str, Any]]:
            settlement = self.settlements.get(setl_id)
            if settlement is None:
                return 404, {"code": "SETTLEMENT_NOT_FOUND"}
            settlement["status"] = "cancelled"
            return 200, settlement

        return self._keyed(request, body, work)

    async def _get(self, request: web.Request) -> web.Response:
        settlement = self.settlements.get(request.match_info["setl_id"])
        if settlement is None:
            return _problem(Problem(404, "SETTLEMENT_NOT_FOUND"))
        return web.json_response(settlement)

    async def _list(self, request: web.Request) -> web.Response:
        items = list(self.settlements.values())
        cursor = int(request.query.get("cursor", "0"))
        page = items[cursor : cursor + 2]
        following = cursor + 2 if cursor + 2 < len(items) else None
        return web.json_response(
            {"date": request.query["date"], "items": page, "next_cursor": following}
        )


def _problem(p: Problem) -> web.Response:
    body = p.body
    if body is None:
        body = {
            "type": f"urn:ssc-gateway:problem:{p.code}",
            "title": p.code,
            "status": p.status,
            "detail": f"fake {p.code}",
            "code": p.code,
            "message": f"Fake message for {p.code}.",
            "message_zh": f"{p.code}。",
            "request_id": "req-1",
        }
        return web.Response(
            text=json.dumps(body),
            status=p.status,
            content_type="application/problem+json",
            headers=p.headers,
        )
    return web.Response(text=str(body), status=p.status, headers=p.headers)
