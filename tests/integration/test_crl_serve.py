"""Card revocation end to end: ``gateway serve --workers 2`` authenticates a card; the operator
imports a CRL of the card issuing CA with ``python -m gateway admin crl import``; within
``card_crl_refresh_s`` every worker refuses that card with 403 CARD_CERT_REVOKED, and still
accepts the others. A malformed list is refused by the command and changes nothing.

Embedded SQLite with the demo world (its issuing CA's key follows from the seed, so the demo
CA can sign the list: ``admin crl demo-write``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pgcluster import free_port
from replicakit import SEED, Replica, Terminal, card_answer, challenge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REFRESH_S = 1.0
REVOKED_HOLDER = 0  # demo card 0 (certificate serial 1000)
OTHER_HOLDER = 1


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Replica]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update(
        {
            "GATEWAY_DEMO_SEED": SEED,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_HUB_URL": "http://127.0.0.1:9",
            "GATEWAY_CARD_CRL_REFRESH_S": str(REFRESH_S),
        }
    )
    replica = Replica("crl", free_port(), tmp_path / "var", tmp_path / "gw.log", env, workers=2)
    replica.start()
    try:
        yield replica
    finally:
        replica.kill()


def _admin(replica: Replica, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "admin", "crl", *args],
        env=replica.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _authenticate(url: str, h: int) -> tuple[int, str | None]:
    """One full card authentication on connections of its own (any worker may answer)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        terminal = Terminal(http, url, 0)
        granted = await challenge(terminal, h)
        assert granted.status == 200, granted
        answer = await terminal.request(
            "POST", "/v1/card-auth/response", card_answer(terminal, h, granted.body)
        )
        return answer.status, answer.code


async def test_an_imported_crl_is_enforced_by_every_worker(gateway: Replica, tmp_path: Path):
    url = gateway.url
    assert len(gateway.worker_pids()) >= 2
    assert await _authenticate(url, REVOKED_HOLDER) == (200, None)

    bad = tmp_path / "bad.crl"
    bad.write_bytes(b"\x30\x03\x02\x01\x01")
    refused = _admin(gateway, "import", str(bad), "--data-dir", str(gateway.data_dir))
    assert refused.returncode == 1
    assert "CRL_MALFORMED" in refused.stderr
    assert "Nothing changed" in refused.stderr
    listed = _admin(gateway, "list", "--data-dir", str(gateway.data_dir))
    assert "no CRL imported" in listed.stdout

    crl = tmp_path / "issuing.crl"
    wrote = _admin(
        gateway,
        "demo-write",
        str(crl),
        "--revoke",
        str(2 * REVOKED_HOLDER),
        "--data-dir",
        str(gateway.data_dir),
    )
    assert wrote.returncode == 0, wrote.stderr
    imported = _admin(gateway, "import", str(crl), "--data-dir", str(gateway.data_dir))
    assert imported.returncode == 0, imported.stderr
    assert "1 revoked certificate(s)" in imported.stdout
    started = time.monotonic()

    # Within card_crl_refresh_s (plus a margin for a loaded machine) every worker refuses it.
    deadline = started + REFRESH_S + 10.0
    while True:
        verdicts = [await _authenticate(url, REVOKED_HOLDER) for _ in range(6)]
        if all(v == (403, "CARD_CERT_REVOKED") for v in verdicts):
            break
        assert time.monotonic() < deadline, verdicts
        await asyncio.sleep(0.2)
    # And from then on, always: 24 more answers on fresh connections (were one worker still
    # accepting the card, all 24 would reach the other with probability 2**-23).
    for _ in range(24):
        assert await _authenticate(url, REVOKED_HOLDER) == (403, "CARD_CERT_REVOKED")
    assert await _authenticate(url, OTHER_HOLDER) == (200, None)
