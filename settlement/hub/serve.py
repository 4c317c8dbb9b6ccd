"""The simulator's command line: parse flags, configure logging, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from settlement.hub.app import create_app, start_listener
from settlement.hub.faults import FaultSpecInvalid, FaultSwitches
from sscard.masking import mask_fields, mask_text

__all__ = ["JsonLines", "main", "parser"]

DESCRIPTION = """\
National cross-province hub simulator (docs/cross-province.md). NOT a production service.

Serves POST /hub/v1/{infno} (1101 person info; 2207/2102/2304 settle; 2208/2103/2305 cancel;
2601 reversal; 5201 query; 3201 totals; 3202 detail), GET /hub/admin/healthz, and
GET/PUT /hub/admin/faults. State lives in memory and is lost on exit. Persons of the served
provinces (110000 320000 330000 340000 440000 510000) are derived from --seed and the psn_no
(two province digits + 13 digits).

Faults at run time: PUT /hub/admin/faults {"latency_ms", "drop_after_commit_ratio",
"error_5xx_ratio", "refuse_connections_s", "seed"}; per request: header
X-Hub-Fault: drop | 5xx | latency=<ms>.
"""


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m settlement.hub",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--port", type=int, default=8090, help="TCP port, 0 for any free one (default: %(default)s)"
    )
    p.add_argument(
        "--seed",
        default="ssc-demo-2019",
        help="derives every remote person's birth date, retired flag and opening balances "
        "(default: %(default)s, the demo world's seed)",
    )
    p.add_argument(
        "--latency-ms",
        type=int,
        default=0,
        help="sleep this long before processing each call (default: %(default)s)",
    )
    p.add_argument(
        "--drop-ratio",
        type=_ratio,
        default=0.0,
        help="share of calls committed and then dropped with no response, 0..1 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--error-ratio",
        type=_ratio,
        default=0.0,
        help="share of calls answered 503 without being processed, 0..1 (default: %(default)s)",
    )
    p.add_argument(
        "--fault-seed",
        type=int,
        default=0,
        help="seed of the fault RNG, so the same calls meet the same faults (default: %(default)s)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="JSON log lines to stderr at this level; psn_no is masked (default: %(default)s)",
    )
    return p


class JsonLines(logging.Formatter):
    """The hub's log line: one JSON object, its fields (``extra={"hub": {...}}``) and text masked
    by the project's one rule (:mod:`sscard.masking`), as the gateway's are: a simulator's
    persons are made up, but its log is read by the same people and tools."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": mask_text(record.getMessage()),
        }
        line.update(mask_fields(getattr(record, "hub", {})))
        if record.exc_info:
            line["traceback"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print request lines; ours carries the fields we chose.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _serve(args: argparse.Namespace, faults: FaultSwitches) -> None:
    log = logging.getLogger("settlement.hub")
    app = create_app(seed=args.seed, faults=faults)
    listener = await start_listener(app, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "hub listening",
        extra={"hub": {"url": listener.url, "seed_set": bool(args.seed), **app_faults(faults)}},
    )
    try:
        await stop.wait()
    finally:
        log.info("hub stopping")
        await listener.shutdown()
        log.info("hub stopped")


def app_faults(faults: FaultSwitches) -> dict[str, Any]:
    return {
        "latency_ms": faults.latency_ms,
        "drop_after_commit_ratio": faults.drop_after_commit_ratio,
        "error_5xx_ratio": faults.error_5xx_ratio,
        "fault_seed": faults.seed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        faults = FaultSwitches(
            latency_ms=args.latency_ms,
            drop_after_commit_ratio=args.drop_ratio,
            error_5xx_ratio=args.error_ratio,
            seed=args.fault_seed,
        )
    except FaultSpecInvalid as exc:
        parser().error(str(exc))
    _configure_logging(args.log_level)
    try:
        asyncio.run(_serve(args, faults))
    except OSError as exc:  # the port is taken or the address is not ours: say so, briefly
        logging.getLogger("settlement.hub").error(
            "cannot listen",
            extra={"hub": {"host": args.host, "port": args.port, "error": str(exc)}},
        )
        return 1
    return 0
