"""`python -m settlement.hub` as a real process, through tests/integration/hubproc.py: --help,
a settle/query/reverse round trip, drop-after-commit seen by an aiohttp client as a
disconnect while 5201 reports it settled, refused connections, and a clean SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hubproc import HubProcess, start_hub

from settlement.crossprov import wire

pytestmark = pytest.mark.integration

PSN_NO = "320000000000042"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    with start_hub(tmp_path, seed="itest-hub") as running:
        yield running


def _settle_payload(mdtrt_id: str = "MDT-I1") -> dict[str, Any]:
    return {
        "psn_no": PSN_NO,
        "mdtrt_id": mdtrt_id,
        "visit_type": "inpatient",
        "hospital_level": 3,
        "visit_date": dt.datetime.now(wire.BEIJING).date().isoformat(),
        "filing_type": "resettled_retiree",
        "lines": [
            {"list_code": "DEMO-A-004", "qty": 5, "pric": "120.00"},
            {"list_code": "DEMO-B-003", "qty": 1, "pric": "35000.00"},
            {"list_code": "DEMO-C-002", "qty": 2, "pric": "300.50"},
        ],
    }


def test_help_documents_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "settlement.hub", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for flag in (
        "--host",
        "--port",
        "--seed",
        "--latency-ms",
        "--drop-ratio",
        "--error-ratio",
        "--fault-seed",
        "--log-level",
        "X-Hub-Fault",
        "/hub/admin/faults",
    ):
        assert flag in result.stdout, flag


def test_settle_query_reverse_round_trip(hub: HubProcess) -> None:
    before = hub.call("1101", {"psn_no": PSN_NO})
    assert before.ok
    envelope = hub.envelope("2304", _settle_payload())
    status, body = hub.post(envelope)
    assert status == 200
    response = wire.parse_response(body, msgid=envelope["msgid"])
    assert response.ok
    setlinfo = response.output["setlinfo"]
    amounts = wire.setlinfo_amounts_fen(setlinfo)
    assert amounts["medfee_sumamt"] == 5 * 12_000 + 3_500_000 + 2 * 30_050
    assert amounts["fulamt_ownpay_amt"] == 2 * 30_050  # class C
    assert amounts["preselfpay_amt"] == 700_000  # 20 % of the class B hip joint

    query = hub.query(envelope["msgid"])
    assert query["status"] == "settled"
    assert query["setlinfo"] == setlinfo
    today = dt.datetime.now(wire.BEIJING).date()
    totals = hub.totals("320000", today, today)
    assert totals["settled"]["count"] == 1
    assert totals["settled"]["medfee_sumamt"] == setlinfo["medfee_sumamt"]

    reversal = hub.reverse(envelope["msgid"], "2304")
    assert reversal.ok
    assert reversal.output["reversed"] is True
    assert hub.query(envelope["msgid"])["status"] == "reversed"
    after = hub.call("1101", {"psn_no": PSN_NO})
    assert after.output["insuinfo"] == before.output["insuinfo"]
    status, body = hub.post(envelope)  # the late original
    assert (status, body["err_code"]) == (200, "MSG_REVERSED")
    totals = hub.totals("320000", today, today)
    assert (totals["settled"]["count"], totals["reversed"]["count"]) == (0, 1)
    assert totals["reversed"]["fund_pay_sumamt"] == setlinfo["fund_pay_sumamt"]


async def test_drop_after_commit_is_a_disconnect_but_settled(hub: HubProcess) -> None:
    hub.set_faults(drop_after_commit_ratio=1.0)
    envelope = hub.envelope("2304", _settle_payload("MDT-DROP"))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(f"{hub.url}/hub/v1/2304", json=envelope) as response:
                await response.read()
    hub.clear_faults()
    query = hub.query(envelope["msgid"])
    assert query["status"] == "settled"
    # The retry with the same msgid gets the same committed answer.
    status, body = hub.post(envelope)
    assert status == 200
    assert body["output"]["setlinfo"] == query["setlinfo"]
    assert '"dropped": true' in hub.log()


def test_5xx_and_latency_switches_from_the_command_line(tmp_path: Path) -> None:
    with start_hub(tmp_path, error_ratio=1.0, latency_ms=1, fault_seed=5) as hub:
        faults = hub.get_faults()
        assert faults["error_5xx_ratio"] == 1.0
        assert (faults["latency_ms"], faults["seed"]) == (1, 5)
        envelope = hub.envelope("2304", _settle_payload("MDT-5XX"))
        status, body = hub.post(envelope)
        assert (status, body["code"]) == (503, "HUB_FAULT_5XX")
        hub.set_faults(error_5xx_ratio=0.0)
        assert hub.query(envelope["msgid"])["status"] == "none"


def test_refused_connections_then_listening_again(hub: HubProcess) -> None:
    answer = hub.set_faults(refuse_connections_s=1.0)
    assert answer["refuse_connections_s"] == 1.0
    with pytest.raises((ConnectionRefusedError, urllib.error.URLError)):
        hub.request("GET", "/hub/admin/healthz", timeout_s=2.0)
    hub.wait_healthy(timeout_s=20.0)
    assert hub.call("1101", {"psn_no": PSN_NO}).ok
    assert hub.process.poll() is None


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    with start_hub(tmp_path) as hub:
        assert hub.call("1101", {"psn_no": PSN_NO}).ok
        assert hub.stop() == 0
        assert hub.stop() == 0  # twice is harmless
        lines = [json.loads(line) for line in hub.log().splitlines() if line.startswith("{")]
        events = [line["event"] for line in lines]
        assert events[-2:] == ["hub stopping", "hub stopped"]
        # The log carries the masked psn_no only.
        assert PSN_NO not in hub.log()
        assert "32***********42" in hub.log()
        with pytest.raises(urllib.error.URLError):
            hub.request("GET", "/hub/admin/healthz", timeout_s=2.0)


def test_sigterm_while_refusing_connections(tmp_path: Path) -> None:
    with start_hub(tmp_path) as hub:
        hub.set_faults(refuse_connections_s=300)
        assert hub.stop(grace_s=20.0) == 0


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "settlement.hub", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_hub_never_leaves_a_process_behind(tmp_path: Path) -> None:
    started: list[HubProcess] = []

    def failing_test() -> None:
        with start_hub(tmp_path) as hub:
            started.append(hub)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_test()
    assert started[0].process.poll() is not None
