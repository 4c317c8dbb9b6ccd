"""The ops token's lock-out is shared: N wrong tokens IN TOTAL lock an address, across the two
workers of one ``gateway serve --workers 2`` and across two ``gateway serve`` processes on
different ports sharing one PostgreSQL database, and the same with Redis configured
(issue 14, "what it must show"). Bad limits settings stop ``serve`` at start with a message.

Each request goes on a fresh TCP connection, so the kernel's SO_REUSEPORT hash spreads them
over a replica's workers. Were the count per worker, N wrong tokens split over two workers
would lock nothing (all N land on one worker with probability 2**(1-N), under 1 % here).

The gateways trust 127.0.0.0/8 as a proxy and every request names its client in
X-Forwarded-For: each test locks an address of its own (a lock-out in a shared Redis outlives
the test), and the lock-out is seen to be per client, not per proxy.
"""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgcluster import free_port
from replicakit import Replica

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "ops-itest-token-" + "k" * 32
WRONG = "w" * 40
ALLOWED = 6  # wrong tokens in total before an address is locked
REDIS_URL = "redis://127.0.0.1:6379/0"


def _env(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update(
        {
            "GATEWAY_DB_URL": db_url,
            "GATEWAY_DEMO_WORLD": "off",
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_HUB_URL": "http://127.0.0.1:9",
            "GATEWAY_OPS_TOKEN": TOKEN,
            "GATEWAY_OPS_WRONG_TOKENS_ALLOWED": str(ALLOWED),
            "GATEWAY_OPS_WRONG_TOKEN_REFILL_S": "3600",
            "GATEWAY_TRUSTED_PROXIES": "127.0.0.0/8",
        }
    )
    env.update({f"GATEWAY_{k.upper()}": v for k, v in extra.items()})
    return env


def _client() -> str:
    """An address of this test's own (TEST-NET-2 and -3 are never routed)."""
    return (
        f"198.51.100.{secrets.randbelow(254) + 1}"
        if secrets.randbelow(2)
        else (f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1")
    )


def _ops(port: int, client: str, token: str) -> int:
    """GET /v1/ops/summary on a fresh connection; the HTTP status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "GET",
            "/v1/ops/summary",
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": client},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _start(
    tmp_path: Path, env: dict[str, str], names: tuple[str, ...], workers: int
) -> list[Replica]:
    started = [
        Replica(n, free_port(), tmp_path / f"gw-{n}", tmp_path / f"{n}.log", env, workers=workers)
        for n in names
    ]
    for replica in started:
        replica.spawn()
    for replica in started:
        replica.wait_ready()
    return started


@pytest.fixture
def gateways() -> Iterator[list[Replica]]:
    running: list[Replica] = []
    yield running
    for replica in running:
        replica.kill()


def _assert_locked_after_allowance_in_total(ports: list[int]) -> None:
    client = _client()
    for n in range(ALLOWED - 1):
        assert _ops(ports[n % len(ports)], client, WRONG) == 401
    # One short of the allowance: the right token still passes, everywhere.
    for port in ports:
        assert _ops(port, client, TOKEN) == 200
    assert _ops(ports[-1], client, WRONG) == 401
    # The allowance is spent in total: every worker of every gateway refuses that client now,
    # even with the right token, and nobody else.
    for port in ports:
        for _ in range(4):
            assert _ops(port, client, TOKEN) == 429
        assert _ops(port, _client(), TOKEN) == 200


@pytest.mark.postgres
def test_wrong_tokens_lock_across_two_workers(
    tmp_path: Path, postgres_schema_url: str, gateways: list[Replica]
) -> None:
    gateways += _start(tmp_path, _env(postgres_schema_url), ("one",), workers=2)
    # Two workers (and spawn's resource tracker).
    assert len(gateways[0].worker_pids()) >= 2
    _assert_locked_after_allowance_in_total([gateways[0].port])


@pytest.mark.postgres
def test_wrong_tokens_lock_across_two_processes_sharing_postgresql(
    tmp_path: Path, postgres_schema_url: str, gateways: list[Replica]
) -> None:
    gateways += _start(tmp_path, _env(postgres_schema_url), ("a", "b"), workers=1)
    _assert_locked_after_allowance_in_total([g.port for g in gateways])


@pytest.mark.postgres
@pytest.mark.redis
def test_wrong_tokens_lock_across_processes_and_workers_with_redis(
    tmp_path: Path, postgres_schema_url: str, gateways: list[Replica]
) -> None:
    env = _env(postgres_schema_url, redis_url=REDIS_URL)
    gateways += _start(tmp_path, env, ("a", "b"), workers=2)
    _assert_locked_after_allowance_in_total([g.port for g in gateways])
    # The count is in Redis, not in the database.
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_schema_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
        assert connection.execute("SELECT count(*) FROM guard_buckets").fetchone() == (0,)


# --- bad settings stop `serve` at start ---------------------------------------------------


def _serve(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update({f"GATEWAY_{k.upper()}": v for k, v in settings.items()})
    env["GATEWAY_DEMO_WORLD"] = "off"
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("settings", "exit_code", "needles"),
    [
        (
            {"trusted_proxies": "10.0.0.0/8, 192.168.1.300/24"},
            2,
            ("GATEWAY_TRUSTED_PROXIES", "'192.168.1.300/24' is not a CIDR"),
        ),
        ({"redis_url": "redis//127.0.0.1:6379"}, 2, ("GATEWAY_REDIS_URL", "redis://")),
        ({"redis_url": "redis://127.0.0.1:1/0"}, 1, ("cannot reach Redis at redis_url",)),
    ],
)
def test_bad_limits_settings_stop_serve_at_start(
    tmp_path: Path, settings: dict[str, str], exit_code: int, needles: tuple[str, ...]
) -> None:
    done = _serve(tmp_path, **settings)
    assert done.returncode == exit_code, done.stderr[-3000:]
    for needle in needles:
        assert needle in done.stderr, done.stderr[-3000:]
