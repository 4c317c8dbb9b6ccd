"""Local settlements per second against the real server, beside an aiohttp "hello".

``python -m loadtest.bench.settle [--json] [--seconds S] [--workers N] [--concurrency 16,32]``
(and ``python -m loadtest.bench settle`` once registered in ``loadtest/bench/__main__.py``).

1. starts ``python -m gateway serve --workers N`` (embedded SQLite, synchronous=FULL, the demo
   world with its insured persons) on a free port, card sessions valid for an hour;
2. reads ``--cards`` demo cards once each at a hospital terminal of their own (full SM2 card
   authentication), keeping the card sessions;
3. (a) closed loop at each concurrency: settle an outpatient visit (2 lines) with a fresh
   Idempotency-Key, back to back for S seconds; the best rate is ``settle_per_s``;
4. (b) open loop at ``--rate`` (500/s): latency from the scheduled start (no coordinated
   omission) → ``settle_p99_ms_at_500``;
5. (c) the hello yardstick of :mod:`loadtest.bench.auth` with the same workers and client.

Each settle is one write transaction (key, engine, settlement, balances, ledger, stored
answer) plus the request nonce; accounts run dry during the run, after which settlements are
paid in cash, which is still a full settlement. Only the public HTTP API is used.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from loadtest.bench import auth
from loadtest.bench.cards import BenchCard, make_cards
from sscard import demo as sd
from sscard import terminal_auth as ta
from sscard.crypto import SM2PrivateKey, sm2_sign
from sscard.layout import card_auth_message

__all__ = ["add_arguments", "run"]

SETTLE_PATH: Final = "/v1/settlements"
HOSPITAL_TERMINALS: Final = 800  # demo terminals 0..799 belong to the 400 hospitals
BEIJING: Final = dt.timezone(dt.timedelta(hours=8))
LINES: Final = (
    {"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_500},
    {"code": "DEMO-B-001", "quantity": 2, "unit_price_fen": 3_000},
)
MAX_OPEN_INFLIGHT: Final = 4000
OPEN_DRAIN_S: Final = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    parser.add_argument("--concurrency", default="16,32,64", help="closed-loop concurrencies")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop offered settle/s")
    parser.add_argument("--cards", type=int, default=100, help="demo cards (one terminal each)")
    parser.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED, help="demo seed")


@dataclass
class _Till:
    terminal: tuple[str, bytes]
    card_session: str


class _Client:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session: aiohttp.ClientSession | None = None
        self.run_id = secrets.token_hex(4)
        self.visit_date = dt.datetime.now(BEIJING).date().isoformat()
        self.tills: list[_Till] = []

    async def post(
        self,
        path: str,
        payload: dict[str, Any],
        terminal: tuple[str, bytes],
        extra: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        assert self.session is not None
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
        headers.update(extra or {})
        try:
            async with self.session.post(self.base_url + path, data=body, headers=headers) as resp:
                return resp.status, json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise auth.AuthFailed(f"CLIENT_{type(exc).__name__}") from None

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
        self.tills.append(_Till(terminal, body["card_session"]))

    async def settle(self, i: int) -> None:
        till = self.tills[i % len(self.tills)]
        status, body = await self.post(
            SETTLE_PATH,
            {"visit_type": "outpatient", "visit_date": self.visit_date, "lines": list(LINES)},
            till.terminal,
            {"X-Card-Session": till.card_session, "Idempotency-Key": f"b{self.run_id}-{i}"},
        )
        if status != 201:
            raise auth.AuthFailed(str(body.get("code", f"HTTP_{status}")))


async def _measure(
    args: argparse.Namespace, base: str, process: Any, log_path: Path, result: dict[str, Any]
) -> None:
    seconds = float(args.seconds)
    concurrencies = auth._concurrencies(args)
    await auth._wait_ready(base + "/readyz", process, log_path)
    client = _Client(base)
    cards = make_cards(args.seed, args.cards)
    timeout = aiohttp.ClientTimeout(total=auth.REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=MAX_OPEN_INFLIGHT, limit_per_host=MAX_OPEN_INFLIGHT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client.session = session
        for n, card in enumerate(cards):
            await client.read_card(card, ta.demo_terminal(args.seed, n % HOSPITAL_TERMINALS))
        offset = 0  # every call gets its own Idempotency-Key: no replays are measured

        def settle_from(start: int) -> Callable[[int], Awaitable[None]]:
            return lambda i: client.settle(start + i)

        phases: list[auth.Phase] = []
        for concurrency in concurrencies:
            await auth.closed_loop(settle_from(offset), concurrency, min(0.3, seconds))
            offset += 10_000_000
            phase = await auth.closed_loop(
                settle_from(offset), concurrency, seconds, server_pgid=process.pid
            )
            offset += 10_000_000
            phases.append(phase)
        best = max(phases, key=lambda p: p.per_s)
        result["settle_per_s"] = round(best.per_s, 1)
        result["concurrency"] = best.concurrency
        result["settle_errors"] = dict(best.errors)
        result["settle_p50_ms_closed"] = auth._round(auth._percentile(best.latencies_ms, 50))
        result["settle_p99_ms_closed"] = auth._round(auth._percentile(best.latencies_ms, 99))
        result["settle_by_concurrency"] = [auth._phase_summary(p) for p in phases]
        steady = await auth.open_loop(client.settle, float(args.rate), seconds, start_at=offset)
        result["settle_p50_ms_at_500"] = auth._round(auth._percentile(steady.latencies_ms, 50))
        result["settle_p99_ms_at_500"] = auth._round(auth._percentile(steady.latencies_ms, 99))
        result["achieved_rate_at_500"] = round(steady.per_s, 1)
        result["errors_at_500"] = dict(steady.errors)


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
    }
    with tempfile.TemporaryDirectory(prefix="bench-settle-") as tmp:
        tmp_path = Path(tmp)
        env = auth._clean_env()
        env["GATEWAY_DEMO_SEED"] = args.seed
        env["GATEWAY_CARD_SESSION_TTL_S"] = "3600"
        # Far above what the bench offers per terminal: the limiter is not what is measured.
        env["GATEWAY_TERMINAL_RATE_PER_S"] = "10000"
        env["GATEWAY_TERMINAL_BURST"] = "10000"
        port = auth._free_port()
        log_path = tmp_path / "gateway.log"
        argv = [sys.executable, "-m", "gateway", "serve", "--workers", str(args.workers),
                "--port", str(port), "--data-dir", str(tmp_path / "var")]  # fmt: skip
        with auth._process(argv, log_path, env) as process:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(_measure(args, base, process, log_path, result))
        auth._run_hello(args, result, tmp_path, env)
    hello_per_s = result["hello_per_s"]
    result["ratio_settle_to_hello"] = (
        round(result["settle_per_s"] / hello_per_s, 3) if hello_per_s else None
    )
    print(
        f"settle/s = {result['settle_per_s']:,.0f} at c={result['concurrency']} "
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
