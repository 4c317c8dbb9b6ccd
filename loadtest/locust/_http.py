"""Signed requests of one terminal, judged and counted in Locust's statistics.

Every request is signed afresh (:func:`sscard.terminal_auth.signed_headers`: HMAC-SM3 over
method, path with query, a new timestamp and nonce, and the SM3 of the exact body bytes
sent). :meth:`SignedClient.call` sends it on the user's ``FastHttpSession`` with
``catch_response`` and decides success itself:

- the statuses the caller expects are a success;
- an *expected refusal* (``refusal="CARD_LOST"``) is a success too, when the gateway answers
  that very code; anything else, a 200 included, is a failure ("expected CARD_LOST, got
  HTTP 200"). Such requests carry their own name, e.g. ``/v1/card-auth/response [expect
  CARD_LOST]``, so the report shows them apart from the authentications that must succeed;
- everything else is a failure whose message is ``HTTP <status> <code>`` (or the transport
  error's type), never an id, so Locust groups failures by kind.

This module does not import locust: the session is anything with Locust's
``request(method, url, name=, data=, headers=, catch_response=True)``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from loadtest.locust._world import Terminal
from sscard import terminal_auth as ta

__all__ = ["RETRYABLE_CODES", "Answer", "SessionLike", "SignedClient"]

#: Refusals that say "not now" rather than "no": the same request may be sent again.
RETRYABLE_CODES: Final = frozenset(
    {"IDEMPOTENCY_KEY_IN_USE", "RATE_LIMITED", "HUB_UNAVAILABLE", "HUB_OUTCOME_UNKNOWN"}
)


class _Response(Protocol):
    status_code: int
    content: bytes | None
    headers: Any
    error: Any

    def success(self) -> None: ...
    def failure(self, exc: Any) -> None: ...


class _ResponseContext(Protocol):
    def __enter__(self) -> _Response: ...
    def __exit__(self, *exc: object) -> bool | None: ...


class SessionLike(Protocol):
    """What this module needs of Locust's ``FastHttpSession``."""

    def request(
        self,
        method: str,
        url: str,
        *,
        name: str | None = ...,
        data: Any = ...,
        catch_response: bool = ...,
        headers: dict[str, str] | None = ...,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: status 0 when no HTTP answer came at all (``transport`` says why)."""

    status: int
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    transport: str | None = None

    @property
    def code(self) -> str | None:
        code = self.body.get("code")
        return code if isinstance(code, str) else None

    @property
    def retryable(self) -> bool:
        """Worth sending again, unchanged (same Idempotency-Key): no answer, a 5xx, or a
        "not now" refusal. The outcome of a money request is unknown until then."""
        return self.status == 0 or self.status >= 500 or self.code in RETRYABLE_CODES

    @property
    def retry_after_s(self) -> float | None:
        value = self.headers.get("Retry-After", "")
        return float(value) if value.isdigit() else None

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer: {self.transport}"
        return f"HTTP {self.status} {self.code or ''}".rstrip()


def _headers(response: _Response) -> dict[str, str]:
    raw = response.headers
    if not raw:
        return {}
    # geventhttpclient's headers are case-insensitive; keep the two this suite reads.
    out: dict[str, str] = {}
    for name in ("Retry-After", "Idempotent-Replayed"):
        value = raw.get(name)
        if value is not None:
            out[name] = str(value)
    return out


def _parse(response: _Response) -> Answer:
    if not response.status_code:  # Locust's ErrorResponse: the request got no HTTP answer
        error = getattr(response, "error", None)
        return Answer(0, transport=type(error).__name__ if error is not None else "unknown")
    body: Mapping[str, Any] = {}
    if response.content:
        try:
            parsed = json.loads(response.content)
        except ValueError:
            parsed = {"code": "NOT_JSON"}
        body = parsed if isinstance(parsed, dict) else {"code": "NOT_AN_OBJECT"}
    return Answer(response.status_code, body, _headers(response))


class SignedClient:
    """One terminal's signed requests on one Locust session."""

    def __init__(self, session: SessionLike, terminal: Terminal) -> None:
        self.session = session
        self.terminal = terminal

    def call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        name: str,
        ok: tuple[int, ...] = (200,),
        refusal: str | None = None,
        headers: Mapping[str, str] | None = None,
        check: Callable[[Answer], str | None] | None = None,
    ) -> Answer:
        """Send, judge (module docstring), count; the answer whatever it was. ``check`` looks
        into an answer of an ``ok`` status: a message from it makes the request a failure."""
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        extra = dict(headers or {})
        # Signature version 2 signs the card session and the key: the signer returns them.
        signed = ta.signed_headers(
            self.terminal.secret,
            self.terminal.terminal_id,
            method,
            path,
            body,
            timestamp=int(time.time()),
            nonce=secrets.token_urlsafe(16),
            card_session=extra.pop(ta.HEADER_CARD_SESSION, None),
            idempotency_key=extra.pop(ta.HEADER_IDEMPOTENCY_KEY, None),
        )
        if payload is not None:
            signed["Content-Type"] = "application/json"
        signed.update(extra)
        with self.session.request(
            method, path, name=name, data=body or None, headers=signed, catch_response=True
        ) as response:
            answer = _parse(response)
            if refusal is not None:
                if answer.code == refusal:
                    response.success()
                else:
                    response.failure(f"expected {refusal}, got {answer.describe()}")
            elif answer.status in ok:
                problem = check(answer) if check is not None else None
                if problem is None:
                    response.success()
                else:
                    response.failure(f"HTTP {answer.status}: {problem}")
            else:
                response.failure(answer.describe())
        return answer
