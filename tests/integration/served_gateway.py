"""A real ``python -m gateway serve`` for an integration test: a subprocess on a free port with
a temporary data dir and the embedded demo world (institutions, terminals, cards, insured
persons, the door's demo operators), stopped with its process group at the end. The test talks
to it over HTTP only. (A uniquely named module: the test directories share sys.path.)"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


@dataclass
class ServedGateway:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path
    data_dir: Path

    @property
    def db_path(self) -> Path:
        """The embedded SQLite database (gateway.settings: data_dir/gateway.sqlite3)."""
        return self.data_dir / "gateway.sqlite3"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def served_gateway(
    data_dir: Path, *, seed: str, settings: Mapping[str, str] | None = None
) -> Iterator[ServedGateway]:
    """``settings``: extra GATEWAY_* variables, named without the prefix (card_session_ttl_s)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env["GATEWAY_DEMO_SEED"] = seed
    for name, value in (settings or {}).items():
        env["GATEWAY_" + name.upper()] = value
    log_path = data_dir / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir",
             str(data_dir / "var")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {process.returncode}:\n{log_path.read_text()}"
                )
            with contextlib.suppress(OSError):
                if http_get(url + "/readyz")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gateway not ready in {START_TIMEOUT_S} s:\n{log_path.read_text()}"
                )
            time.sleep(0.1)
        yield ServedGateway(process, url, port, log_path, data_dir / "var")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
