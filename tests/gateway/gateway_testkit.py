"""Helpers shared by the gateway tests (a uniquely named module: every test directory has its own
conftest, so ``from conftest import`` would be ambiguous)."""

from __future__ import annotations

import contextlib
import io
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from gateway.errors import ERRORS, PROBLEM_CONTENT_TYPE
from gateway.openapi import Problem
from gateway.store import RequestNonce
from sscard.terminal_auth import (
    HEADER_CARD_SESSION,
    HEADER_IDEMPOTENCY_KEY,
    SIGNATURE_VERSION,
    signed_headers,
)

Client = TestClient[web.Request, web.Application]

T0 = 1_800_000_000.0  # 2027-01-15, a fixed "now"

HOSPITAL = "H31000099001"
PHARMACY = "P31000099001"
OK_TERMINAL = "TEST-OK-01"
OTHER_TERMINAL = "TEST-OK-02"
OFF_TERMINAL = "TEST-OFF-01"
SECRETS = {
    OK_TERMINAL: b"\x11" * 32,
    OTHER_TERMINAL: b"\x22" * 32,
    OFF_TERMINAL: b"\x33" * 32,
}


class FakeClock:
    def __init__(self, now_s: float = T0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Signer:
    """Sends signed requests as one terminal, at the fake clock's time."""

    client: Client
    clock: FakeClock
    terminal_id: str = OK_TERMINAL
    secret: bytes = SECRETS[OK_TERMINAL]

    def headers(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        nonce: str | None = None,
        timestamp: int | None = None,
        card_session: str | None = None,
        idempotency_key: str | None = None,
        version: int = SIGNATURE_VERSION,
    ) -> dict[str, str]:
        return signed_headers(
            self.secret,
            self.terminal_id,
            method,
            path,
            body,
            timestamp=int(self.clock.now_s) if timestamp is None else timestamp,
            nonce=nonce or secrets.token_urlsafe(24),
            card_session=card_session,
            idempotency_key=idempotency_key,
            version=version,
        )

    async def post(
        self,
        path: str = "/v1/echo",
        body: bytes | dict[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        extra_headers: dict[str, str] | None = None,
        **signing: Any,
    ) -> Any:
        if body is None:
            body = {"message": "hello"}
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        extra = dict(extra_headers or {})
        # Version 2 signs these two: handed to the signer, which returns them signed.
        signing.setdefault("card_session", extra.pop(HEADER_CARD_SESSION, None))
        signing.setdefault("idempotency_key", extra.pop(HEADER_IDEMPOTENCY_KEY, None))
        headers = {
            **self.headers("POST", path, raw, **signing),
            "Content-Type": content_type,
            **extra,
        }
        # aiohttp warns about large bytes bodies (written in one go on the loop); a file-like
        # body is streamed and still sent with its Content-Length.
        data = io.BytesIO(raw) if len(raw) > 1024 * 1024 else raw
        return await self.client.post(path, data=data, headers=headers)


def nonce_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(RequestNonce)).scalar_one()


def rejections(code: str) -> float:
    """This process's gateway_rejections_total for ``code`` (in-process registry)."""
    return REGISTRY.get_sample_value("gateway_rejections_total", {"code": code}) or 0.0


async def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """A problem+json answer with this status and code, matching the documented schema."""
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = await response.json(content_type=PROBLEM_CONTENT_TYPE)
    assert body["code"] == code
    assert body["status"] == status == ERRORS[code].status
    assert body["message"]
    assert body["message_zh"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    Problem.model_validate(body)
    return body


@contextlib.contextmanager
def counted_statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` sends to its driver inside the block (an executemany
    batch counts once): for tests that a bulk operation is batched, not row by row."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)
