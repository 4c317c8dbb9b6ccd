"""Reading the gateway's books: signed as the institution's own terminal, every page followed,
busy answers retried, and anything unreadable failing the check rather than passing it. (The
real gateway is read in tests/integration/test_locust_suite.py.)"""

from __future__ import annotations

import datetime as dt
import email.message
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from locust_testkit import SEED, settlement

from loadtest.locust import _gateway_books as gb
from loadtest.locust._books import Seen, Tally
from sscard import terminal_auth as ta

CUTOFF = dt.datetime(2026, 12, 7, 0, 30, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 7, 1, 30, tzinfo=dt.UTC)
H1 = "H31000000001"

Handler = Callable[
    [str, str, dict[str, Any] | None], tuple[int, Any] | tuple[int, Any, dict[str, str]]
]


class FakeGateway(gb.GatewayBooks):
    """GatewayBooks whose wire is a function; checks every request's signature."""

    def __init__(self, handler: Handler) -> None:
        super().__init__("http://gateway.test:8080/base", SEED)
        self.handler = handler
        self.log: list[tuple[str, str, str]] = []

    def _send(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Any:
        terminal_id = headers.get(ta.HEADER_TERMINAL_ID, "")
        if terminal_id:
            ta.verify_signed_headers(
                ta.demo_terminal_secret(SEED, terminal_id), method, path, body, headers
            )
        assert path.startswith("/base/")
        self.log.append((method, path, terminal_id))
        reply = self.handler(method, path.removeprefix("/base"), json.loads(body) if body else None)
        status, answer = reply[0], reply[1]
        message = email.message.Message()
        for name, value in (reply[2] if len(reply) == 3 else {}).items():  # type: ignore[misc]
            message[name] = value
        return status, message, json.dumps(answer).encode()


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gb.time, "sleep", lambda s: None)


def _listing(pages: dict[str, list[dict[str, Any]]]) -> Handler:
    """Local listing in pages keyed by cursor ("" first); remote listing empty; 3201 echoes
    the statement as the gateway's figures."""

    def handler(method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        url = urlsplit(path)
        cursor = parse_qs(url.query).get("cursor", [""])[0]
        if url.path == "/v1/settlements":
            keys = sorted(pages)
            nxt = keys[keys.index(cursor) + 1] if keys.index(cursor) + 1 < len(keys) else None
            return 200, {"items": pages[cursor], "next_cursor": nxt}
        if url.path == "/v1/crossprov/settlements":
            return 200, {"items": [], "next_cursor": None}
        assert url.path == "/v1/reconciliation/totals"
        assert body is not None
        figures = {
            "count": body["fixmedins_setl_cnt"],
            **{
                k: body[k] for k in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
            },
        }
        return 200, {"stmt_rslt": "0", "gateway": figures, "institution": figures}

    return handler


def test_every_page_is_read_as_the_institutions_own_terminal_and_3201_is_sent() -> None:
    pages = {"": [settlement("S1")], "7": [settlement("S2")], "9": []}
    gateway = FakeGateway(_listing(pages))
    tally = Tally()
    for setl_id in ("S1", "S2"):
        tally.settle(Seen.from_answer(settlement(setl_id), "local"))
    report = gb.check_books(tally, gateway, CUTOFF, NOW)
    assert report.ok, report.problems
    assert report.figures["listing_pages"] == 4  # three local pages and one remote
    paths = [path for _, path, _ in gateway.log]
    assert "/base/v1/settlements?date=2026-12-07&cursor=7" in paths
    assert {terminal for _, _, terminal in gateway.log} == {"H31000000001-01"}
    assert gateway.log[-1][:2] == ("POST", "/base/v1/reconciliation/totals")


def test_a_gateway_that_disagrees_fails_the_check() -> None:
    gateway = FakeGateway(_listing({"": [settlement("S1"), settlement("S2")]}))
    tally = Tally()
    tally.settle(Seen.from_answer(settlement("S1"), "local"))
    report = gb.check_books(tally, gateway, CUTOFF, NOW)
    assert not report.ok
    assert report.figures["doubled"] == 1


def test_busy_answers_are_retried_then_read() -> None:
    calls = {"n": 0}
    inner = _listing({"": []})

    def handler(method: str, path: str, body: dict[str, Any] | None) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            return 429, {"code": "RATE_LIMITED"}, {"Retry-After": "1"}
        return inner(method, path, body)

    rows, pages = FakeGateway(handler).rows(H1, dt.date(2026, 12, 7))
    assert rows == []
    assert pages == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ((403, {"code": "INSTITUTION_KIND_NOT_ALLOWED"}), "HTTP 403 INSTITUTION_KIND_NOT_ALLOWED"),
        ((503, {"code": "DB_BUSY"}), "HTTP 503 DB_BUSY"),
        ((200, {"items": [{"setl_id": "S1"}], "next_cursor": None}), "malformed"),
        ((200, {"items": [], "next_cursor": "../x"}), "not a cursor"),
        ((200, ["not", "an", "object"]), "not an object"),
    ],
)
def test_books_that_cannot_be_read_fail_the_check(reply: Any, message: str) -> None:
    tally = Tally()
    tally.settle(Seen.from_answer(settlement("S1"), "local"))
    report = gb.check_books(tally, FakeGateway(lambda m, p, b: reply), CUTOFF, NOW)
    assert not report.ok
    assert "could not be read" in report.problems[0]
    assert message in report.problems[0]


def test_a_broken_connection_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = FakeGateway(lambda m, p, b: (200, {}))

    def broken(*args: Any) -> Any:
        raise ConnectionResetError("reset by peer")

    monkeypatch.setattr(gateway, "_send", broken)
    with pytest.raises(gb.BooksUnreadable, match="ConnectionResetError"):
        gateway.request("GET", "/v1/settlements?date=2026-12-07", H1)


def test_a_run_across_midnight_reads_both_days() -> None:
    start = dt.datetime(2026, 12, 7, 15, 50, tzinfo=dt.UTC)  # 23:50 in Beijing
    assert gb.run_days(start, start + dt.timedelta(minutes=20)) == [
        dt.date(2026, 12, 7),
        dt.date(2026, 12, 8),
    ]
    assert gb.run_days(start, start) == [dt.date(2026, 12, 7)]


def test_the_gateway_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="not an http"):
        gb.GatewayBooks("ftp://gateway", SEED)
