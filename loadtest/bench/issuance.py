"""Issuance at programme scale, over HTTP against the real server: N applications (default
100,000) uploaded by employers as CSV, grouped into production batches, and every card made.

``python -m loadtest.bench issuance [--applications N] [--chunk ROWS] [--db URL] [--json]``

1. starts ``python -m gateway serve`` (one worker; embedded SQLite with synchronous=FULL and the
   demo world, or ``--db URL`` with ``GATEWAY_DEMO_WORLD=on``) on a free 127.0.0.1 port. The
   server's clock is today's, so the bench hands it a programme file (setting
   ``issuance_programme_file``) equal to the built-in one but with the employees' window
   around today: the 2019 window is long closed;
2. upload: the N employees as CSV files of ``--chunk`` rows (at most 5,000, the route's row
   limit), each sent by a demo employer terminal (``sscard.demo.demo_issuing_terminal``,
   employers in turn): ``POST /v1/issuance/employer-batches``, one result per row;
3. batch: the demo card centre's terminal groups every collected application into production
   batches (``POST /v1/issuance/batches``: per channel and collection day, at most 10,000);
4. produce: ``POST /v1/issuance/batches/{id}/produce`` for each batch (``--produce-batches``
   limits how many): a new SM2 key pair and certificate per card, then the card is posted.
   Production is an HTTP operation of the card centre's role, not an internal job.

Meanwhile a hospital terminal sends a signed ``/v1/echo`` (whose nonce is a database write)
every 100 ms: its latency during upload and production shows whether issuance holds the one
database writer that settlements share (figures ``probe_*``).

Figures: seconds and rate per phase, and the server's CPU seconds per phase (user + system of
its process group, from /proc: unlike the wall clock, it does not move when other programs
share the cores) with CPU milliseconds per row or card; peak memory as the server's peak RSS
(VmHWM of the gateway processes, from /proc) and the bench's own (``getrusage``). Only HTTP is
used; the request signing is sscard.terminal_auth's, as every terminal's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from loadtest.bench.auth import (
    ECHO_PATH,
    _clean_env,
    _free_port,
    _group_cpu_s,
    _percentile,
    _process,
    _wait_ready,
)
from sscard import demo as sd
from sscard import terminal_auth as ta
from sscard.layout import citizen_id_check_digit

__all__ = ["add_arguments", "run"]

UPLOAD_PATH: Final = "/v1/issuance/employer-batches"
MAX_CSV_ROWS: Final = 5_000  # the route's row limit (issuance.uploads.MAX_UPLOAD_ROWS)
CSV_HEADER: Final = (
    "citizen_id,name,birth_date,gender,area_code,hukou_shanghai,insured_in_shanghai,"
    "salary_banks,bank,photo_source,backup_centre"
)
# One request may run for minutes (a batch of 10,000 cards is made in one transaction).
REQUEST_TIMEOUT_S: Final = 1800.0
PROGRAMME_FILE: Final = (
    Path(__file__).resolve().parents[2] / "issuance" / "config" / "programme_2019.toml"
)
_EMPLOYEE_WINDOW: Final = re.compile(r"(\[cohorts\.employee\][^\[]*?window = )\[[^\]]*\]")
SHANGHAI: Final = dt.timezone(dt.timedelta(hours=8))
# Applicants are registered in Chongming, a district the demo world's 20,000 holders are never
# from, so no generated citizen id can be a demo holder's (whose name would not match).
AREA: Final = "310151"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--applications", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=MAX_CSV_ROWS, help="CSV rows per upload")
    parser.add_argument(
        "--produce-batches", type=int, default=None, help="produce at most this many batches"
    )
    parser.add_argument("--db", default=None, help="database URL (default: embedded SQLite)")
    parser.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED, help="demo world seed")


# -- the applications ---------------------------------------------------------------------------


def _citizen_id(n: int) -> str:
    birth = dt.date(1960, 1, 1) + dt.timedelta(days=n % 7000)
    if n >= 7_000_000:  # 7,000 birth days times 1,000 sequence numbers
        raise ValueError("at most 7,000,000 distinct applicants")
    first17 = f"{AREA}{birth:%Y%m%d}{n // 7000:03d}"
    return first17 + citizen_id_check_digit(first17)


_BACKUP_CENTRE: Final = sd.demo_community_centre("310104").institution_code


def _row(n: int, bank: str) -> str:
    birth = dt.date(1960, 1, 1) + dt.timedelta(days=n % 7000)
    return (
        f"{_citizen_id(n)},员工{n % 100},{birth.isoformat()},{1 + n % 2},{AREA},1,1,"
        f"{bank},,id_card_shared,{_BACKUP_CENTRE}"
    )


def csv_chunk(start: int, stop: int, bank: str) -> bytes:
    """Applicants ``start`` .. ``stop - 1`` as one employer CSV (UTF-8)."""
    return "\n".join([CSV_HEADER, *(_row(n, bank) for n in range(start, stop))]).encode()


def programme_for_today(text: str, today: dt.date) -> str:
    """The programme TOML with the employees' window moved around ``today``."""
    window = f'["{today - dt.timedelta(days=30)}", "{today + dt.timedelta(days=365)}"]'
    moved, count = _EMPLOYEE_WINDOW.subn(lambda m: m.group(1) + window, text)
    if count != 1:
        raise RuntimeError(f"{PROGRAMME_FILE}: no single employee window to move")
    return moved


# -- HTTP ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terminal:
    terminal_id: str
    secret: bytes

    def headers(self, method: str, path: str, body: bytes, content_type: str) -> dict[str, str]:
        return {
            **ta.signed_headers(
                self.secret,
                self.terminal_id,
                method,
                path,
                body,
                timestamp=int(time.time()),
                nonce=secrets.token_hex(16),
            ),
            "Content-Type": content_type,
        }


async def _call(
    http: aiohttp.ClientSession,
    url: str,
    terminal: Terminal,
    path: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    method: str = "POST",
) -> Any:
    headers = terminal.headers(method, path, body, content_type)
    async with http.request(method, url + path, data=body, headers=headers) as response:
        text = await response.text()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {text[:2000]}")
        return json.loads(text)


# -- memory -------------------------------------------------------------------------------------


def _kib(status: str, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


# Processes of the server's group that are not the gateway: the hub simulator the demo world
# starts, and multiprocessing's resource tracker. The workers are spawned processes whose
# command line does not name the gateway, so they are found by their group, not their name.
_NOT_GATEWAY: Final = (b"settlement.hub", b"resource_tracker")


def _group_processes(pgid: int) -> Iterator[tuple[int, str]]:
    """(pid, /proc/<pid>/status) of the gateway's processes: supervisor and workers."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            # Field 5 is the process group; the command may hold spaces: split after ")".
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            command = (entry / "cmdline").read_bytes()
            if any(name in command for name in _NOT_GATEWAY):
                continue
            yield int(entry.name), (entry / "status").read_text()


def server_peak_rss_mib(pgid: int) -> float:
    """The largest peak RSS (VmHWM) among the gateway's processes (with one worker: the
    worker's), in MiB."""
    peaks = [_kib(status, "VmHWM") for _, status in _group_processes(pgid)]
    return round(max(peaks, default=0) / 1024, 1)


def _bench_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        rss //= 1024
    return round(rss / 1024, 1)


# -- the writer probe ---------------------------------------------------------------------------

PROBE_INTERVAL_S: Final = 0.1


class WriterProbe:
    """A hospital terminal's signed echo every PROBE_INTERVAL_S; latencies per phase (ms)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, terminal: Terminal) -> None:
        self.http, self.url, self.terminal = http, url, terminal
        self.phase = "start"
        self.latencies_ms: dict[str, list[float]] = {}
        self.failures = 0

    async def run(self) -> None:
        body = json.dumps({"message": "probe"}).encode()
        while True:
            phase, started = self.phase, time.perf_counter()
            try:
                await _call(self.http, self.url, self.terminal, ECHO_PATH, body)
            except (RuntimeError, aiohttp.ClientError, TimeoutError):
                self.failures += 1
            else:
                elapsed_ms = 1000 * (time.perf_counter() - started)
                self.latencies_ms.setdefault(phase, []).append(elapsed_ms)
            await asyncio.sleep(PROBE_INTERVAL_S)

    def figures(self, phase: str) -> dict[str, Any]:
        values = self.latencies_ms.get(phase, [])
        p99 = _percentile(values, 99)
        return {
            "probe_count": len(values),
            "probe_p99_ms": None if p99 is None else round(p99, 1),
            "probe_max_ms": round(max(values), 1) if values else None,
        }


# -- the run ------------------------------------------------------------------------------------


async def _drive(
    url: str, args: argparse.Namespace, gateway: subprocess.Popen[bytes], log_path: Path
) -> dict[str, Any]:
    await _wait_ready(url + "/readyz", gateway, log_path)
    employers = [
        (Terminal(*sd.demo_issuing_terminal(args.seed, "employer", 2 * i)), issuer.bank_code)
        for i, issuer in enumerate(sd.demo_issuers("employer"))
    ]
    centre = Terminal(*sd.demo_issuing_terminal(args.seed, "card_centre", 0))
    figures: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        probe = WriterProbe(http, url, Terminal(*ta.demo_terminal(args.seed, 0)))
        probing = asyncio.create_task(probe.run())
        try:
            await _phases(http, url, args, gateway, employers, centre, probe, figures)
        finally:
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing
        for phase in ("upload", "batch", "produce"):
            figures[phase].update(probe.figures(phase))
        figures["probe_failures"] = probe.failures
    return figures


async def _phases(  # noqa: PLR0917 - one run's shared state, passed once
    http: aiohttp.ClientSession,
    url: str,
    args: argparse.Namespace,
    gateway: subprocess.Popen[bytes],
    employers: list[tuple[Terminal, str | None]],
    centre: Terminal,
    probe: WriterProbe,
    figures: dict[str, Any],
) -> None:
    count, chunk = int(args.applications), int(args.chunk)
    probe.phase = "upload"
    cpu = _group_cpu_s(gateway.pid)
    started, accepted, rejected = time.perf_counter(), 0, 0
    for number, start in enumerate(range(0, count, chunk)):
        terminal, bank = employers[number % len(employers)]
        body = csv_chunk(start, min(count, start + chunk), bank or "ICBC")
        result = await _call(http, url, terminal, UPLOAD_PATH, body, content_type="text/csv")
        accepted, rejected = accepted + result["accepted"], rejected + result["rejected"]
        if result["rejected"]:
            first = next(r for r in result["rows"] if not r["accepted"])
            raise RuntimeError(f"upload refused rows, first: {first}")
    figures["upload"], cpu = _phase(started, count, cpu, gateway.pid)
    figures["upload"].update(accepted=accepted, uploads=number + 1)
    figures["server_rss_after_upload_mib"] = server_peak_rss_mib(gateway.pid)

    probe.phase = "batch"
    started = time.perf_counter()
    batches = (await _call(http, url, centre, "/v1/issuance/batches", b"{}"))["batch_ids"]
    figures["batch"], cpu = _phase(started, count, cpu, gateway.pid)

    probe.phase = "produce"
    started, produced = time.perf_counter(), 0
    for batch_id in batches[: args.produce_batches]:
        path = f"/v1/issuance/batches/{batch_id}/produce"
        report = await _call(http, url, centre, path, b"{}")
        produced += report["by_stage"].get("mailed", 0)
    figures["produce"], cpu = _phase(started, produced, cpu, gateway.pid)
    probe.phase = "end"
    figures["server_peak_rss_mib"] = server_peak_rss_mib(gateway.pid)
    day = dt.datetime.now(SHANGHAI).date().isoformat()
    stats_path = f"/v1/issuance/stats?date={day}"
    stats = await _call(http, url, centre, stats_path, b"", method="GET")
    figures.update(
        applications=accepted,
        rejected=rejected,
        batches=len(batches),
        produced=produced,
        stats_cards=stats["cards_cumulative"],
    )


def _phase(
    started: float, items: int, cpu_before: float | None, pgid: int
) -> tuple[dict[str, Any], float | None]:
    """The phase's figures, and the server's CPU seconds so far (the next phase's start)."""
    seconds = time.perf_counter() - started
    rate = round(items / seconds, 1) if seconds > 0 and items else 0.0
    cpu_now = _group_cpu_s(pgid)
    figures: dict[str, Any] = {"seconds": round(seconds, 2), "per_second": rate}
    if cpu_before is not None and cpu_now is not None:
        figures["server_cpu_s"] = round(cpu_now - cpu_before, 2)
        if items:
            figures["server_cpu_ms_per_item"] = round(1000 * (cpu_now - cpu_before) / items, 3)
    return figures, cpu_now


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.applications < 1 or not 1 <= args.chunk <= MAX_CSV_ROWS:
        raise SystemExit(f"--applications must be positive, --chunk 1..{MAX_CSV_ROWS}")
    with tempfile.TemporaryDirectory(prefix="bench-issuance-") as tmp:
        tmp_path = Path(tmp)
        programme = tmp_path / "programme.toml"
        today = dt.datetime.now(SHANGHAI).date()
        programme.write_text(programme_for_today(PROGRAMME_FILE.read_text("utf-8"), today))
        env = _clean_env()
        env.update(GATEWAY_DEMO_SEED=args.seed, GATEWAY_ISSUANCE_PROGRAMME_FILE=str(programme))
        port, log_path = _free_port(), tmp_path / "gateway.log"
        argv = [sys.executable, "-m", "gateway", "serve", "--workers", "1", "--port", str(port),
                "--data-dir", str(tmp_path / "var")]  # fmt: skip
        if args.db:
            argv += ["--db", args.db]
            env["GATEWAY_DEMO_WORLD"] = "on"
        started = time.perf_counter()
        with _process(argv, log_path, env) as gateway:
            figures = asyncio.run(_drive(f"http://127.0.0.1:{port}", args, gateway, log_path))
        total_s = round(time.perf_counter() - started, 2)
    result = {
        "bench": "issuance",
        "transport": "http",
        "chunk_rows": int(args.chunk),
        **figures,
        "total_seconds_with_server_start": total_s,
        "bench_peak_rss_mib": _bench_rss_mib(),
    }
    _print_report(result)
    return result


def _cpu(phase: dict[str, Any], unit: str) -> str:
    per = phase.get("server_cpu_ms_per_item")
    return "" if per is None else f"  server CPU {phase['server_cpu_s']} s = {per} ms/{unit}"


def _print_report(r: dict[str, Any]) -> None:
    print(
        f"issuance over HTTP: {r['applications']} applications in {r['upload']['uploads']} CSV "
        f"uploads of <= {r['chunk_rows']} rows\n"
        f"  upload   {r['upload']['seconds']:9.2f} s  {r['upload']['per_second']:9.1f} rows/s"
        f"{_cpu(r['upload'], 'row')}\n"
        f"  batch    {r['batch']['seconds']:9.2f} s  -> {r['batches']} production batches"
        f"{_cpu(r['batch'], 'application')}\n"
        f"  produce  {r['produce']['seconds']:9.2f} s  {r['produce']['per_second']:9.1f} cards/s"
        f"{_cpu(r['produce'], 'card')}\n"
        f"           ({r['produced']} cards: a new SM2 key + certificate each, then posted)\n"
        f"  peak RSS: server {r['server_peak_rss_mib']} MiB (after upload "
        f"{r['server_rss_after_upload_mib']} MiB), bench {r['bench_peak_rss_mib']} MiB\n"
        "  a hospital's signed echo meanwhile (ms, p99/max): "
        + ", ".join(
            f"{phase} {r[phase]['probe_p99_ms']}/{r[phase]['probe_max_ms']}"
            for phase in ("upload", "batch", "produce")
        ),
        flush=True,
    )
