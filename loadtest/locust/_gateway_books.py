"""The gateway's side of the books check, read through its public, signed API.

For each institution the run touched, signed as that institution's first demo terminal:

- ``GET /v1/settlements?date=`` and ``GET /v1/crossprov/settlements?date=``, every page
  (``next_cursor``), for every Beijing day the run spanned;
- ``POST /v1/reconciliation/totals`` (3201) for each statement :func:`_books.compare` made:
  the gateway answers its own figures beside ours and ``stmt_rslt`` (it also records the run,
  so a mismatch shows on the ops page as any institution's would).

These requests go over :mod:`http.client` (cooperative under Locust's gevent), not through a
Locust user, so they do not appear in the run's statistics. Busy answers (429, 503) and
broken connections are retried a few times; anything else ends the check with
:class:`BooksUnreadable`, which fails the run: books that cannot be read are not books that
agree.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import json
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from loadtest.locust import _books as books
from loadtest.locust._world import institution_index, institution_terminal
from sscard import terminal_auth as ta

__all__ = ["BooksUnreadable", "GatewayBooks", "check_books", "run_days"]

ATTEMPTS: Final = 5
BACKOFF_S: Final = 0.2
MAX_BACKOFF_S: Final = 5.0
TIMEOUT_S: Final = 30.0
#: Pages of one listing read at most (200 settlements a page: 2 million a day).
MAX_PAGES: Final = 10_000


class BooksUnreadable(Exception):
    """The gateway's books could not be read; the message says what failed."""


def run_days(cutoff: dt.datetime, now: dt.datetime) -> list[dt.date]:
    """Every Beijing day from the run's start to ``now`` (a run may cross midnight)."""
    first = cutoff.astimezone(books.BEIJING).date()
    last = now.astimezone(books.BEIJING).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


class GatewayBooks:
    """Signed reads of one gateway's books, as the demo institutions' terminals."""

    def __init__(self, base_url: str, seed: str, *, timeout_s: float = TIMEOUT_S) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self.seed = seed
        self.timeout_s = timeout_s
        self.requests = 0
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = kind(self._host, self._port, timeout=self.timeout_s)
        return self._connection

    def _send(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = self._connect()
        try:
            connection.request(method, path, body=body or None, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def request(
        self, method: str, path: str, institution: str, payload: Any = None
    ) -> dict[str, Any]:
        """A signed request as the institution's terminal 0; the JSON answer of a 200."""
        terminal = institution_terminal(self.seed, institution_index(institution))
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        full_path = self._prefix + path
        last = ""
        for attempt in range(ATTEMPTS):
            headers = ta.signed_headers(
                terminal.secret,
                terminal.terminal_id,
                method,
                full_path,
                body,
                timestamp=int(time.time()),
                nonce=secrets.token_urlsafe(16),
            )
            if payload is not None:
                headers["Content-Type"] = "application/json"
            self.requests += 1
            try:
                status, answer_headers, data = self._send(method, full_path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(min(MAX_BACKOFF_S, BACKOFF_S * 2**attempt))
                continue
            if status == 200:
                try:
                    parsed = json.loads(data)
                except ValueError:
                    raise BooksUnreadable(f"{method} {path}: the answer is not JSON") from None
                if not isinstance(parsed, dict):
                    raise BooksUnreadable(f"{method} {path}: the answer is not an object")
                return parsed
            last = f"HTTP {status} {_code(data)}"
            if status not in (429, 503):
                break
            retry_after = answer_headers.get("Retry-After", "")
            wait = float(retry_after) if retry_after.isdigit() else BACKOFF_S * 2**attempt
            time.sleep(min(MAX_BACKOFF_S, wait))
        raise BooksUnreadable(f"{method} {path} as {terminal.terminal_id}: {last}")

    def clock(self) -> dt.datetime:
        """The gateway's clock (its ``Date`` header, to the second, rounded down)."""
        self.requests += 1
        try:
            _, headers, _ = self._send("GET", self._prefix + "/readyz", b"", {})
        except (OSError, http.client.HTTPException) as exc:
            raise BooksUnreadable(f"GET /readyz: {type(exc).__name__}: {exc}") from None
        date = headers.get("Date")
        if not date:
            raise BooksUnreadable("the gateway's answer carries no Date header")
        return email.utils.parsedate_to_datetime(date).astimezone(dt.UTC)

    def _pages(self, path: str, institution: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = self.request(
                "GET", path if cursor is None else f"{path}&cursor={cursor}", institution
            )
            yield page
            cursor = page.get("next_cursor")
            if not cursor:
                return
            if not str(cursor).isalnum():
                raise BooksUnreadable(f"GET {path}: a next_cursor that is not a cursor")
        raise BooksUnreadable(f"GET {path}: more than {MAX_PAGES} pages")

    def rows(self, institution: str, day: dt.date) -> tuple[list[books.GatewayRow], int]:
        """Every settlement of one institution's day, local and through the hub, and the
        number of pages read."""
        out: list[books.GatewayRow] = []
        pages = 0
        try:
            for page in self._pages(f"/v1/settlements?date={day.isoformat()}", institution):
                pages += 1
                out.extend(books.GatewayRow.local(item) for item in page.get("items", []))
            path = f"/v1/crossprov/settlements?date={day.isoformat()}"
            for page in self._pages(path, institution):
                pages += 1
                for item in page.get("items", []):
                    row = books.GatewayRow.remote(item)
                    if row is not None:
                        out.append(row)
        except (ValueError, TypeError) as exc:
            raise BooksUnreadable(
                f"{institution} {day}: a listing item is malformed: {exc}"
            ) from None
        return out, pages

    def totals(self, key: books.StatementKey, expected: books.Figures) -> tuple[str, books.Figures]:
        """3201 for one statement: (``stmt_rslt``, the gateway's figures)."""
        institution, day, clr_type = key
        answer = self.request(
            "POST",
            "/v1/reconciliation/totals",
            institution,
            {"clr_type": clr_type, "stmt_date": day.isoformat(), **expected.statement()},
        )
        try:
            return str(answer["stmt_rslt"]), books.Figures.of(answer["gateway"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BooksUnreadable(
                f"3201 {institution} {day} {clr_type}: malformed: {exc}"
            ) from None


def _code(data: bytes) -> str:
    try:
        parsed = json.loads(data)
    except ValueError:
        return "(not JSON)"
    return str(parsed.get("code", "")) if isinstance(parsed, dict) else ""


def check_books(
    tally: books.Tally,
    gateway: GatewayBooks,
    cutoff: dt.datetime,
    now: dt.datetime,
    *,
    institutions: Iterable[str] | None = None,
) -> books.BooksReport:
    """The whole check: read the listings, compare, send the 3201 statements, judge."""
    rows: list[books.GatewayRow] = []
    pages = 0
    places = sorted(tally.institutions() if institutions is None else institutions)
    try:
        for institution in places:
            for day in run_days(cutoff, now):
                found, read = gateway.rows(institution, day)
                rows.extend(found)
                pages += read
        comparison = books.compare(tally, rows, cutoff)
        answers = {
            key: gateway.totals(key, figures) for key, figures in comparison.statements.items()
        }
    except BooksUnreadable as exc:
        comparison = books.Comparison()
        comparison.problem(f"the gateway's books could not be read: {exc}")
        return books.summarise(tally, comparison, matched=0, pages=pages)
    finally:
        gateway.close()
    matched = books.judge_totals(comparison, answers)
    return books.summarise(tally, comparison, matched=matched, pages=pages)
