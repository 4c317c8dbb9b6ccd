"""A stand-in for Locust's FastHttpSession (no locust, no gevent in the unit tests): it
records what is sent, answers from a script, and records how each request was judged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sscard import demo as sd
from sscard import terminal_auth as ta

SEED = sd.DEFAULT_DEMO_SEED


@dataclass
class Sent:
    method: str
    url: str
    name: str | None
    body: bytes
    headers: dict[str, str]
    outcome: str = ""  # "success" or the failure message

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def signature_ok(self, seed: str = SEED) -> bool:
        terminal_id = self.headers[ta.HEADER_TERMINAL_ID]
        try:
            version = ta.verify_signed_headers(
                ta.demo_terminal_secret(seed, terminal_id),
                self.method,
                self.url,
                self.body,
                self.headers,
            )
        except ta.SignatureMismatch:
            return False
        return version == ta.SIGNATURE_VERSION


class FakeResponse:
    def __init__(self, status: int, body: Any, headers: dict[str, str], sent: Sent) -> None:
        self.status_code = status
        self.content = (
            b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        self.headers = headers
        self.error = ConnectionRefusedError("refused") if status == 0 else None
        self._sent = sent

    def success(self) -> None:
        self._sent.outcome = "success"

    def failure(self, exc: Any) -> None:
        self._sent.outcome = str(exc)

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Script = Callable[[Sent], Reply]


@dataclass
class FakeSession:
    """Answers each request with ``script(sent)``: (status, JSON body[, headers])."""

    script: Script
    sent: list[Sent] = field(default_factory=list)

    def request(
        self,
        method: str,
        url: str,
        *,
        name: str | None = None,
        data: Any = None,
        catch_response: bool = False,
        headers: dict[str, str] | None = None,
    ) -> FakeResponse:
        assert catch_response
        sent = Sent(method, url, name, data or b"", dict(headers or {}))
        self.sent.append(sent)
        reply = self.script(sent)
        status, body = reply[0], reply[1]
        extra = reply[2] if len(reply) == 3 else {}  # type: ignore[misc]
        return FakeResponse(status, body, extra, sent)

    def named(self, name: str) -> list[Sent]:
        return [s for s in self.sent if s.name == name]


def settlement(
    setl_id: str = "S1",
    *,
    institution: str = "H31000000001",
    visit_type: str = "outpatient",
    setl_time: str = "2026-12-07T01:00:00Z",
    amounts: tuple[int, int, int, int] = (8_500, 0, 7_900, 600),
    status: str = "settled",
    route: str | None = None,
) -> dict[str, Any]:
    """A SettlementOut-like answer (the fields the suite reads)."""
    medfee, fund, acct, cash = amounts
    body: dict[str, Any] = {
        "setl_id": setl_id,
        "fixmedins_code": institution,
        "visit_type": visit_type,
        "setl_time": setl_time,
        "status": status,
        "medfee_sumamt": medfee,
        "fund_pay_sumamt": fund,
        "acct_pay": acct,
        "psn_cash_pay": cash,
    }
    if route is not None:
        body["route"] = route
    return body
