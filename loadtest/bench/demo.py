"""The demo world's load: `gateway serve` started on an empty data directory (migrations plus
the whole demo world: 1,200 institutions, 2,400 terminals, 20,000 holders with 38,000 cards and
their insured persons) against the same start on the directory it has just filled (migrations
checked, nothing loaded).

The figure that decides is ``ratio_first_start_to_restart``, measured in one run: the load's
cost in units of a plain start on the same machine. (These speeds were once asserted in unit
tests as wall-clock bounds; the tests now assert the load's behaviour and its statement
counts, and the time lives here.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.bench.auth import _clean_env, _free_port, _process, _wait_ready

SEED = "bench-demo-seed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--starts", type=int, default=1, help="restarts measured (median taken)")


def _time_to_ready(data_dir: Path, log_path: Path) -> float:
    port = _free_port()
    env = _clean_env()
    env["GATEWAY_DEMO_SEED"] = SEED
    argv = [sys.executable, "-m", "gateway", "serve", "--workers", "1", "--port", str(port),
            "--data-dir", str(data_dir)]  # fmt: skip
    started = time.perf_counter()
    with _process(argv, log_path, env) as process:
        asyncio.run(_wait_ready(f"http://127.0.0.1:{port}/readyz", process, log_path))
        return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        root = Path(tmp)
        first_s = _time_to_ready(root / "var", root / "first.log")
        restarts = sorted(
            _time_to_ready(root / "var", root / f"restart-{n}.log")
            for n in range(max(1, args.starts))
        )
    restart_s = restarts[len(restarts) // 2]
    result = {
        "first_start_s": round(first_s, 3),
        "restart_s": round(restart_s, 3),
        "demo_load_s": round(first_s - restart_s, 3),
        "ratio_first_start_to_restart": round(first_s / restart_s, 2),
    }
    print(
        f"first start (demo world loaded) {first_s:.2f} s, restart {restart_s:.2f} s: "
        f"the load costs {first_s - restart_s:.2f} s, "
        f"{result['ratio_first_start_to_restart']}x a plain start"
    )
    return result
