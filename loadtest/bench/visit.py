"""Whole visits per second against the real server, and what a visit costs beyond its parts.

``python -m loadtest.bench visit [--json] [--seconds S] [--workers N] [--concurrency 16,32]
[--cards 100] [--db postgresql+psycopg://postgres@127.0.0.1:5432/test]``

A *visit* is what a counter does for one patient, as five signed requests: card challenge,
card response (the gateway verifies one SM2 signature and the certificate it already holds),
eligibility, pre-settle and settle (a fresh Idempotency-Key). Over ``python -m gateway serve``
on embedded SQLite (default) or, with ``--db``, on PostgreSQL in a schema of its own:

1. closed loop at each concurrency for S seconds: the best rate is ``visit_per_s``, with the
   gateway's CPU per visit (``server_cpu_ms_per_visit``, user + system of its processes);
2. open loop at half of that capacity: ``visit_p50_ms`` / ``visit_p99_ms`` from the scheduled
   start (no coordinated omission);
3. the yardsticks, in the same run: the minimal aiohttp "hello" handler's server CPU per
   request (:mod:`loadtest.bench.hello_app`, same workers, same client) and one SM2
   verification on one core (``sm2_verify_ms``);
4. ``overhead_multiple`` = server CPU per visit ÷ (5 × hello CPU per request + 1 SM2
   verification): 1.0 would be a gateway that costs no more than five empty requests and the
   one verification it cannot avoid. Goals (docs/benchmarks.md): ≤ 2.0 on SQLite, ≤ 2.5 on
   PostgreSQL (gateway CPU only).

On PostgreSQL the database server's own CPU per visit is reported beside it
(``db_cpu_ms_per_visit``): the CPU of the backends serving the gateway's connections, found by
the ``application_name`` the bench gives them (pg_stat_activity) and read from /proc, so that
nothing hides in the database. That needs the bench on the database's host (127.0.0.1) and
permission to read the backends' /proc entries (root, or the postgres user); otherwise the
figure is None and says so.

Card signatures are presigned the way the auth bench's are (:mod:`loadtest.bench.cards`), so
the generator's own CPU stays small; it is reported (``client_cpu_ms_per_visit``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

from loadtest.bench import auth, settle
from loadtest.bench.cards import BenchCard, Presignature, make_cards
from loadtest.bench.crypto import _rate
from loadtest.bench.db_server import DatabaseCpu, named
from loadtest.bench.lean_http import LeanHttpError
from sscard import demo as sd
from sscard import terminal_auth as ta
from sscard.crypto import SM2PrivateKey, sm2_sign, sm2_verify
from sscard.layout import card_auth_message

__all__ = ["VisitGenerator", "add_arguments", "overhead_multiple", "run"]

ELIGIBILITY_PATH: Final = "/v1/eligibility"
REQUESTS_PER_VISIT: Final = 5
APPLICATION_NAME_PREFIX: Final = "bench_visit_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    parser.add_argument("--concurrency", default="16,32", help="closed-loop concurrencies")
    parser.add_argument("--cards", type=int, default=100, help="demo cards (one terminal each)")
    parser.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED, help="demo seed")
    parser.add_argument(
        "--db",
        default="",
        help="a postgresql+psycopg:// URL: run the gateway there, in a schema of its own "
        "(default: embedded SQLite)",
    )


def overhead_multiple(
    server_cpu_ms_per_visit: float | None, hello_cpu_ms: float | None, sm2_verify_ms: float
) -> float | None:
    """Gateway CPU per visit over what its parts cost at the least: five requests to the
    minimal handler and one SM2 verification. None when a side was not measured."""
    if server_cpu_ms_per_visit is None or hello_cpu_ms is None:
        return None
    floor = REQUESTS_PER_VISIT * hello_cpu_ms + sm2_verify_ms
    return round(server_cpu_ms_per_visit / floor, 2) if floor > 0 else None


@dataclass(frozen=True)
class _Pair:
    card: BenchCard
    terminal: tuple[str, bytes]


class VisitGenerator(auth.Generator):
    """The auth bench's generator (presigned card signatures, lean HTTP), one visit at a time:
    visit ``i`` is card ``i % C`` at its own terminal."""

    def __init__(
        self,
        base_url: str,
        pairs: list[_Pair],
        presignatures: deque[Presignature],
        visit_body: bytes,
    ) -> None:
        super().__init__(
            base_url, [p.terminal for p in pairs], [p.card for p in pairs], presignatures
        )
        self._pairs = pairs
        self._visit_body = visit_body
        self.run_id = secrets.token_hex(4)

    async def _signed(
        self,
        path: str,
        body: bytes,
        terminal: tuple[str, bytes],
        session: str,
        idempotency_key: str | None = None,
    ) -> tuple[int, bytes]:
        assert self.client is not None
        headers = ta.signed_headers(
            terminal[1],
            terminal[0],
            "POST",
            path,
            body,
            timestamp=int(time.time()),
            nonce=secrets.token_urlsafe(16),
            # Signature version 2: both are signed, and returned as their headers.
            card_session=session,
            idempotency_key=idempotency_key,
        )
        headers["Content-Type"] = "application/json"
        try:
            return await self.client.request("POST", path, headers, body)
        except LeanHttpError as exc:
            raise auth.AuthFailed(f"CLIENT_{exc.kind}") from None

    async def _card_session(self, pair: _Pair) -> str:
        card, terminal = pair.card, pair.terminal
        status, granted = await self.post(
            auth.CHALLENGE_PATH, {"card_sn": card.card_sn, "generation": 3}, terminal
        )
        if status != 200:
            raise auth.AuthFailed("CHALLENGE_" + str(granted.get("code", f"HTTP_{status}")))
        message = card_auth_message(bytes.fromhex(granted["challenge"]), card.raw_sn, terminal[0])
        answer: dict[str, Any] = {
            "challenge_id": granted["challenge_id"],
            "card_sn": card.card_sn,
            "signature": self._sign(card, message).hex(),
        }
        if card.certificate_stored:
            answer["certificate_sm3"] = card.certificate_sm3_hex
        else:
            answer["certificate"] = card.certificate_b64
        status, session = await self.post(auth.RESPONSE_PATH, answer, terminal)
        if status != 200 or not session.get("card_session"):
            raise auth.AuthFailed("RESPONSE_" + str(session.get("code", f"HTTP_{status}")))
        card.certificate_stored = True
        return str(session["card_session"])

    async def visit(self, i: int) -> None:
        """One patient at the counter: five signed requests. Raises AuthFailed on a refusal,
        named by the step and the gateway's code."""
        pair = self._pairs[i % len(self._pairs)]
        session = await self._card_session(pair)
        steps: tuple[tuple[str, str, bytes, int, str | None], ...] = (
            ("ELIGIBILITY_", ELIGIBILITY_PATH, b"{}", 200, None),
            ("PRE_", settle.PRE_SETTLE_PATH, self._visit_body, 200, None),
            ("SETTLE_", settle.SETTLE_PATH, self._visit_body, 201, f"v{self.run_id}-{i}"),
        )
        for label, path, body, expected, key in steps:
            status, data = await self._signed(path, body, pair.terminal, session, key)
            if status != expected:
                raise auth.AuthFailed(label + _code(status, data))


def _code(status: int, data: bytes) -> str:
    try:
        parsed = json.loads(data)
    except ValueError:
        return f"HTTP_{status}_NOT_JSON"
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return str(code) if code is not None else f"HTTP_{status}"


# -- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Server:
    port: int
    process: Any
    log_path: Path


async def _measure(
    args: argparse.Namespace,
    server: _Server,
    result: dict[str, Any],
    gen: VisitGenerator,
    db_cpu: DatabaseCpu | None,
) -> dict[str, Any]:
    port, process, log_path = server.port, server.process, server.log_path
    seconds = float(args.seconds)
    await auth._wait_ready(f"http://127.0.0.1:{port}/readyz", process, log_path)
    await auth._wait_all_workers(gen, int(args.workers))
    offset = 0

    def visits_from(start: int) -> Callable[[int], Awaitable[None]]:
        return lambda i: gen.visit(start + i)

    # Warm-up: every card once on every worker (its certificate then stored), pools open.
    async with gen.connections(limit=8):
        warm = await auth.closed_loop(visits_from(offset), 8, 60, limit=len(gen.cards) * 2)
    offset += 10_000_000
    result["warmup"] = {"ok": warm.ok, "errors": dict(warm.errors)}
    if warm.ok == 0:
        raise RuntimeError(f"no visit succeeded in the warm-up: {dict(warm.errors)}")

    phases: list[tuple[auth.Phase, float | None, int | None]] = []
    for concurrency in auth._concurrencies(args):
        async with gen.connections(limit=concurrency):
            await auth.closed_loop(visits_from(offset), concurrency, min(0.3, seconds))
            offset += 10_000_000
            before = db_cpu.read() if db_cpu else None
            lsn_before = db_cpu.wal_lsn() if db_cpu else None
            phase = await auth.closed_loop(
                visits_from(offset), concurrency, seconds, server_pgid=process.pid
            )
            after = db_cpu.read() if db_cpu else None
            wal = db_cpu.wal_lsn() - lsn_before if db_cpu and lsn_before is not None else None
            offset += 10_000_000
        db_s = DatabaseCpu.used(before, after) if before is not None and after else None
        phases.append((phase, db_s, wal))
    best, best_db_s, best_wal = max(phases, key=lambda p: p[0].per_s)
    result["visit_per_s"] = round(best.per_s, 1)
    result["concurrency"] = best.concurrency
    result["visit_errors"] = dict(best.errors)
    result["server_cpu_ms_per_visit"] = auth._server_cpu_ms(best)
    result["client_cpu_ms_per_visit"] = auth._round(
        best.client_cpu_s / best.ok * 1000 if best.ok else None, 3
    )
    if db_cpu is not None:
        result["db_cpu_ms_per_visit"] = (
            round(best_db_s / best.ok * 1000, 3) if best_db_s is not None and best.ok else None
        )
        if db_cpu.unreadable:
            result["db_cpu_unreadable"] = db_cpu.unreadable
        # The whole server's WAL over the phase (loadtest.bench.db_server: an upper bound).
        result["wal_bytes_per_visit"] = (
            round(best_wal / best.ok) if best_wal is not None and best.ok else None
        )
    result["visit_by_concurrency"] = [auth._phase_summary(p) for p, _, _ in phases]

    half = max(1.0, best.per_s / 2)
    async with gen.connections(limit=auth.MAX_OPEN_INFLIGHT):
        await auth.closed_loop(visits_from(offset), 8, min(0.3, seconds))
        offset += 10_000_000
        steady = await auth.open_loop(
            gen.visit, half, seconds, start_at=offset, server_pgid=process.pid
        )
    result["offered_rate_half_capacity"] = round(half, 1)
    result["achieved_rate_half_capacity"] = round(steady.per_s, 1)
    result["visit_p50_ms"] = auth._round(auth._percentile(steady.latencies_ms, 50))
    result["visit_p99_ms"] = auth._round(auth._percentile(steady.latencies_ms, 99))
    result["errors_half_capacity"] = dict(steady.errors)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = float(args.seconds)
    if args.workers < 1 or seconds <= 0 or args.cards < 1:
        raise SystemExit("--workers, --seconds and --cards must be positive")
    result: dict[str, Any] = {
        "bench": "visit",
        "workers": int(args.workers),
        "seconds": seconds,
        "cards": args.cards,
        "requests_per_visit": REQUESTS_PER_VISIT,
        "client_loop": "uvloop" if auth._uvloop_available() else "asyncio",
    }
    visit_date = dt.datetime.now(settle.BEIJING).date().isoformat()
    with (
        tempfile.TemporaryDirectory(prefix="bench-visit-") as tmp,
        settle._database(args, Path(tmp)) as (db_url, backend),
        named(db_url, backend, APPLICATION_NAME_PREFIX + secrets.token_hex(4)) as (url, db_cpu),
        ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool,
    ):
        tmp_path = Path(tmp)
        result["database"] = backend
        env = auth._clean_env()
        env["GATEWAY_DEMO_SEED"] = args.seed
        server_env = dict(env)
        server_env["GATEWAY_DB_URL"] = url
        server_env["GATEWAY_DEMO_WORLD"] = "on"
        # Far above what the bench offers per terminal: the limiter is not what is measured.
        server_env["GATEWAY_TERMINAL_RATE_PER_S"] = "10000"
        server_env["GATEWAY_TERMINAL_BURST"] = "10000"
        port = auth._free_port()
        log_path = tmp_path / "gateway.log"
        argv = [sys.executable, "-m", "gateway", "serve", "--workers", str(args.workers),
                "--port", str(port), "--data-dir", str(tmp_path / "var")]  # fmt: skip
        with auth._process(argv, log_path, server_env) as process:
            cards = make_cards(args.seed, args.cards, pool)
            pairs = [
                _Pair(card, ta.demo_terminal(args.seed, n % settle.HOSPITAL_TERMINALS))
                for n, card in enumerate(cards)
            ]
            presignatures: deque[Presignature] = deque()
            # Warm-up (2 per card) + the closed loops (≤ ~1,500 visits/s) + the open loop.
            wanted = 2 * len(cards) + int(1500 * seconds * (len(auth._concurrencies(args)) + 2))
            auth._top_up(presignatures, wanted, pool)
            gen = VisitGenerator(
                f"http://127.0.0.1:{port}", pairs, presignatures, settle.visit_body(visit_date)
            )
            server = _Server(port, process, log_path)
            auth._run_async(lambda: _measure(args, server, result, gen, db_cpu))
            result["live_signatures"] = gen.live_signatures
        auth._run_hello(args, result, tmp_path, env)

    hello = next(
        p for p in result["hello_by_concurrency"] if p["concurrency"] == result["hello_concurrency"]
    )
    result["hello_cpu_ms_per_request"] = hello["server_cpu_ms_per_op"]
    key = SM2PrivateKey.generate()
    message = card_auth_message(bytes(16), cards[0].raw_sn, pairs[0].terminal[0])
    signature = sm2_sign(key, message)
    verify_per_s = _rate(lambda: sm2_verify(key.public_key, message, signature), min(seconds, 2.0))
    result["sm2_verify_ms"] = round(1000 / verify_per_s, 4)
    result["overhead_multiple"] = overhead_multiple(
        result["server_cpu_ms_per_visit"],
        result["hello_cpu_ms_per_request"],
        result["sm2_verify_ms"],
    )
    print(
        f"[{result['database']}] visits/s = {result['visit_per_s']:,.0f} at "
        f"c={result['concurrency']} (errors {result['visit_errors'] or 0}); server CPU "
        f"{result['server_cpu_ms_per_visit']} ms/visit"
        + (
            f", database CPU {result.get('db_cpu_ms_per_visit')} ms/visit, WAL "
            f"{result.get('wal_bytes_per_visit')} bytes/visit"
            if backend == "postgresql"
            else ""
        )
        + f"; at {result['offered_rate_half_capacity']}/s (half): p50 {result['visit_p50_ms']} ms, "
        f"p99 {result['visit_p99_ms']} ms; hello CPU {result['hello_cpu_ms_per_request']} "
        f"ms/request, SM2 verify {result['sm2_verify_ms']} ms; overhead multiple "
        f"{result['overhead_multiple']}"
    )
    return result
