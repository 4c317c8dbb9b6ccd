"""``settle --door fsi``: the bench's envelopes, its arithmetic (best of each door, the ratios)
and the shape of its report; values are not judged (this machine's speed is not under test)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from loadtest.bench import auth
from loadtest.bench.fsi_door import (
    FSI_PATH,
    EnvelopePost,
    FsiDoor,
    FsiTill,
    door_figures,
    measure_doors,
    pharmacy_input,
    pharmacy_terminal,
    refusal_code,
)
from loadtest.bench.lean_http import LeanHttpClient
from loadtest.bench.settle import LINES
from sscard import demo as sd

TILL = FsiTill("P31000000001", "P31000000001-01", "SIGN0001", "A" * 32)


def _parse(request: bytes) -> tuple[str, dict[str, str], dict[str, Any]]:
    head, sep, body = request.partition(b"\r\n\r\n")
    assert sep
    request_line, *lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert int(headers["Content-Length"]) == len(body)
    parsed: dict[str, Any] = json.loads(body)
    return request_line, headers, parsed


def test_the_pharmacy_input_is_the_v1_visits_lines_in_yuan() -> None:
    data = pharmacy_input(TILL.card_sn, LINES)["data"]
    assert data["mdtrt_cert_type"] == "03"
    assert data["card_sn"] == TILL.card_sn
    assert [(line["med_list_codg"], line["cnt"], line["pric"]) for line in data["feedetail"]] == [
        ("DEMO-A-002", 1, "25.00"),
        ("DEMO-B-001", 2, "30.00"),
    ]
    assert data["medfee_sumamt"] == "85.00"  # 1 x 25.00 + 2 x 30.00, to the fen


def test_pharmacy_terminals_belong_to_demo_pharmacies() -> None:
    code, terminal_id, secret = pharmacy_terminal(sd.DEFAULT_DEMO_SEED, 0)
    assert code == "P31000000001"
    assert terminal_id.startswith(code + "-")
    assert len(secret) > 0
    last = pharmacy_terminal(sd.DEFAULT_DEMO_SEED, 1599)
    assert last[0] == "P31000000800"
    assert pharmacy_terminal(sd.DEFAULT_DEMO_SEED, 1600)[1] == terminal_id  # wraps around


def test_each_built_envelope_is_a_complete_request_with_its_msgid_and_inf_time() -> None:
    post = EnvelopePost("127.0.0.1:8000", TILL, "2102", pharmacy_input(TILL.card_sn, LINES))
    first = _parse(post.build("RUN1F000000000001", "2027-01-15 09:00:00"))
    second = _parse(post.build("RUN1F000000000002", "2027-01-15 09:00:01"))
    request_line, headers, env = first
    assert request_line == f"POST {FSI_PATH} HTTP/1.1"
    assert headers["Host"] == "127.0.0.1:8000"
    assert headers["Content-Type"] == "application/json"
    assert env["infno"] == "2102"
    assert env["msgid"] == "RUN1F000000000001"
    assert env["inf_time"] == "2027-01-15 09:00:00"
    assert (env["fixmedins_code"], env["dev_no"], env["sign_no"]) == (
        TILL.fixmedins_code,
        TILL.dev_no,
        TILL.sign_no,
    )
    assert env["input"] == pharmacy_input(TILL.card_sn, LINES)
    assert second[2]["msgid"] == "RUN1F000000000002"
    assert second[2]["inf_time"] == "2027-01-15 09:00:01"


def test_msgids_fit_the_envelope_and_differ_per_kind_and_number() -> None:
    door = FsiDoor("127.0.0.1", 1, "ab12cd34", LINES)
    ids = {door.msgid(kind, i) for kind in "PF" for i in (0, 1, 10**11)}
    assert len(ids) == 6
    assert all(len(msgid) <= 30 and msgid.isalnum() for msgid in ids)


def test_a_refusal_is_counted_by_its_err_msg_code() -> None:
    assert refusal_code(b'{"infcode":-1,"err_msg":"[FSI_CARD_NOT_PRESENT] x"}') == (
        "FSI_CARD_NOT_PRESENT"
    )
    assert refusal_code(b"<html>") == "FSI_NOT_JSON"
    assert refusal_code(b'{"infcode":-1,"err_msg":null}') == "FSI_UNREADABLE"


def _phase(concurrency: int, ok: int, elapsed_s: float, server_cpu_s: float) -> auth.Phase:
    phase = auth.Phase(concurrency, ok=ok, elapsed_s=elapsed_s, server_cpu_s=server_cpu_s)
    phase.latencies_ms = [10.0] * ok
    return phase


def test_door_figures_take_each_doors_best_and_divide() -> None:
    v1 = [_phase(16, 200, 2.0, 0.4), _phase(32, 300, 2.0, 0.6)]  # 100/s, 150/s
    fsi = [_phase(16, 270, 2.0, 0.81), _phase(32, 240, 2.0, 0.6)]  # 135/s, 120/s
    figures = door_figures(v1, fsi)
    assert figures["v1"]["settle_per_s"] == 150.0
    assert figures["v1"]["concurrency"] == 32
    assert figures["fsi"]["settle_per_s"] == 135.0
    assert figures["fsi"]["concurrency"] == 16
    assert figures["ratio_fsi_to_v1"] == 0.9  # 135 / 150
    assert figures["v1"]["server_cpu_ms_per_settlement"] == 2.0  # 0.6 s / 300
    assert figures["fsi"]["server_cpu_ms_per_settlement"] == 3.0  # 0.81 s / 270
    assert figures["server_cpu_ratio_fsi_to_v1"] == 1.5
    assert [p["per_s"] for p in figures["fsi"]["by_concurrency"]] == [135.0, 120.0]
    for side in ("v1", "fsi"):
        assert set(figures[side]) >= {"errors", "p50_ms", "p99_ms", "client_cpu_ms_per_settlement"}


def test_door_figures_without_a_rate_have_no_ratio() -> None:
    figures = door_figures([_phase(16, 0, 2.0, 0.1)], [_phase(16, 5, 2.0, 0.1)])
    assert figures["ratio_fsi_to_v1"] is None
    assert figures["server_cpu_ratio_fsi_to_v1"] is None
    with pytest.raises(ValueError, match="both doors"):
        door_figures([], [_phase(16, 5, 2.0, 0.1)])


async def test_both_doors_run_at_every_concurrency_in_alternating_order() -> None:
    order: list[tuple[str, int]] = []  # which door ran first in each pool the bench opened
    pools: list[int] = []

    def op(name: str) -> Any:
        async def call(i: int) -> None:
            if len(order) < len(pools):
                order.append((name, pools[-1]))

        return call

    class Pool:
        def __init__(self, limit: int) -> None:
            pools.append(limit)

        async def __aenter__(self) -> None:
            return None

        async def __aexit__(self, *exc: object) -> None:
            return None

    figures = await measure_doors(
        v1=op("v1"),
        fsi=op("fsi"),
        pool=Pool,
        concurrencies=[2, 4],
        seconds=0.02,
        server_pgid=None,
    )
    assert order == [
        *(("v1", 2), ("fsi", 2), ("fsi", 2), ("v1", 2)),
        *(("v1", 4), ("fsi", 4), ("fsi", 4), ("v1", 4)),
    ]
    assert [p["concurrency"] for p in figures["v1"]["by_concurrency"]] == [2, 2, 4, 4]
    assert [p["concurrency"] for p in figures["fsi"]["by_concurrency"]] == [2, 2, 4, 4]


class _DoorLike:
    """Answers envelopes as the door does (HTTP 200, infcode first), from a script."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        env = await request.json()
        self.seen.append(env)
        if env["infno"] == "9001":
            output = {"signinoutb": {"sign_no": "S" * 24, "sign_time": ""}}
            return web.json_response({"infcode": 0, "output": output}, dumps=_compact)
        code = self.script.pop(0) if self.script else ""
        if code:
            body = {"infcode": -1, "err_msg": f"[{code}] no", "output": {}}
        else:
            body = {"infcode": 0, "output": {"setlinfo": {}}}
        return web.json_response(body, dumps=_compact)


def auth_client(port: int) -> LeanHttpClient:
    return LeanHttpClient("127.0.0.1", port, limit=1, timeout_s=auth.REQUEST_TIMEOUT_S)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def test_settlements_are_2101_then_2102_and_refusals_are_counted_by_code() -> None:
    door_like = _DoorLike(["", "", "FSI_CARD_NOT_PRESENT", "", "FSI_MSGID_REUSED"])
    app = web.Application()
    app.router.add_post(FSI_PATH, door_like.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        assert server.port is not None
        door = FsiDoor("127.0.0.1", server.port, "run1", LINES)
        async with auth_client(server.port) as client:
            door.client = client
            till = await door.sign_in(TILL.fixmedins_code, TILL.dev_no, TILL.card_sn)
            phase = await auth.closed_loop(door.settlement, 1, 600, limit=3)
    assert till.sign_no == "S" * 24
    assert phase.ok == 1
    assert phase.errors == Counter({"PRE_FSI_CARD_NOT_PRESENT": 1, "FSI_MSGID_REUSED": 1})
    sent = [(env["infno"], env["msgid"]) for env in door_like.seen]
    assert sent == [
        ("9001", "run1S000000000000"),
        ("2101", "run1P000000000000"),
        ("2102", "run1F000000000000"),
        ("2101", "run1P000000000001"),  # refused: no 2102 after it
        ("2101", "run1P000000000002"),
        ("2102", "run1F000000000002"),
    ]
    assert all(env["sign_no"] == "S" * 24 for env in door_like.seen[1:])


@pytest.mark.slow
def test_settle_bench_door_fsi_reports_both_doors_and_their_ratio() -> None:
    argv = [sys.executable, "-m", "loadtest.bench", "settle", "--door", "fsi", "--json",
            "--seconds", "0.3", "--workers", "1", "--cards", "4", "--concurrency", "2"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["door"] == "fsi"
    for side in ("v1", "fsi"):
        assert report[side]["settle_per_s"] > 0, side  # durable settlements went through
        assert report[side]["errors"] == {}, side  # nothing refused at this gentle load
        assert report[side]["server_cpu_ms_per_settlement"] > 0
    rates = report["fsi"]["settle_per_s"] / report["v1"]["settle_per_s"]
    assert report["ratio_fsi_to_v1"] == pytest.approx(rates, abs=0.01)  # rates shown rounded
    assert report["settle_per_s"] == report["v1"]["settle_per_s"]
    assert "fsi/v1 =" in out
