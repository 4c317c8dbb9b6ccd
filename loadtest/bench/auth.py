"""Full card authentications per second against the real server, beside an aiohttp "hello".

``python -m loadtest.bench auth [--json] [--seconds S] [--workers N] [--concurrency 16,32,64]``

One run, on this machine, with the load generator in this process:

1. starts ``python -m gateway serve --workers N`` (a subprocess on a free port of 127.0.0.1, a
   temporary ``--data-dir``: embedded SQLite and the demo world) and waits until every worker
   answers;
2. warms up: every bench card authenticates a few times (the first time with its certificate,
   which the gateway stores; then, as a terminal would, with the certificate's SM3 only);
3. (a) closed loop at each concurrency: C tasks, each running challenge + response back to back
   for S seconds; the best rate is ``auth_per_s``;
4. (b) open loop at ``--rate`` (500/s): authentications start on schedule whether or not
   earlier ones finished; latency is measured from the scheduled start, so a stall shows in
   the percentiles instead of slowing the offered load (no coordinated omission);
5. (c) stops the gateway, starts :mod:`loadtest.bench.hello_app` with the same number of
   workers, and measures it closed loop with the same client and concurrencies: ``hello_per_s``;
6. (d) SM2 verify per second on one core (:func:`sscard.crypto.sm2_verify`), the floor under
   the gateway's cost per authentication.

Only the gateway's public HTTP API is used. Each request is signed as a demo terminal
(:mod:`sscard.terminal_auth`), spread over ``--terminals`` terminals so that no terminal nears
its rate limit. Card signatures are computed here, as the demo cards would (their keys derive
from the public demo seed), with the nonce's scalar multiplication done before each phase
(:mod:`loadtest.bench.cards`), so the generator spends ~20 µs, not ~1 ms, of CPU per
signature. Requests go out on :mod:`loadtest.bench.lean_http` (keep-alive HTTP/1.1, one
``send`` per request: ~0.2 ms of CPU per authentication instead of aiohttp's client's ~0.45),
which the hello phase uses as well. The generator still shares the 2 cores with the server: its
own CPU time is reported (``client_cpu_ms_per_auth``) so the figures can be read with that in
mind, beside the server's (``server_cpu_ms_per_auth``).

Every loop is bounded by time and count, and the servers are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import count
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from loadtest.bench.cards import BenchCard, Presignature, make_cards, make_presignatures
from loadtest.bench.crypto import _rate
from loadtest.bench.lean_http import LeanHttpClient, LeanHttpError
from sscard import demo as sd
from sscard import terminal_auth as ta
from sscard.crypto import SM2PrivateKey, sm2_sign, sm2_verify
from sscard.layout import card_auth_message

__all__ = ["add_arguments", "run"]

CHALLENGE_PATH: Final = "/v1/card-auth/challenge"
RESPONSE_PATH: Final = "/v1/card-auth/response"
ECHO_PATH: Final = "/v1/echo"
START_TIMEOUT_S: Final = 180.0
STOP_TIMEOUT_S: Final = 40.0
REQUEST_TIMEOUT_S: Final = 15.0
# Open loop: at most this many authentications in flight; beyond it a start is counted as
# DROPPED (the gateway is not keeping up) instead of growing without bound.
MAX_OPEN_INFLIGHT: Final = 4000
# Open loop: how long to wait for the last authentications after the schedule ends.
OPEN_DRAIN_S: Final = 20.0
# Warm-up rounds per worker: the kernel spreads connections over workers at random, and each
# worker verifies a card's certificate chain (~1 ms) the first time IT sees the card; with
# 3 rounds per worker a card misses a given worker with probability 2^-6 instead of 2^-3, so
# the measured phases see the steady state (every certificate cached) as a real gateway does.
WARMUP_ROUNDS_PER_WORKER: Final = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    parser.add_argument(
        "--concurrency",
        default="16,32,64",
        help="closed-loop concurrencies to try, comma-separated (best one is reported)",
    )
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop offered auth/s")
    parser.add_argument("--cards", type=int, default=200, help="active demo cards to use")
    parser.add_argument("--terminals", type=int, default=400, help="demo terminals to sign as")
    parser.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED, help="demo seed")
    parser.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the gateway's log to this file"
    )
    parser.add_argument(
        "--gateway-setting",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a gateway setting for this run (GATEWAY_<FIELD>), e.g. event_loop=asyncio",
    )


# -- results -----------------------------------------------------------------------------------


class AuthFailed(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Phase:
    concurrency: int
    ok: int = 0
    elapsed_s: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None

    @property
    def per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _group_cpu_s(pgid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by every live process of process group
    ``pgid`` (the server and its workers), from /proc; None where there is no /proc. Unlike
    wall-clock rates, CPU per operation does not move when other programs share the cores."""
    if pgid is None:
        return None
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces): state ppid pgrp ... utime stime
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


# -- processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}


@contextlib.contextmanager
def _process(
    argv: list[str], log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own group: the cleanup below reaches its workers
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


# -- the load generator ------------------------------------------------------------------------


class Generator:
    """Signs and sends; shared by every phase (one connection pool per phase)."""

    def __init__(
        self,
        base_url: str,
        terminals: list[tuple[str, bytes]],
        cards: list[BenchCard],
        presignatures: deque[Presignature],
    ) -> None:
        self.base_url = base_url
        self.terminals = terminals
        self.cards = cards
        self.presignatures = presignatures
        self.live_signatures = 0
        self._keys: dict[int, SM2PrivateKey] = {}
        self.client: LeanHttpClient | None = None

    @contextlib.asynccontextmanager
    async def connections(self, limit: int) -> Any:
        url = urlsplit(self.base_url)
        assert url.hostname is not None
        assert url.port is not None
        async with LeanHttpClient(
            url.hostname, url.port, limit=limit, timeout_s=REQUEST_TIMEOUT_S
        ) as client:
            self.client = client
            try:
                yield client
            finally:
                self.client = None

    async def post(
        self, path: str, payload: dict[str, Any], terminal: tuple[str, bytes]
    ) -> tuple[int, dict[str, Any]]:
        assert self.client is not None
        body = json.dumps(payload, separators=(",", ":")).encode()
        terminal_id, secret = terminal
        # Signed afresh for every request, as a terminal does: SM3 of the body, HMAC-SM3 over
        # method, path, timestamp, a new nonce and that hash (sscard.terminal_auth).
        headers = ta.signed_headers(
            secret,
            terminal_id,
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
            raise AuthFailed(f"CLIENT_{exc.kind}") from None
        try:
            parsed = json.loads(data)
        except ValueError:
            raise AuthFailed(f"HTTP_{status}_NOT_JSON") from None
        return status, parsed

    def _sign(self, card: BenchCard, message: bytes) -> bytes:
        while self.presignatures:
            signature = card.sign(message, self.presignatures.popleft())
            if signature is not None:
                return signature
        # The pool ran dry: sign in full (slow; counted and reported).
        self.live_signatures += 1
        key = self._keys.get(card.number)
        if key is None:
            key = self._keys[card.number] = SM2PrivateKey.from_int(card.d)
        return sm2_sign(key, message)

    async def authenticate(self, i: int) -> None:
        """One full authentication: terminal ``i % T``, card ``i % C``. Raises AuthFailed."""
        terminal = self.terminals[i % len(self.terminals)]
        card = self.cards[i % len(self.cards)]
        status, granted = await self.post(
            CHALLENGE_PATH, {"card_sn": card.card_sn, "generation": 3}, terminal
        )
        if status != 200:
            raise AuthFailed(str(granted.get("code", f"HTTP_{status}")))
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
        status, session = await self.post(RESPONSE_PATH, answer, terminal)
        if status != 200:
            raise AuthFailed(str(session.get("code", f"HTTP_{status}")))
        if not session.get("card_session"):
            raise AuthFailed("NO_CARD_SESSION")
        card.certificate_stored = True


async def closed_loop(
    op: Callable[[int], Awaitable[None]],
    concurrency: int,
    seconds: float,
    limit: int | None = None,
    server_pgid: int | None = None,
) -> Phase:
    """``concurrency`` tasks calling ``op(i)`` back to back for ``seconds`` (or ``limit``
    calls in all, whichever comes first)."""
    phase = Phase(concurrency)
    numbers = count()
    cpu0 = _cpu_s()
    server0 = _group_cpu_s(server_pgid)
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            i = next(numbers)
            if limit is not None and i >= limit:
                return
            began = time.perf_counter()
            try:
                await op(i)
            except AuthFailed as exc:
                phase.errors[exc.code] += 1
                continue
            phase.ok += 1
            phase.latencies_ms.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.elapsed_s = time.perf_counter() - start
    phase.client_cpu_s = _cpu_s() - cpu0
    server1 = _group_cpu_s(server_pgid)
    if server0 is not None and server1 is not None:
        phase.server_cpu_s = server1 - server0
    return phase


async def open_loop(
    op: Callable[[int], Awaitable[None]],
    rate: float,
    seconds: float,
    *,
    server_pgid: int | None = None,
    start_at: int = 0,
) -> Phase:
    """``op(start_at + i)`` started every 1/rate s on schedule, whether or not earlier ones have
    finished; latency from the scheduled start. ``op`` raises AuthFailed with a code on a refusal.
    Shared by every HTTP benchmark (auth, settle)."""
    phase = Phase(concurrency=0)
    total = max(1, int(rate * seconds))
    tasks: set[asyncio.Task[None]] = set()
    cpu0 = _cpu_s()
    server0 = _group_cpu_s(server_pgid)
    start = time.perf_counter() + 0.05
    last_done = start

    async def one(i: int, scheduled: float) -> None:
        nonlocal last_done
        try:
            await op(start_at + i)
        except AuthFailed as exc:
            phase.errors[exc.code] += 1
            return
        now = time.perf_counter()
        last_done = max(last_done, now)
        phase.ok += 1
        phase.latencies_ms.append((now - scheduled) * 1000)

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= MAX_OPEN_INFLIGHT:
            phase.errors["DROPPED"] += 1
            continue
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=OPEN_DRAIN_S)
        for task in pending:
            task.cancel()
            phase.errors["TIMEOUT"] += 1
        await asyncio.gather(*pending, return_exceptions=True)
    phase.elapsed_s = max(last_done - start, total / rate)
    phase.client_cpu_s = _cpu_s() - cpu0
    server1 = _group_cpu_s(server_pgid)
    if server0 is not None and server1 is not None:
        phase.server_cpu_s = server1 - server0
    return phase


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {process.returncode}:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {START_TIMEOUT_S} s")


async def _wait_all_workers(gen: Generator, workers: int) -> None:
    """Until ``workers`` distinct worker pids answered /v1/echo on fresh connections: only then
    is every worker listening, so the phases' keep-alive connections spread over all of them."""
    pids: set[int] = set()
    deadline = time.monotonic() + START_TIMEOUT_S
    attempt = 0
    while len(pids) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(pids)} of {workers} workers answered")
        async with gen.connections(limit=1):
            status, body = await gen.post(
                ECHO_PATH, {"message": "ready?"}, gen.terminals[attempt % len(gen.terminals)]
            )
        attempt += 1
        if status == 200:
            pids.add(int(body["worker_pid"]))
        else:
            await asyncio.sleep(0.1)


def _top_up(presignatures: deque[Presignature], needed: int, pool: ProcessPoolExecutor) -> float:
    """Fill the presignature pool to ``needed`` (between phases, never during one)."""
    missing = needed - len(presignatures)
    if missing <= 0:
        return 0.0
    started = time.perf_counter()
    presignatures.extend(make_presignatures(missing, pool))
    return time.perf_counter() - started


async def _hello_phase(url: str, concurrency: int, seconds: float, pgid: int) -> Phase:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    async with LeanHttpClient(
        parts.hostname, parts.port, limit=concurrency, timeout_s=REQUEST_TIMEOUT_S
    ) as client:

        async def hello(_i: int) -> None:
            try:
                status, _ = await client.request("GET", parts.path, {})
            except LeanHttpError as exc:
                raise AuthFailed(f"CLIENT_{exc.kind}") from None
            if status != 200:
                raise AuthFailed(f"HTTP_{status}")

        await closed_loop(hello, concurrency, min(0.5, seconds))  # connections, warm
        return await closed_loop(hello, concurrency, seconds, server_pgid=pgid)


def _phase_summary(phase: Phase) -> dict[str, Any]:
    return {
        "concurrency": phase.concurrency,
        "per_s": round(phase.per_s, 1),
        "ok": phase.ok,
        "errors": dict(phase.errors),
        "p50_ms": _round(_percentile(phase.latencies_ms, 50)),
        "p99_ms": _round(_percentile(phase.latencies_ms, 99)),
        "client_cpu_s_per_op_ms": _round(
            phase.client_cpu_s / phase.ok * 1000 if phase.ok else None, 3
        ),
        "server_cpu_ms_per_op": _server_cpu_ms(phase),
    }


def _server_cpu_ms(phase: Phase) -> float | None:
    if phase.server_cpu_s is None or not phase.ok:
        return None
    return round(phase.server_cpu_s / phase.ok * 1000, 3)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _run_async(main: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    if _uvloop_available():
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def _concurrencies(args: argparse.Namespace) -> list[int]:
    values = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if not values or min(values) < 1:
        raise SystemExit("--concurrency: positive integers, comma-separated")
    return values


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = float(args.seconds)
    if args.workers < 1 or seconds <= 0 or args.rate <= 0 or args.cards < 1:
        raise SystemExit("--workers, --seconds, --rate and --cards must be positive")
    result: dict[str, Any] = {
        "bench": "auth",
        "workers": int(args.workers),
        "seconds": seconds,
        "cards": args.cards,
        "terminals": args.terminals,
        "offered_rate": args.rate,
        "client_loop": "uvloop" if _uvloop_available() else "asyncio",
    }
    terminals = [ta.demo_terminal(args.seed, n) for n in range(args.terminals)]
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        env = _clean_env()
        env["GATEWAY_DEMO_SEED"] = args.seed
        gateway_env = dict(env)
        for setting in args.gateway_setting:
            name, _, value = setting.partition("=")
            gateway_env["GATEWAY_" + name.strip().upper()] = value.strip()
        result["gateway_settings"] = list(args.gateway_setting)
        cards = _run_gateway(args, result, terminals, Path(tmp), gateway_env)
        # The hello yardstick: same worker count and client, with the gateway stopped.
        _run_hello(args, result, Path(tmp), env)

    # (d) SM2 verify on one core, over a card-authentication message.
    key = SM2PrivateKey.generate()
    message = card_auth_message(bytes(16), cards[0].raw_sn, terminals[0][0])
    signature = sm2_sign(key, message)
    result["verify_per_s"] = round(
        _rate(lambda: sm2_verify(key.public_key, message, signature), min(seconds, 2.0)), 1
    )
    auth_per_s, hello_per_s = result["auth_per_s"], result["hello_per_s"]
    result["ratio_auth_to_hello"] = round(auth_per_s / hello_per_s, 3) if hello_per_s else None
    # Two requests per authentication: the HTTP-only ceiling is hello_per_s / 2.
    result["ratio_auth_requests_to_hello"] = (
        round(2 * auth_per_s / hello_per_s, 3) if hello_per_s else None
    )
    _print_report(result)
    return result


def _run_gateway(
    args: argparse.Namespace,
    result: dict[str, Any],
    terminals: list[tuple[str, bytes]],
    tmp_path: Path,
    env: dict[str, str],
) -> list[BenchCard]:
    workers = int(args.workers)
    port = _free_port()
    gateway_log = tmp_path / "gateway.log"
    argv = [sys.executable, "-m", "gateway", "serve", "--workers", str(workers),
            "--port", str(port), "--data-dir", str(tmp_path / "var")]  # fmt: skip
    with (
        ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool,
        _process(argv, gateway_log, env) as gateway,
    ):
        # Card material and the first presignatures while the gateway starts.
        started = time.perf_counter()
        cards = make_cards(args.seed, args.cards, pool)
        warmup = args.cards * workers * WARMUP_ROUNDS_PER_WORKER
        presignatures: deque[Presignature] = deque()
        _top_up(presignatures, warmup + int(1500 * float(args.seconds)), pool)
        result["precompute_s"] = round(time.perf_counter() - started, 2)
        gen = Generator(f"http://127.0.0.1:{port}", terminals, cards, presignatures)
        measure = _Measure(gen, args, result, pool, warmup, gateway_log)
        try:
            _run_async(lambda: measure.gateway(gateway))
        finally:
            if args.keep_logs is not None:
                args.keep_logs.write_bytes(gateway_log.read_bytes())
    return cards


def _run_hello(
    args: argparse.Namespace, result: dict[str, Any], tmp_path: Path, env: dict[str, str]
) -> None:
    seconds = float(args.seconds)
    port = _free_port()
    argv = [sys.executable, "-m", "loadtest.bench.hello_app", "--port", str(port),
            "--workers", str(args.workers), "--max-seconds", "900"]  # fmt: skip
    if _uvloop_available():  # as the gateway: uvloop whenever it is installed
        argv.append("--uvloop")
    result["hello_loop"] = "uvloop" if "--uvloop" in argv else "asyncio"
    log_path = tmp_path / "hello.log"
    with _process(argv, log_path, env) as hello:
        url = f"http://127.0.0.1:{port}/hello"

        async def measure_hello() -> dict[str, Any]:
            await _wait_ready(url, hello, log_path)
            await asyncio.sleep(0.5)  # every worker listening (they start together)
            phases = [await _hello_phase(url, c, seconds, hello.pid) for c in _concurrencies(args)]
            return {"phases": [_phase_summary(p) for p in phases]}

        phases = _run_async(measure_hello)["phases"]
    best = max(phases, key=lambda p: p["per_s"])
    result["hello_per_s"] = best["per_s"]
    result["hello_concurrency"] = best["concurrency"]
    result["hello_by_concurrency"] = phases


@dataclass
class _Measure:
    gen: Generator
    args: argparse.Namespace
    result: dict[str, Any]
    pool: ProcessPoolExecutor
    warmup: int
    log_path: Path

    async def gateway(self, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        return await _measure_gateway(self, process)


async def _measure_gateway(m: _Measure, gateway: subprocess.Popen[bytes]) -> dict[str, Any]:
    gen, args, result, pool, warmup = m.gen, m.args, m.result, m.pool, m.warmup
    seconds = float(args.seconds)
    workers = int(args.workers)
    concurrencies = _concurrencies(args)
    base = gen.base_url
    await _wait_ready(base + "/readyz", gateway, m.log_path)
    await _wait_all_workers(gen, workers)

    # Warm-up: every card once with its certificate, then with its SM3 on more connections.
    async with gen.connections(limit=max(concurrencies)):
        warm = await closed_loop(gen.authenticate, max(concurrencies), 600, limit=warmup)
    result["warmup"] = {"ok": warm.ok, "errors": dict(warm.errors)}
    if warm.ok == 0:
        raise RuntimeError(f"no card authentication succeeded in the warm-up: {warm.errors}")

    # (a) closed loop.
    phases: list[Phase] = []
    best_rate = 0.0
    for concurrency in concurrencies:
        _top_up(gen.presignatures, int(max(best_rate, 1500) * 1.5 * seconds) + 100, pool)
        async with gen.connections(limit=concurrency):
            await closed_loop(gen.authenticate, concurrency, min(0.5, seconds))  # connect
            phase = await closed_loop(
                gen.authenticate, concurrency, seconds, server_pgid=gateway.pid
            )
        phases.append(phase)
        best_rate = max(best_rate, phase.per_s)
    best = max(phases, key=lambda p: p.per_s)
    result["auth_per_s"] = round(best.per_s, 1)
    result["concurrency"] = best.concurrency
    result["auth_errors"] = dict(best.errors)
    result["auth_p50_ms_closed"] = _round(_percentile(best.latencies_ms, 50))
    result["auth_p99_ms_closed"] = _round(_percentile(best.latencies_ms, 99))
    result["client_cpu_ms_per_auth"] = _round(
        best.client_cpu_s / best.ok * 1000 if best.ok else None, 3
    )
    # CPU the server spent per authentication (all its processes): the figure that does not
    # move with what else runs on the machine.
    result["server_cpu_ms_per_auth"] = _server_cpu_ms(best)
    result["auth_by_concurrency"] = [_phase_summary(p) for p in phases]

    # (b) open loop at the offered rate.
    _top_up(gen.presignatures, int(args.rate * seconds * 1.05) + 100, pool)
    async with gen.connections(limit=MAX_OPEN_INFLIGHT):
        await closed_loop(gen.authenticate, 8, min(0.3, seconds))  # a few warm connections
        steady = await open_loop(
            gen.authenticate, float(args.rate), seconds, server_pgid=gateway.pid
        )
    result["auth_p50_ms_at_500"] = _round(_percentile(steady.latencies_ms, 50))
    result["auth_p99_ms_at_500"] = _round(_percentile(steady.latencies_ms, 99))
    result["auth_max_ms_at_500"] = _round(max(steady.latencies_ms, default=0.0))
    result["achieved_rate_at_500"] = round(steady.per_s, 1)
    result["errors_at_500"] = dict(steady.errors)
    result["server_cpu_ms_per_auth_at_500"] = _server_cpu_ms(steady)
    result["live_signatures"] = gen.live_signatures
    return result


def _print_report(result: dict[str, Any]) -> None:
    print(f"gateway --workers {result['workers']}, {result['seconds']} s per phase, "
          f"{result['cards']} cards, {result['terminals']} terminals, "
          f"client loop {result['client_loop']}")  # fmt: skip
    print(f"{'closed loop':<16}{'auth/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
          f"{'server cpu ms/auth':>20}{'client cpu ms/auth':>20}")  # fmt: skip
    for p in result["auth_by_concurrency"]:
        print(
            f"{'c=' + str(p['concurrency']):<16}{p['per_s']:>10,.0f}{p['p50_ms'] or 0:>10.1f}"
            f"{p['p99_ms'] or 0:>10.1f}{sum(p['errors'].values()):>8}"
            f"{p['server_cpu_ms_per_op'] or 0:>20.3f}{p['client_cpu_s_per_op_ms'] or 0:>20.3f}"
        )
    print(
        f"open loop {result['offered_rate']:.0f}/s: achieved {result['achieved_rate_at_500']:,.0f}"
        f"/s, p50 {result['auth_p50_ms_at_500']} ms, p99 {result['auth_p99_ms_at_500']} ms, "
        f"max {result['auth_max_ms_at_500']} ms, errors {result['errors_at_500'] or 0}"
    )
    hello_best = max(result["hello_by_concurrency"], key=lambda p: p["per_s"])
    print(f"hello ({result['hello_loop']}): {result['hello_per_s']:,.0f} req/s at "
          f"c={result['hello_concurrency']}, server cpu "
          f"{hello_best['server_cpu_ms_per_op']} ms/req")  # fmt: skip
    print(f"SM2 verify, one core: {result['verify_per_s']:,.0f}/s")
    print(
        f"auth/s = {result['auth_per_s']:,.0f} at c={result['concurrency']}; "
        f"auth/hello = {result['ratio_auth_to_hello']} "
        f"(2 requests per auth: requests/hello = {result['ratio_auth_requests_to_hello']})"
    )
