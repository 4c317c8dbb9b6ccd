"""haproxy in front of gateway replicas, for the integration tests: write the configuration,
start ``haproxy`` on a free 127.0.0.1 port in the foreground (``-db``), stop it afterwards.

The configuration is the one docs/scale-out.md shows an operator (:func:`gateway_config`;
test_scale_out_haproxy_doc.py checks the page's block is what it writes, so change both):

* ``balance roundrobin`` over the replicas: they share nothing but PostgreSQL, so any replica
  can answer any request (no stickiness);
* health check ``GET /healthz`` every 500 ms, down after 2 failures: a replica whose process
  is gone leaves the rotation within about a second. Not ``/readyz``: that one asks the
  database, which every replica shares, so during a database failover it would take ALL of
  them out together, and terminals would get haproxy's bare 503 instead of the gateway's
  ``DB_UNAVAILABLE`` with its Retry-After;
* ``retries 3`` with ``option redispatch``: a request that could not be CONNECTED to a
  replica goes to another one. Nothing else is retried by haproxy (no ``retry-on`` beyond its
  default ``conn-failure``): a request that reached a replica may have been processed, and
  only the terminal, with its Idempotency-Key, can safely send it again;
* ``on-marked-down shutdown-sessions``: connections to a replica marked down are closed at
  once rather than left to time out;
* ``option forwardfor`` (after deleting any X-Forwarded-For the client sent): the gateway
  sees that a request was relayed, so a replica without ``metrics_token`` does not take the
  proxy's loopback address for a local scraper's (gateway.metrics_access).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pgcluster import CannotStart, free_port

__all__ = ["Haproxy", "gateway_config", "start_haproxy"]

START_TIMEOUT_S = 20.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def gateway_config(port: int, replicas: Sequence[tuple[str, int]]) -> str:
    """haproxy.cfg for a frontend on 127.0.0.1:``port`` over ``replicas`` (name, port)."""
    servers = "\n".join(f"    server {name} 127.0.0.1:{p} check" for name, p in replicas)
    return f"""\
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch

frontend gateway
    bind 127.0.0.1:{port}
    # The client's address for the gateway: its own, not one the client wrote.
    http-request del-header X-Forwarded-For
    option forwardfor
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""


@dataclass
class Haproxy:
    process: subprocess.Popen[bytes]
    port: int
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _answers(url: str) -> bool:
    try:
        with _OPENER.open(url + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def start_haproxy(directory: Path, replicas: Sequence[tuple[str, int]]) -> Iterator[Haproxy]:
    """haproxy over ``replicas`` until the block ends; its config and log in ``directory``.
    Raises CannotStart if haproxy is not installed or does not come up."""
    binary = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if binary is None:
        raise CannotStart("haproxy is not installed (Debian package `haproxy`)")
    port = free_port()
    config_path = directory / "haproxy.cfg"
    config_path.write_text(gateway_config(port, replicas), encoding="utf-8")
    log_path = directory / "haproxy.log"
    check = subprocess.run(
        [binary, "-c", "-q", "-f", str(config_path)], capture_output=True, check=False
    )
    if check.returncode != 0:
        raise CannotStart(f"haproxy refused its configuration: {check.stderr.decode()[-2000:]}")
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proxy = Haproxy(process, port, config_path, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(proxy.url):
            if process.poll() is not None:
                raise CannotStart(f"haproxy exited with {process.returncode}:\n{proxy.log()}")
            if time.monotonic() > deadline:
                raise CannotStart(f"haproxy not answering within {START_TIMEOUT_S} s")
            time.sleep(0.1)
        yield proxy
    finally:
        if process.poll() is None:
            process.terminate()  # SIGTERM: haproxy stops at once (SIGUSR1 would drain)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
