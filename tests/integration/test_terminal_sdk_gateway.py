"""terminal_sdk against a real ``python -m gateway serve`` (subprocess, free port, temp data dir):
the ``demo`` CLI with the in-memory reader and through pcscd + vpcd, and a card pulled out in
the middle of a settlement whose answer is lost: after reinsertion the same Idempotency-Key
brings back the one settlement that happened.

Settlement parts run when the gateway serves the Settlement API (its OpenAPI lists
``/v1/settlements``); otherwise the demo must authenticate and then exit 3 saying settlement is
unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cikit import fail_or_skip
from pcscd import PcscdUnavailable, pcscd_with_vpcd

from sscard import demo as sd
from sscard.terminal_auth import demo_terminal
from terminal_sdk import (
    CardRemoved,
    Claim,
    FeeLine,
    GatewayClient,
    MemoryReader,
    OutcomeUnknown,
    RetryPolicy,
    SocialSecurityCard,
    inpatient_admission,
    inpatient_discharge,
    pharmacy_purchase,
    recover_settlement,
)
from terminal_sdk.demo import demo_software_card

pytestmark = pytest.mark.integration

SEED = "terminal-sdk-itest"
START_TIMEOUT_S = 90.0
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    settlement: bool

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, module_serve_db_env: dict[str, str]
) -> Iterator[Gateway]:
    """One gateway for the module, on SQLite and then on PostgreSQL."""
    tmp = tmp_path_factory.mktemp("gateway")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env["GATEWAY_DEMO_SEED"] = SEED
    env.update(module_serve_db_env)
    log_path = tmp / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir",
             str(tmp / "var")],
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
                pytest.fail(f"gateway exited with {process.returncode}:\n{log_path.read_text()}")
            with contextlib.suppress(OSError):
                if _get(url + "/readyz")[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"gateway not ready in {START_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.1)
        paths = json.loads(_get(url + "/openapi.json")[1]).get("paths", {})
        yield Gateway(process, url, log_path, settlement="/v1/settlements" in paths)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "terminal_sdk", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def _check_demo(gateway: Gateway, result: subprocess.CompletedProcess[str]) -> None:
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\ngateway:\n{gateway.log()}"
    assert "card authenticated" in result.stdout, report
    # `demo` exits 0 only when the visit settled and it printed the receipt.
    assert gateway.settlement, report
    assert result.returncode == 0, report
    assert "结算单 Settlement receipt" in result.stdout, report
    assert "个人现金支出 / Patient pays in cash: ¥" in result.stdout, report


# Demo card 0: holder 0's third-generation card (active). The legacy card: the first one the
# registry still has active (holders with h % 10 in {5, 8}, sscard.demo's table).
LEGACY_CARD = sd.find_demo_cards(SEED, generation=2, state=sd.ACTIVE)[0].number


@pytest.mark.parametrize("card", [0, LEGACY_CARD], ids=["third-generation", "legacy"])
def test_demo_with_the_memory_reader(gateway: Gateway, card: int) -> None:
    result = _cli(
        "demo", "--gateway", gateway.url, "--reader", "memory", "--terminal", "5",
        "--card", str(card), "--seed", SEED,
    )  # fmt: skip
    _check_demo(gateway, result)


def test_demo_through_pcscd_and_vpcd(gateway: Gateway) -> None:
    try:
        with pcscd_with_vpcd() as session:
            assert session.readers
            # The CLI claims a free vpcd slot itself (the same lock files as the tests use).
            result = _cli(
                "demo", "--gateway", gateway.url, "--reader", "pcsc", "--terminal", "6",
                "--card", "2", "--seed", SEED,
            )  # fmt: skip
    except PcscdUnavailable as exc:
        fail_or_skip(f"pcscd with vpcd is not available here: {exc}")
    assert "FALLING BACK" not in result.stderr, result.stderr
    assert "via pcscd and vpcd" in result.stdout, result.stdout
    _check_demo(gateway, result)


# -- docs/integration-guide.md: every Python block runs ------------------------------------------

GUIDE = ROOT / "docs" / "integration-guide.md"
GUIDE_BLOCKS = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), re.M | re.S)


def test_the_guide_has_runnable_examples() -> None:
    assert len(GUIDE_BLOCKS) >= 4


@pytest.mark.parametrize("number", range(len(GUIDE_BLOCKS)), ids=lambda n: f"block{n + 1}")
def test_guide_example_runs(gateway: Gateway, number: int) -> None:
    assert gateway.settlement, "the gateway must serve the Settlement API"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSC_")}
    env |= {"SSC_GATEWAY_URL": gateway.url, "SSC_DEMO_SEED": SEED}
    result = subprocess.run(
        [sys.executable, "-c", GUIDE_BLOCKS[number]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, (
        f"block {number + 1} of {GUIDE.name} failed:\n{result.stdout}\n{result.stderr}\n"
        f"gateway:\n{gateway.log()}"
    )


# -- a card pulled out mid-settlement, the answer lost --------------------------------------------


class LossyProxy:
    """A TCP proxy in front of the gateway that, while ``lose_answers`` is set, forwards the
    request and the gateway's answer's arrival but cuts the connection instead of passing the
    answer on: the settlement happens, the terminal never hears of it."""

    def __init__(self, upstream_port: int, on_lost: Callable[[], object] | None = None) -> None:
        self.upstream_port = upstream_port
        self.lose_answers = False
        self.on_lost = on_lost
        self.lost = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump_requests() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
            up_writer.close()

        requests = asyncio.create_task(pump_requests())
        try:
            while data := await up_reader.read(65536):
                if self.lose_answers:
                    self.lost += 1
                    if self.on_lost is not None:
                        self.on_lost()
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            requests.cancel()
            writer.close()
            up_writer.close()


@pytest.fixture
async def demo_reader() -> AsyncIterator[MemoryReader]:
    reader = MemoryReader()
    yield reader
    reader.close()


async def test_card_pulled_mid_settlement_outcome_known_after_reinsertion(
    gateway: Gateway, demo_reader: MemoryReader
) -> None:
    assert gateway.settlement, "the gateway must serve the Settlement API"
    number = 4  # holder 2: third-generation card active
    demo_reader.insert(demo_software_card(SEED, number))
    card = SocialSecurityCard.connect(demo_reader)
    terminal_id, secret = demo_terminal(SEED, 7)
    upstream = int(gateway.url.rsplit(":", 1)[1])
    proxy = LossyProxy(upstream, on_lost=demo_reader.remove)
    url = await proxy.start()
    claim = Claim("outpatient", dt.date.today().isoformat(), (FeeLine("DEMO-A-002", 1, 2500),))

    async def no_wait(_: float) -> None:
        return None

    try:
        async with GatewayClient(
            url, terminal_id, secret, retry=RetryPolicy(max_attempts=2), sleep=no_wait
        ) as client:
            session = await client.authenticate_card(card)
            proxy.lose_answers = True  # the clerk pulls the card; the answer is lost
            with pytest.raises(OutcomeUnknown) as unknown:
                await client.settle(session, claim)
            assert proxy.lost == 2  # both attempts reached the gateway, same key
            pending = unknown.value.pending
            assert pending is not None
            with pytest.raises(CardRemoved):
                card.check_present()

            proxy.lose_answers = False
            demo_reader.insert(demo_software_card(SEED, number))
            reinserted = SocialSecurityCard.connect(demo_reader)
            # A fresh card session: the reinserted card authenticates again.
            receipt = await recover_settlement(client, pending, reinserted)
            assert receipt.setl_id is not None
            again = await client.get_settlement(receipt.setl_id)
            assert again.setl_id == receipt.setl_id
            # The gateway files a settlement under its day in Shanghai (UTC+8).
            assert again.setl_time is not None
            shanghai = dt.timezone(dt.timedelta(hours=8))
            day = dt.datetime.fromisoformat(again.setl_time).astimezone(shanghai).date()
            today = await client.list_settlements(day.isoformat())
            mine = [r for r in today if r.raw.get("psn_no") == again.raw.get("psn_no")]
            assert [r.setl_id for r in mine] == [receipt.setl_id]  # settled once, not twice
    finally:
        await proxy.stop()


async def test_inpatient_stay_and_pharmacy_purchase(
    gateway: Gateway, demo_reader: MemoryReader
) -> None:
    assert gateway.settlement, "the gateway must serve the Settlement API"
    active = sd.find_demo_cards(SEED, generation=3, state=sd.ACTIVE, start=40)[0]
    demo_reader.insert(demo_software_card(SEED, active.number))
    card = SocialSecurityCard.connect(demo_reader)
    hospital = demo_terminal(SEED, 9)
    async with GatewayClient(gateway.url, *hospital) as client:
        admitted_on = (dt.date.today() - dt.timedelta(days=3)).isoformat()
        admission_id = await inpatient_admission(
            client, card, admission_date=admitted_on, pin=sd.DEMO_PIN
        )
        await client.upload_fee_lines(admission_id, [FeeLine("DEMO-A-004", 3, 6000)])
        receipt = await inpatient_discharge(
            client,
            card,
            admission_id,
            lines=[FeeLine("DEMO-A-003", 1, 3200)],
            discharge_date=dt.date.today().isoformat(),
        )
    assert receipt.setl_id is not None
    assert receipt.medfee_sumamt == 3 * 6000 + 3200
    assert receipt.visit_type == "inpatient"

    pharmacy = demo_terminal(SEED, 805)  # terminals 800.. belong to pharmacies
    async with GatewayClient(gateway.url, *pharmacy) as client:
        visit = await pharmacy_purchase(client, card, [FeeLine("DEMO-B-001", 1, 4600)])
    assert visit.receipt.medfee_sumamt == 4600
    assert visit.receipt.visit_type == "pharmacy"
