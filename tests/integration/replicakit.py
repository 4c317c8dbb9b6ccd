"""Gateway replicas on one PostgreSQL, and terminals that drive them, for test_replicas.py and
test_failover.py.

A :class:`Replica` is one ``python -m gateway serve`` with a port and a data directory of its
own, as if on a host of its own; replicas share nothing but the database URL (and the hub's).
The first replica to start migrates and loads the demo world, the others wait on the
database's lock and find it done (gateway.migrate, gateway.demo).

A :class:`Terminal` signs requests as a demo terminal against any base URL (one replica, or
haproxy in front of them). :func:`settle_until_confirmed` is what a well-behaved terminal
does with a settlement: send it, and on anything that may be transient (503, haproxy's
502/504, a broken connection, IDEMPOTENCY_KEY_IN_USE) send it again with the SAME
Idempotency-Key until it is confirmed (201); every answer is recorded with its time in a
:class:`Tally`, so a test can count the 503s and see when service came back.
:func:`check_books` then holds the database to what the terminals saw.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime as dt
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from dbkit import BEIJING
from gateway.settlement_api.demo import demo_balances_fen
from sscard import demo as sd
from sscard.crypto import sm2_sign
from sscard.layout import card_auth_message
from sscard.terminal_auth import demo_institution_code, demo_terminal, signed_headers

__all__ = [
    "SEED",
    "Answer",
    "Replica",
    "Tally",
    "Terminal",
    "card_session",
    "check_books",
    "local_holders",
    "reconcile",
    "replicas",
    "settle_until_confirmed",
    "today",
    "visit",
]

SEED = "itest-replicas-seed"
START_TIMEOUT_S = 120.0  # the first replica loads the demo world into PostgreSQL
# The last demo hospital's terminal: its institution is named an ops institution below.
OPS_TERMINAL = 798
# Answers a terminal sends again with the same key (anything else ends the attempt).
_RETRY_CODES = frozenset({"DB_UNAVAILABLE", "OVERLOADED", "IDEMPOTENCY_KEY_IN_USE"})


def today() -> dt.date:
    return dt.datetime.now(BEIJING).date()


@dataclass
class Replica:
    name: str
    port: int
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"

    def spawn(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gateway", "serve", "--workers", str(self.workers)),
                    *("--port", str(self.port), "--data-dir", str(self.data_dir)),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group: kill() reaches the workers
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"replica {self.name} exited with {self.process.returncode}:\n"
                    f"{self.log()[-5000:]}"
                )
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                try:
                    connection.request("GET", "/readyz")
                    if connection.getresponse().status == 200:
                        return
                finally:
                    connection.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(
            f"replica {self.name} not ready within {timeout_s} s:\n{self.log()[-5000:]}"
        )

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def worker_pids(self) -> set[int]:
        """The supervisor's children (its workers), from /proc."""
        assert self.process is not None
        parent = self.process.pid
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
                if int(stat.read_text().rpartition(")")[2].split()[1]) == parent:
                    children.add(int(stat.parent.name))
        return children

    def kill(self) -> None:
        """SIGKILL the whole replica (supervisor and workers): no shutdown at all."""
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


@contextlib.contextmanager
def replicas(
    tmp_path: Path,
    db_url: str,
    *,
    names: Sequence[str] = ("a", "b"),
    hub_url: str = "",
    settings: Mapping[str, str] | None = None,
) -> Iterator[list[Replica]]:
    """Start one replica per name, all at once, on ``db_url``; SIGKILL them afterwards."""
    from pgcluster import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update(
        {
            "GATEWAY_DB_URL": db_url,
            "GATEWAY_DEMO_WORLD": "on",  # DEMO ONLY: the demo terminals and cards, on PostgreSQL
            "GATEWAY_DEMO_SEED": SEED,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_RECONCILIATION_OPS_INSTITUTIONS": demo_institution_code(OPS_TERMINAL // 2),
            # A cross-province settle needs a hub; without one each replica would start a
            # simulator of its own, and the replicas would not share the hub's state.
            "GATEWAY_HUB_URL": hub_url or "http://127.0.0.1:9",
        }
    )
    env.update({f"GATEWAY_{name.upper()}": value for name, value in (settings or {}).items()})
    started = [
        Replica(name, free_port(), tmp_path / f"replica-{name}", tmp_path / f"{name}.log", env)
        for name in names
    ]
    try:
        for replica in started:
            replica.spawn()
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.kill()


# --- terminals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def code(self) -> str | None:
        """The gateway's error code; None for a success or an answer not from the gateway
        (haproxy's own 502/503/504 pages)."""
        if isinstance(self.body, dict):
            code = self.body.get("code")
            return code if isinstance(code, str) else None
        return None


class Terminal:
    """Signed requests as demo terminal ``n`` to ``base_url`` (aiohttp, one session per test)."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, n: int) -> None:
        self.http = http
        self.base_url = base_url
        self.n = n
        self.terminal_id, self.secret = demo_terminal(SEED, n)
        self.institution = demo_institution_code(n // 2)

    def at(self, base_url: str) -> Terminal:
        """The same terminal, talking to another base URL (another replica)."""
        return Terminal(self.http, base_url, self.n)

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 30.0,
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
            self.base_url + path,
            data=body,
            headers={**signed, **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Answer(response.status, parsed, dict(response.headers))


_PKI: dict[str, sd.DemoPki] = {}


def local_holders(count: int, *, start: int = 0) -> list[int]:
    """``count`` Shanghai-insured demo holders whose third-generation card is active
    (``h % 10`` in 0-4 or 9, sscard.demo), from ``start`` on, far below the cross-province
    range (gateway.crossprov.demo.REMOTE_HOLDERS)."""
    holders = [h for h in range(start, start + 3 * count) if h % 10 in (0, 1, 2, 3, 4, 9)]
    assert len(holders) >= count
    assert holders[count - 1] < 19_000
    return holders[:count]


async def challenge(terminal: Terminal, h: int) -> Answer:
    card = sd.demo_card(SEED, 2 * h)
    return await terminal.request(
        "POST", "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
    )


def card_answer(terminal: Terminal, h: int, granted: Mapping[str, Any]) -> dict[str, str]:
    """What holder ``h``'s third-generation card (demo card 2h) answers to ``granted``."""
    m = 2 * h
    card = sd.demo_card(SEED, m)
    pki = _PKI.setdefault(SEED, sd.demo_pki(SEED))
    message = card_auth_message(
        bytes.fromhex(granted["challenge"]), bytes.fromhex(card.card_sn), terminal.terminal_id
    )
    return {
        "challenge_id": granted["challenge_id"],
        "card_sn": card.card_sn,
        "signature": sm2_sign(sd.demo_card_key(SEED, m), message).hex(),
        "certificate": base64.b64encode(sd.demo_card_certificate(SEED, m, pki).der).decode(),
    }


async def card_session(terminal: Terminal, h: int) -> str:
    """Full SM2 card authentication of holder ``h``'s card; the card session token."""
    granted = await challenge(terminal, h)
    assert granted.status == 200, granted
    answer = await terminal.request(
        "POST", "/v1/card-auth/response", card_answer(terminal, h, granted.body)
    )
    assert answer.status == 200, answer
    token: str = answer.body["card_session"]
    return token


def visit(amount_fen: int) -> dict[str, Any]:
    """An outpatient visit of one catalogue line worth ``amount_fen``."""
    return {
        "visit_type": "outpatient",
        "visit_date": today().isoformat(),
        "lines": [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": amount_fen}],
    }


# --- settling under failures -----------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One answer a terminal got (status 0: no answer, the connection broke)."""

    sent_at: float  # time.monotonic()
    answered_at: float
    status: int
    code: str | None
    retry_after: str | None = None


@dataclass
class Tally:
    """What the terminals saw: confirmed settlements by Idempotency-Key, every attempt, and
    the answers no terminal should ever get."""

    confirmed: dict[str, dict[str, Any]] = field(default_factory=dict)
    institution_of: dict[str, str] = field(default_factory=dict)
    terminal_of: dict[str, int] = field(default_factory=dict)  # institution -> a terminal n
    attempts: list[Attempt] = field(default_factory=list)
    unexpected: list[Answer] = field(default_factory=list)

    def count(self, status: int, code: str | None = None) -> int:
        return sum(
            1 for a in self.attempts if a.status == status and (code is None or a.code == code)
        )

    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status != 201]

    def by_kind(self) -> dict[str, int]:
        """Attempts by status and code, e.g. {"201": 812, "503 DB_UNAVAILABLE": 37}."""
        kinds = collections.Counter(
            f"{a.status} {a.code}" if a.code else str(a.status) for a in self.attempts
        )
        return dict(sorted(kinds.items()))


async def settle_until_confirmed(
    terminal: Terminal,
    token: str,
    key: str,
    body: Mapping[str, Any],
    tally: Tally,
    *,
    deadline_s: float,
    retry_delay_s: float = 0.1,
) -> bool:
    """Send the settlement until it is confirmed (True) or the deadline passes (False).
    A retry waits ``retry_delay_s``: short on purpose, so the tally sees an outage with that
    resolution (a real terminal honours Retry-After and sends fewer)."""
    headers = {"X-Card-Session": token, "Idempotency-Key": key}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        sent_at = time.monotonic()
        try:
            answer = await terminal.request("POST", "/v1/settlements", body, headers)
        except (aiohttp.ClientError, TimeoutError, OSError):
            tally.attempts.append(Attempt(sent_at, time.monotonic(), 0, None))
            await asyncio.sleep(retry_delay_s)
            continue
        tally.attempts.append(
            Attempt(
                sent_at,
                time.monotonic(),
                answer.status,
                answer.code,
                answer.headers.get("Retry-After"),
            )
        )
        if answer.status == 201:
            tally.confirmed[key] = answer.body
            tally.institution_of[key] = terminal.institution
            tally.terminal_of[terminal.institution] = terminal.n
            return True
        # haproxy's own 502/503/504 (no gateway code): the replica died or none is up.
        transient = answer.code in _RETRY_CODES or (
            answer.status in (502, 503, 504) and answer.code is None
        )
        if not transient:
            tally.unexpected.append(answer)
            return False
        await asyncio.sleep(retry_delay_s)
    tally.unexpected.append(Answer(0, {"code": "DEADLINE", "key": key}, {}))
    return False


# --- holding the database to what the terminals saw ------------------------------------------


def _fetch(connection: psycopg.Connection[Any], sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return connection.execute(sql, params).fetchall()


def check_books(connection: psycopg.Connection[Any], tally: Tally, keys: Iterable[str]) -> None:
    """Every key was confirmed; every confirmed settlement is in the database exactly once,
    with its one ledger transaction; nothing else was settled at those institutions; each
    ledger transaction, and so the ledger, sums to zero; each person's personal account
    was debited by exactly the confirmed settlements' ``acct_pay``."""
    keys = list(keys)
    missing = [key for key in keys if key not in tally.confirmed]
    assert not missing, f"{len(missing)} settlements never confirmed, e.g. {missing[:5]}"
    seen = collections.Counter(body["setl_id"] for body in tally.confirmed.values())
    assert len(seen) == len(keys), "two keys were answered with one settlement"
    institutions = sorted(set(tally.institution_of.values()))
    stored = collections.Counter(
        setl_id
        for (setl_id,) in _fetch(
            connection,
            "SELECT setl_id FROM settlements WHERE fixmedins_code = ANY(%s) AND status = 'settled'",
            institutions,
        )
    )
    assert stored == seen, (
        f"database vs terminals: missing {sorted(set(seen) - set(stored))[:5]}, "
        f"extra {sorted(set(stored) - set(seen))[:5]}, "
        f"twice {[s for s, n in stored.items() if n > 1][:5]}"
    )
    txns = collections.Counter(
        txn_id
        for (txn_id,) in _fetch(
            connection,
            "SELECT txn_id FROM ledger_transactions WHERE txn_id = ANY(%s)",
            [f"settle:{setl_id}" for setl_id in seen],
        )
    )
    assert len(txns) == len(seen)
    assert set(txns.values()) == {1}
    unbalanced = _fetch(
        connection,
        "SELECT txn_id FROM ledger_entries GROUP BY txn_id "
        "HAVING SUM(CASE side WHEN 'debit' THEN amount_fen ELSE -amount_fen END) <> 0",
    )
    assert unbalanced == [], unbalanced[:5]
    ((total,),) = _fetch(
        connection,
        "SELECT COALESCE(SUM(CASE side WHEN 'debit' THEN amount_fen ELSE -amount_fen END), 0) "
        "FROM ledger_entries",
    )
    assert total == 0
    # Each person's account gave exactly what the confirmed settlements say it paid: no
    # settlement without its debit, no debit without its settlement.
    paid: collections.Counter[str] = collections.Counter()
    for body in tally.confirmed.values():
        paid[body["psn_no"]] += body["acct_pay"]
    accounts = _fetch(
        connection,
        "SELECT p.psn_no, p.holder_id, a.current_year_fen + a.past_years_fen "
        "FROM insured_persons p JOIN personal_accounts a ON a.person_id = p.id "
        "WHERE p.psn_no = ANY(%s)",
        sorted(paid),
    )
    assert len(accounts) == len(paid)
    for psn_no, holder_id, balance_fen in accounts:
        assert sum(demo_balances_fen(SEED, holder_id)) - balance_fen == paid[psn_no], psn_no


async def reconcile(http: aiohttp.ClientSession, base_url: str, tally: Tally) -> None:
    """Each institution reconciles its day (3201 totals, outpatient) with the figures its own
    terminals were confirmed: the gateway must answer "0" (match) for every one."""
    figures: dict[str, list[int]] = {}
    for key, body in tally.confirmed.items():
        sums = figures.setdefault(tally.institution_of[key], [0, 0, 0, 0, 0])
        sums[0] += 1
        sums[1] += body["medfee_sumamt"]
        sums[2] += body["fund_pay_sumamt"]
        sums[3] += body["acct_pay"]
        sums[4] += body["psn_cash_pay"]
    for institution, (count, medfee, fund, acct, cash) in sorted(figures.items()):
        answer = await Terminal(http, base_url, tally.terminal_of[institution]).request(
            "POST",
            "/v1/reconciliation/totals",
            {
                "clr_type": "11",
                "stmt_date": today().isoformat(),
                "fixmedins_setl_cnt": count,
                "medfee_sumamt": medfee,
                "fund_pay_sumamt": fund,
                "acct_pay": acct,
                "psn_cash_pay": cash,
            },
        )
        assert answer.status == 200, answer
        assert answer.body["stmt_rslt"] == "0", answer.body
