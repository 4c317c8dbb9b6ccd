"""The embedded default hub: ``python -m settlement.hub`` as a child of ``gateway serve``.

With no ``hub_url`` configured and the demo world on, the supervisor starts the simulator on a
free 127.0.0.1 port before any worker, waits for its ``/hub/admin/healthz``, hands the URL to
the workers and stops it (SIGTERM, then SIGKILL) after them. Imports nothing that imports
prometheus_client (the supervisor must not, see gateway.metrics).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Final

from gateway.logs import fields
from gateway.settings import Settings

__all__ = ["embedded_hub"]

log = logging.getLogger("gateway.crossprov")

START_TIMEOUT_S: Final = 30.0
STOP_GRACE_S: Final = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/hub/admin/healthz", timeout=1.0) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def embedded_hub(settings: Settings) -> Iterator[str | None]:
    """Yield the URL of a hub simulator started for this gateway, or None (a hub is
    configured, or the demo world is off: nothing to start)."""
    if settings.hub_url or not settings.should_load_demo_world():
        yield None
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = settings.data_dir / "hub.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "settlement.hub", "--host", "127.0.0.1", "--port", str(port)),
                *("--seed", settings.demo_seed),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded hub simulator did not start; see {log_path}")
            time.sleep(0.05)
        log.warning(
            "DEMO hub simulator started (no hub_url configured)",
            extra=fields(hub_url=url, hub_pid=process.pid),
        )
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_GRACE_S)
