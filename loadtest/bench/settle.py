"""Local settlements per second against the real server, beside an aiohttp "hello".

``python -m loadtest.bench settle [--json] [--seconds S] [--workers N] [--concurrency 16,32]
[--db postgresql+psycopg://@127.0.0.1:5432/test] [--ledger-entries 10000,1000000]
[--steady-rate 100] [--setting NAME=VALUE]``

1. starts ``python -m gateway serve --workers N`` on a free port, card sessions valid for an
   hour, with the demo world and its insured persons: on embedded SQLite (synchronous=FULL) in
   a temporary data dir, or with ``--db`` on PostgreSQL, in a schema of its own
   (``bench_settle_<random>``, created here and dropped at the end: nothing shared is
   touched);
2. once every worker answers, reads ``--cards`` demo cards once each at a hospital terminal of
   their own (full SM2 card authentication), keeping the card sessions;
3. (a) closed loop at each concurrency: one *settlement* is a pre-settle followed by a settle
   of the same outpatient visit (2 lines) with a fresh Idempotency-Key, back to back for S
   seconds; the best rate is ``settle_per_s``, with the server's CPU per settlement
   (``server_cpu_ms_per_settlement``: user + system time of the gateway's processes / count,
   which machine noise does not move the way it moves rates) and the generator's
   (``client_cpu_ms_per_settlement``);
4. (b) open loop at ``--rate`` (500/s) settlements: latency from the scheduled start (no
   coordinated omission) → ``settle_p99_ms_at_500``;
5. (c) with ``--ledger-entries``: for each size in turn, the ledger is first filled up to that
   many historical entries (balanced 4-entry transactions over 20,000 persons' and 400
   institutions' accounts, inserted in batches by executemany, or COPY on PostgreSQL, then
   ANALYZE and a checkpoint), then settles alone run open loop at ``--steady-rate`` (100/s):
   ``ledger_growth`` lists settle p50/p99 and server CPU per settle per size, so a slope
   shows at once;
6. (d) the hello yardstick of :mod:`loadtest.bench.auth` with the same workers and client.

With ``--door fsi`` the cards are read at pharmacy terminals, each till also signs in on the
national door, and (a) measures both doors back to back at each concurrency on the same
pharmacy purchase (:mod:`loadtest.bench.fsi_door`: ``ratio_fsi_to_v1``, both sides' figures);
(b) and (c) are left out.

The load generator runs in this process and shares the cores with the server, so it is kept
cheap the way the auth bench's is, without cutting corners: requests go out on
:mod:`loadtest.bench.lean_http` (keep-alive HTTP/1.1, one connection pool per phase, one
``send`` per request), on uvloop where it is installed (``client_loop``). Every request is an
ordinary HTTP/1.1 request signed afresh as its terminal (HMAC-SM3 over a new timestamp and
nonce, :mod:`sscard.terminal_auth`) with its ``Content-Type``, ``X-Card-Session`` and, for a
settle, a new ``Idempotency-Key``; only what no request changes (the visit's JSON body, the
request line and the fixed headers of each till) is encoded once per run. The generator's own
CPU per settlement is reported (``client_cpu_ms_per_settlement``) beside the server's; a
refusal is counted by the gateway's error code (``PRE_`` in front for a pre-settle), a
transport failure as ``CLIENT_<kind>``.

Each settle is one write transaction (request nonce, key, engine, settlement, balances,
ledger, stored answer), group-committed with its neighbours on SQLite, run concurrently with
other persons' settles on PostgreSQL; pre-settle is a read.
Accounts run dry during the run, after which settlements are paid in cash, which is still a
full settlement. Settlements go through the public HTTP API only; the ledger preload (5) is
test-data setup and writes the tables directly with SQLAlchemy Core, not the project's code.
On PostgreSQL the server CPU excludes PostgreSQL's own backends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loadtest.bench import auth, fsi_door
from loadtest.bench.cards import BenchCard, make_cards
from loadtest.bench.db_server import DatabaseCpu, named
from loadtest.bench.lean_http import LeanHttpClient, LeanHttpError
from sscard import demo as sd
from sscard import terminal_auth as ta
from sscard.crypto import SM2PrivateKey, sm2_sign
from sscard.layout import card_auth_message

__all__ = ["Generator", "SignedVisitPost", "Till", "add_arguments", "run", "visit_body"]

SETTLE_PATH: Final = "/v1/settlements"
PRE_SETTLE_PATH: Final = "/v1/settlements/pre-settle"
HOSPITAL_TERMINALS: Final = 800  # demo terminals 0..799 belong to the 400 hospitals
BEIJING: Final = dt.timezone(dt.timedelta(hours=8))
LINES: Final = (
    {"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_500},
    {"code": "DEMO-B-001", "quantity": 2, "unit_price_fen": 3_000},
)
MAX_OPEN_INFLIGHT: Final = 4000
OPEN_DRAIN_S: Final = 20.0
APPLICATION_NAME_PREFIX: Final = "bench_settle_"  # its gateway connections, for their CPU


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    parser.add_argument("--concurrency", default="16,32,64", help="closed-loop concurrencies")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop offered settle/s")
    parser.add_argument("--cards", type=int, default=100, help="demo cards (one terminal each)")
    parser.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED, help="demo seed")
    parser.add_argument(
        "--db",
        default="",
        help="a postgresql+psycopg:// URL: run the gateway there, in a schema of its own "
        "(default: embedded SQLite)",
    )
    parser.add_argument(
        "--ledger-entries",
        default="",
        help="comma-separated ledger sizes (e.g. 10000,1000000): fill the ledger up to each "
        "and measure settle latency at --steady-rate",
    )
    parser.add_argument(
        "--steady-rate", type=float, default=100.0, help="settles/s for the ledger-size phases"
    )
    parser.add_argument(
        "--door",
        choices=("v1", "fsi"),
        default="v1",
        help="fsi: the national door's 2101+2102 beside /v1's pre-settle+settle of the same "
        "pharmacy purchase, same cards and terminals, in this run (ratio_fsi_to_v1; "
        "loadtest.bench.fsi_door); the open-loop and ledger phases are left out",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gateway setting for the server under test, as GATEWAY_<NAME> (repeatable; "
        "e.g. --setting db_threads=2): to compare tunings with the same bench",
    )


@dataclass(frozen=True)
class Till:
    """A card read at a terminal: the terminal signs every request, the card session rides
    along."""

    terminal_id: str
    secret: bytes
    card_session: str


def visit_body(visit_date: str, visit_type: str = "outpatient") -> bytes:
    """The run's visit (2 lines; outpatient, or pharmacy for ``--door fsi``) as the JSON body
    of pre-settle and settle: encoded once per run, the same bytes for every request."""
    visit = {"visit_type": visit_type, "visit_date": visit_date, "lines": list(LINES)}
    return json.dumps(visit, separators=(",", ":")).encode()


class SignedVisitPost:
    """``POST path`` of the run's visit by one till, as the bytes the lean client sends.

    What never changes from one request to the next (request line, ``Host``, ``Content-Type``,
    ``X-Card-Session``, ``X-Terminal-Id``, ``Content-Length``, the body) is encoded once;
    :meth:`build` adds what does: the timestamp, a fresh nonce, the HMAC-SM3 signature over
    them and the body (:func:`sscard.terminal_auth.sign_request_v2`, computed for this request:
    a signature is never reused) and, for a settle, its ``Idempotency-Key``.
    """

    def __init__(self, host: str, path: str, till: Till, body: bytes) -> None:
        ta.check_terminal_id(till.terminal_id)
        if not (till.card_session.isascii() and till.card_session.isprintable()):
            raise ValueError("card session: printable ASCII expected")
        self.path = path
        self._secret = till.secret
        self._terminal_id = till.terminal_id
        self._card_session = till.card_session
        self._body = body
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-Card-Session: {till.card_session}\r\n"
            f"{ta.HEADER_TERMINAL_ID}: {till.terminal_id}\r\nContent-Length: {len(body)}\r\n"
        ).encode("ascii")
        self._tail = b"\r\n" + body

    def build(self, idempotency_key: str | None = None) -> bytes:
        timestamp = int(time.time())
        nonce = secrets.token_urlsafe(16)
        signature = ta.sign_request_v2(
            self._secret,
            "POST",
            self.path,
            timestamp,
            nonce,
            self._body,
            terminal_id=self._terminal_id,
            card_session=self._card_session,
            idempotency_key=idempotency_key,
        )
        fresh = (
            f"{ta.HEADER_TIMESTAMP}: {timestamp}\r\n{ta.HEADER_NONCE}: {nonce}\r\n"
            f"{ta.HEADER_SIGNATURE_VERSION}: {ta.SIGNATURE_VERSION}\r\n"
            f"{ta.HEADER_SIGNATURE}: {signature}\r\n"
        )
        if idempotency_key is not None:
            fresh += f"Idempotency-Key: {idempotency_key}\r\n"
        return self._head + fresh.encode("ascii") + self._tail


def _refusal(status: int, data: bytes) -> str:
    """The error kind of an answer that is not the expected success: the gateway's ``code``."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return f"HTTP_{status}_NOT_JSON"
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return str(code) if code is not None else f"HTTP_{status}"


class Generator:
    """Reads the cards, then sends settlements on :mod:`loadtest.bench.lean_http` (one
    connection pool per phase, as the auth bench)."""

    def __init__(self, host: str, port: int, body: bytes) -> None:
        self.host = host
        self.port = port
        self.body = body
        self.run_id = secrets.token_hex(4)
        self.client: LeanHttpClient | None = None
        self.tills: list[Till] = []
        self._pre_settle: list[SignedVisitPost] = []
        self._settle: list[SignedVisitPost] = []

    @contextlib.asynccontextmanager
    async def connections(self, limit: int) -> AsyncIterator[LeanHttpClient]:
        async with LeanHttpClient(
            self.host, self.port, limit=limit, timeout_s=auth.REQUEST_TIMEOUT_S
        ) as client:
            self.client = client
            try:
                yield client
            finally:
                self.client = None

    def add_till(self, till: Till) -> None:
        host = f"{self.host}:{self.port}"
        self.tills.append(till)
        self._pre_settle.append(SignedVisitPost(host, PRE_SETTLE_PATH, till, self.body))
        self._settle.append(SignedVisitPost(host, SETTLE_PATH, till, self.body))

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        assert self.client is not None
        try:
            return await self.client.send(request)
        except LeanHttpError as exc:
            raise auth.AuthFailed(f"CLIENT_{exc.kind}") from None

    async def post(
        self, path: str, payload: dict[str, Any], terminal: tuple[str, bytes]
    ) -> tuple[int, dict[str, Any]]:
        """A signed request of the setup (card reading, worker check); raises AuthFailed when
        the request fails or the answer is not JSON."""
        assert self.client is not None
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = ta.signed_headers(
            terminal[1],
            terminal[0],
            "POST",
            path,
            body,
            timestamp=int(time.time()),
            nonce=secrets.token_urlsafe(16),
        )
        headers["Content-Type"] = "application/json"
        try:
            status, data = await self.client.request("POST", path, headers, body)
        except LeanHttpError as exc:
            raise auth.AuthFailed(f"CLIENT_{exc.kind}") from None
        try:
            return status, json.loads(data)
        except ValueError:
            raise auth.AuthFailed(f"HTTP_{status}_NOT_JSON") from None

    async def read_card(self, card: BenchCard, terminal: tuple[str, bytes]) -> None:
        status, granted = await self.post(
            auth.CHALLENGE_PATH, {"card_sn": card.card_sn, "generation": 3}, terminal
        )
        if status != 200:
            raise auth.AuthFailed(str(granted.get("code")))
        message = card_auth_message(bytes.fromhex(granted["challenge"]), card.raw_sn, terminal[0])
        signature = sm2_sign(SM2PrivateKey.from_int(card.d), message)
        status, body = await self.post(
            auth.RESPONSE_PATH,
            {
                "challenge_id": granted["challenge_id"],
                "card_sn": card.card_sn,
                "signature": signature.hex(),
                "certificate": card.certificate_b64,
            },
            terminal,
        )
        if status != 200:
            raise auth.AuthFailed(str(body.get("code")))
        self.add_till(Till(terminal[0], terminal[1], body["card_session"]))

    async def settle(self, i: int) -> None:
        """Settle alone (a new Idempotency-Key). Only a refusal's body is parsed."""
        request = self._settle[i % len(self._settle)].build(f"b{self.run_id}-{i}")
        status, data = await self._send(request)
        if status != 201:
            raise auth.AuthFailed(_refusal(status, data))

    async def settlement(self, i: int) -> None:
        """One settlement at the counter: pre-settle (the estimate shown), then settle."""
        status, data = await self._send(self._pre_settle[i % len(self._pre_settle)].build())
        if status != 200:
            raise auth.AuthFailed("PRE_" + _refusal(status, data))
        await self.settle(i)


async def _wait_all_workers(
    gen: Generator, workers: int, terminals: list[tuple[str, bytes]]
) -> None:
    """Until ``workers`` distinct worker pids answered /v1/echo on fresh connections: only then
    is every worker listening, so each phase's keep-alive connections spread over all of them."""
    pids: set[int] = set()
    deadline = time.monotonic() + auth.START_TIMEOUT_S
    attempt = 0
    last = ""
    while len(pids) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(pids)} of {workers} workers answered (last: {last})")
        async with gen.connections(limit=1):
            status, body = await gen.post(
                auth.ECHO_PATH, {"message": "ready?"}, terminals[attempt % len(terminals)]
            )
        attempt += 1
        if status == 200:
            pids.add(int(body["worker_pid"]))
        else:
            last = f"HTTP {status} {body.get('code')}"
            await asyncio.sleep(0.1)


async def _closed_phases(
    gen: Generator,
    concurrencies: list[int],
    seconds: float,
    settlement_from: Callable[[int], Callable[[int], Awaitable[None]]],
    *,
    offset: int,
    server_pid: int,
    db_cpu: DatabaseCpu | None,
) -> tuple[list[auth.Phase], list[tuple[float | None, int | None]]]:
    """Closed loop at each concurrency (after a short warm-up of its own), with the database
    server's CPU seconds and WAL bytes over each measured phase (None without ``--db``).
    Uses 20,000,000 call numbers from ``offset`` per concurrency."""
    phases: list[auth.Phase] = []
    db_used: list[tuple[float | None, int | None]] = []
    for concurrency in concurrencies:
        async with gen.connections(limit=concurrency):
            await auth.closed_loop(settlement_from(offset), concurrency, min(0.3, seconds))
            offset += 10_000_000
            before = db_cpu.read() if db_cpu else None
            lsn_before = db_cpu.wal_lsn() if db_cpu else None
            phase = await auth.closed_loop(
                settlement_from(offset), concurrency, seconds, server_pgid=server_pid
            )
            after = db_cpu.read() if db_cpu else None
            wal = db_cpu.wal_lsn() - lsn_before if db_cpu and lsn_before is not None else None
            offset += 10_000_000
        phases.append(phase)
        db_s = DatabaseCpu.used(before, after) if before is not None and after else None
        db_used.append((db_s, wal))
    return phases, db_used


async def _measure(
    args: argparse.Namespace,
    port: int,
    process: Any,
    log_path: Path,
    result: dict[str, Any],
    *,
    db_url: str,
    db_cpu: DatabaseCpu | None = None,
) -> dict[str, Any]:
    seconds = float(args.seconds)
    concurrencies = auth._concurrencies(args)
    await auth._wait_ready(f"http://127.0.0.1:{port}/readyz", process, log_path)
    gen, cards, places = await _read_cards(args, port)
    if args.door == "fsi":
        result.update(await _measure_doors(args, gen, cards, places, process.pid))
        result["settle_per_s"] = result["v1"]["settle_per_s"]
        return result
    # Every call gets its own Idempotency-Key, warm-ups included: no replays are measured.
    offset = 0

    def settlement_from(start: int) -> Callable[[int], Awaitable[None]]:
        return lambda i: gen.settlement(start + i)

    def settle_from(start: int) -> Callable[[int], Awaitable[None]]:
        return lambda i: gen.settle(start + i)

    phases, db_used = await _closed_phases(
        gen,
        concurrencies,
        seconds,
        settlement_from,
        offset=offset,
        server_pid=process.pid,
        db_cpu=db_cpu,
    )
    offset += 20_000_000 * len(concurrencies)
    best = max(phases, key=lambda p: p.per_s)
    if db_cpu is not None:
        # The database server's own CPU and WAL per settlement (pre-settle + settle), beside
        # the gateway's (loadtest.bench.db_server).
        best_db_s, best_wal = db_used[phases.index(best)]
        result["db_cpu_ms_per_settlement"] = (
            round(best_db_s / best.ok * 1000, 3) if best_db_s is not None and best.ok else None
        )
        result["wal_bytes_per_settlement"] = (
            round(best_wal / best.ok) if best_wal is not None and best.ok else None
        )
        if db_cpu.unreadable:
            result["db_cpu_unreadable"] = db_cpu.unreadable
    result["settle_per_s"] = round(best.per_s, 1)
    result["concurrency"] = best.concurrency
    result["settle_errors"] = dict(best.errors)
    result["settle_p50_ms_closed"] = auth._round(auth._percentile(best.latencies_ms, 50))
    result["settle_p99_ms_closed"] = auth._round(auth._percentile(best.latencies_ms, 99))
    result["server_cpu_ms_per_settlement"] = auth._server_cpu_ms(best)
    # The generator's own CPU (this process): it shares the cores with the server.
    result["client_cpu_ms_per_settlement"] = auth._round(
        best.client_cpu_s / best.ok * 1000 if best.ok else None, 3
    )
    result["settle_by_concurrency"] = [auth._phase_summary(p) for p in phases]
    async with gen.connections(limit=MAX_OPEN_INFLIGHT):
        await auth.closed_loop(settlement_from(offset), 8, min(0.3, seconds))  # warm connections
        offset += 10_000_000
        steady = await auth.open_loop(
            gen.settlement, float(args.rate), seconds, start_at=offset, server_pgid=process.pid
        )
        offset += 10_000_000
    result["settle_p50_ms_at_500"] = auth._round(auth._percentile(steady.latencies_ms, 50))
    result["settle_p99_ms_at_500"] = auth._round(auth._percentile(steady.latencies_ms, 99))
    result["achieved_rate_at_500"] = round(steady.per_s, 1)
    result["errors_at_500"] = dict(steady.errors)
    result["server_cpu_ms_per_settlement_at_500"] = auth._server_cpu_ms(steady)
    growth: list[dict[str, Any]] = []
    for entries in _ledger_sizes(args):
        loaded = await asyncio.to_thread(fill_ledger, db_url, entries)
        async with gen.connections(limit=MAX_OPEN_INFLIGHT):
            warm = settle_from(offset)
            offset += 10_000_000
            await auth.closed_loop(warm, 8, min(0.5, seconds), limit=50)  # caches, connections
            phase = await auth.open_loop(
                gen.settle,
                float(args.steady_rate),
                max(seconds, 3.0),
                start_at=offset,
                server_pgid=process.pid,
            )
            offset += 10_000_000
        growth.append(
            {
                "ledger_entries": loaded["entries"],
                "fill_s": loaded["seconds"],
                "rate": float(args.steady_rate),
                "ok": phase.ok,
                "errors": dict(phase.errors),
                "settle_p50_ms": auth._round(auth._percentile(phase.latencies_ms, 50)),
                "settle_p99_ms": auth._round(auth._percentile(phase.latencies_ms, 99)),
                "server_cpu_ms_per_settle": auth._server_cpu_ms(phase),
            }
        )
    if growth:
        result["ledger_growth"] = growth
    return result


async def _read_cards(
    args: argparse.Namespace, port: int
) -> tuple[Generator, list[BenchCard], list[tuple[str, str, bytes]]]:
    """The generator, once every worker answers and each card was read at its terminal."""
    visit_date = dt.datetime.now(BEIJING).date().isoformat()
    visit_type = "pharmacy" if args.door == "fsi" else "outpatient"
    gen = Generator("127.0.0.1", port, visit_body(visit_date, visit_type))
    cards = make_cards(args.seed, args.cards)
    places = [fsi_door.pharmacy_terminal(args.seed, n) for n in range(len(cards))]
    terminals = _terminals(args, len(cards), places)
    await _wait_all_workers(gen, int(args.workers), terminals)
    async with gen.connections(limit=1):
        for card, terminal in zip(cards, terminals, strict=True):
            await gen.read_card(card, terminal)
    return gen, cards, places


def _terminals(
    args: argparse.Namespace, count: int, places: list[tuple[str, str, bytes]]
) -> list[tuple[str, bytes]]:
    """One terminal per card: at hospitals; with ``--door fsi`` at pharmacies (the envelope's
    purchase, 2101/2102, is a pharmacy's, and /v1 then settles the same purchase there)."""
    if args.door == "fsi":
        return [(terminal_id, secret) for _, terminal_id, secret in places]
    return [ta.demo_terminal(args.seed, n % HOSPITAL_TERMINALS) for n in range(count)]


async def _measure_doors(
    args: argparse.Namespace,
    gen: Generator,
    cards: list[BenchCard],
    places: list[tuple[str, str, bytes]],
    server_pgid: int,
) -> dict[str, Any]:
    """``--door fsi``: each till signs in on the envelope door, then both doors are measured."""
    door = fsi_door.FsiDoor(gen.host, gen.port, gen.run_id, LINES)

    @contextlib.asynccontextmanager
    async def pool(limit: int) -> AsyncIterator[LeanHttpClient]:
        async with gen.connections(limit) as client:
            door.client = client
            try:
                yield client
            finally:
                door.client = None

    async with pool(1):
        for card, (code, terminal_id, _secret) in zip(cards, places, strict=True):
            await door.sign_in(code, terminal_id, card.card_sn.upper())
    figures = await fsi_door.measure_doors(
        v1=gen.settlement,
        fsi=door.settlement,
        pool=pool,
        concurrencies=auth._concurrencies(args),
        seconds=float(args.seconds),
        server_pgid=server_pgid,
    )
    return {"door": "fsi", **figures}


def _ledger_sizes(args: argparse.Namespace) -> list[int]:
    sizes = [int(n) for n in str(args.ledger_entries).split(",") if n.strip()]
    if any(n < 0 for n in sizes) or sizes != sorted(sizes):
        raise SystemExit("--ledger-entries: ascending non-negative integers, comma-separated")
    return sizes


# -- ledger history (test-data setup, straight into the tables) --------------------------------

HISTORY_PREFIX: Final = "hist:"
HISTORY_BATCH_TXNS: Final = 10_000  # 40,000 entries per transaction
HISTORY_PERSONS: Final = 20_000
HISTORY_INSTITUTIONS: Final = 400
# UTC, as SQLAlchemy's SQLite text (a UtcDateTime column's stored wall clock). These rows go in
# on the driver, past the column type: PostgreSQL's COPY gets the zone spelled out, as the bare
# text would be read in the session's time zone.
HISTORY_POSTED_AT: Final = "2026-01-02 03:04:05.000000"
_HISTORY_POSTED_AT_PG: Final = HISTORY_POSTED_AT + "+00"


Rows = list[tuple[Any, ...]]


def _history_rows(first_txn: int, count: int) -> tuple[Rows, Rows]:
    """Balanced 4-entry transactions: fund and personal account and cash pay the fees."""
    txns: Rows = []
    entries: Rows = []
    for n in range(first_txn, first_txn + count):
        txn_id = f"{HISTORY_PREFIX}{n}"
        psn = f"person:31{n % HISTORY_PERSONS:013d}:current_year"
        inst = f"institution:H{n % HISTORY_INSTITUTIONS:011d}"
        fund, account, cash = 1_000 + n % 5_000, 500 + n % 700, 100 + n % 300
        txns.append((txn_id, "history", HISTORY_POSTED_AT))
        entries.extend(
            (
                (txn_id, "fund:pooling", "debit", fund),
                (txn_id, psn, "debit", account),
                (txn_id, inst + ":cash", "debit", cash),
                (txn_id, inst + ":fees", "credit", fund + account + cash),
            )
        )
    return txns, entries


def fill_ledger(db_url: str, entries: int) -> dict[str, Any]:
    """Add history until the ledger holds at least ``entries`` entries (4 per transaction);
    returns the count reached and the seconds it took."""
    started = time.perf_counter()
    engine = create_engine(db_url, connect_args={"timeout": 60} if "sqlite" in db_url else {})
    try:
        with engine.connect() as connection:
            have = connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
            done = connection.execute(
                text("SELECT count(*) FROM ledger_transactions WHERE kind = 'history'")
            ).scalar_one()
            connection.rollback()
            missing_txns = max(0, -(-(entries - have) // 4))
            while missing_txns > 0:
                batch = min(HISTORY_BATCH_TXNS, missing_txns)
                txns, rows = _history_rows(done, batch)
                _insert_history(connection, txns, rows)
                done += batch
                missing_txns -= batch
            total = connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one()
            connection.rollback()
        _settle_down(engine)
    finally:
        engine.dispose()
    return {"entries": int(total), "seconds": round(time.perf_counter() - started, 1)}


def _settle_down(engine: Any) -> None:
    """After a bulk load: fresh planner statistics, and the load's WAL written out, so that
    the measurement does not pay for the preload (a long SQLite WAL slows every read; a
    PostgreSQL checkpoint after a million rows slows every commit for a while)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("VACUUM (ANALYZE) ledger_transactions, ledger_entries")
            with contextlib.suppress(Exception):  # CHECKPOINT needs a privileged role
                connection.exec_driver_sql("CHECKPOINT")
        else:
            connection.exec_driver_sql("ANALYZE")
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _insert_history(connection: Any, txns: Rows, rows: Rows) -> None:
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            with cursor.copy(
                "COPY ledger_transactions (txn_id, kind, posted_at) FROM STDIN"
            ) as copy:
                for txn_id, kind, _posted_at in txns:
                    copy.write_row((txn_id, kind, _HISTORY_POSTED_AT_PG))
            with cursor.copy(
                "COPY ledger_entries (txn_id, account, side, amount_fen) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        driver.commit()
        return
    cursor = driver.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        cursor.executemany(
            "INSERT INTO ledger_transactions (txn_id, kind, posted_at) VALUES (?, ?, ?)", txns
        )
        cursor.executemany(
            "INSERT INTO ledger_entries (txn_id, account, side, amount_fen) VALUES (?, ?, ?, ?)",
            rows,
        )
        cursor.execute("COMMIT")
    finally:
        cursor.close()


# -- a PostgreSQL schema of the bench's own ------------------------------------------------------


@contextlib.contextmanager
def _database(args: argparse.Namespace, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(the gateway's db URL, a label): embedded SQLite in tmp_path, or a fresh schema on
    ``--db``, dropped afterwards (only that schema: others share the database)."""
    if not args.db:
        yield f"sqlite:///{tmp_path / 'db' / 'bench.sqlite3'}", "sqlite"
        return
    url = make_url(args.db)
    if url.get_backend_name() != "postgresql":
        raise SystemExit("--db: a postgresql+psycopg:// URL (SQLite is the default)")
    schema = f"bench_settle_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield scoped.render_as_string(hide_password=False), "postgresql"
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()


def _settings_env(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as GATEWAY_* variables (the gateway validates names and values)."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--setting {pair!r}: expected NAME=VALUE")
        env["GATEWAY_" + name.strip().upper()] = value
    return env


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = float(args.seconds)
    if args.workers < 1 or seconds <= 0 or args.rate <= 0 or args.cards < 1:
        raise SystemExit("--workers, --seconds, --rate and --cards must be positive")
    result: dict[str, Any] = {
        "bench": "settle",
        "workers": int(args.workers),
        "seconds": seconds,
        "cards": args.cards,
        "offered_rate": args.rate,
        "client_loop": "uvloop" if auth._uvloop_available() else "asyncio",
    }
    _ledger_sizes(args)  # refuse a bad list before anything starts
    with (
        tempfile.TemporaryDirectory(prefix="bench-settle-") as tmp,
        _database(args, Path(tmp)) as (plain_url, backend),
        named(plain_url, backend, APPLICATION_NAME_PREFIX + secrets.token_hex(4)) as (
            db_url,
            db_cpu,
        ),
    ):
        tmp_path = Path(tmp)
        result["database"] = backend
        env = auth._clean_env()
        env["GATEWAY_DEMO_SEED"] = args.seed
        server_env = dict(env)
        server_env["GATEWAY_DB_URL"] = db_url
        server_env["GATEWAY_DEMO_WORLD"] = "on"
        server_env["GATEWAY_CARD_SESSION_TTL_S"] = "3600"
        # Far above what the bench offers per terminal: the limiter is not what is measured.
        server_env["GATEWAY_TERMINAL_RATE_PER_S"] = "10000"
        server_env["GATEWAY_TERMINAL_BURST"] = "10000"
        server_env.update(_settings_env(args.setting))
        if args.setting:
            result["settings"] = sorted(args.setting)
        port = auth._free_port()
        log_path = tmp_path / "gateway.log"
        argv = [sys.executable, "-m", "gateway", "serve", "--workers", str(args.workers),
                "--port", str(port), "--data-dir", str(tmp_path / "var")]  # fmt: skip
        with auth._process(argv, log_path, server_env) as process:
            auth._run_async(
                lambda: _measure(
                    args, port, process, log_path, result, db_url=db_url, db_cpu=db_cpu
                )
            )
        auth._run_hello(args, result, tmp_path, env)
    hello_per_s = result["hello_per_s"]
    result["ratio_settle_to_hello"] = (
        round(result["settle_per_s"] / hello_per_s, 3) if hello_per_s else None
    )
    if args.door == "fsi":
        v1, fsi = result["v1"], result["fsi"]
        print(
            f"[{result['database']}] settlements/s: /v1 (pre-settle + settle) "
            f"{v1['settle_per_s']:,.0f} at c={v1['concurrency']} (server CPU "
            f"{v1['server_cpu_ms_per_settlement']} ms, errors {v1['errors'] or 0}); /fsi "
            f"(2101 + 2102) {fsi['settle_per_s']:,.0f} at c={fsi['concurrency']} (server CPU "
            f"{fsi['server_cpu_ms_per_settlement']} ms, errors {fsi['errors'] or 0}); "
            f"fsi/v1 = {result['ratio_fsi_to_v1']} (server CPU "
            f"{result['server_cpu_ratio_fsi_to_v1']}); hello {hello_per_s:,.0f}/s"
        )
        return result
    for size in result.get("ledger_growth", []):
        print(
            f"ledger {size['ledger_entries']:,} entries: settle p50 {size['settle_p50_ms']} ms, "
            f"p99 {size['settle_p99_ms']} ms at {size['rate']:.0f}/s, server CPU "
            f"{size['server_cpu_ms_per_settle']} ms/settle"
        )
    print(
        f"[{result['database']}] settlements/s (pre-settle + settle) = "
        f"{result['settle_per_s']:,.0f} at c={result['concurrency']}, server CPU "
        f"{result['server_cpu_ms_per_settlement']} ms"
        + (
            f" (database CPU {result.get('db_cpu_ms_per_settlement')} ms, WAL "
            f"{result.get('wal_bytes_per_settlement')} bytes)"
            if backend == "postgresql"
            else ""
        )
        + " and client CPU "
        f"{result['client_cpu_ms_per_settlement']} ms each "
        f"(p99 {result['settle_p99_ms_closed']} ms); open loop {args.rate:.0f}/s: p99 "
        f"{result['settle_p99_ms_at_500']} ms, achieved {result['achieved_rate_at_500']}/s, "
        f"errors {result['errors_at_500'] or 0}; hello {hello_per_s:,.0f}/s; "
        f"settle/hello = {result['ratio_settle_to_hello']}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.settle", description=__doc__)
    parser.add_argument("--json", action="store_true", help="also print one JSON object last")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
