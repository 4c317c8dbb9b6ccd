"""The hub simulator over HTTP, in-process (aiohttp test server, and the real listener for
refused connections): envelopes, HTTP statuses, and every fault switch."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from settlement.crossprov import wire
from settlement.hub import app as hub_app
from settlement.hub.app import create_app, start_listener
from settlement.hub.faults import FaultSwitches
from settlement.hub.persons import derive_person

SEED = "hub-http-seed"
NOW = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)
INSTITUTION = "H31000000001"
PSN_NO = "320000000000007"
_sequence = itertools.count(1)


def _msgid() -> str:
    return wire.make_msgid(INSTITUTION, NOW, next(_sequence) % 10_000)


def _envelope(infno: str, payload: dict[str, Any], msgid: str | None = None) -> dict[str, Any]:
    return wire.HubRequest.build(
        infno,
        msgid=msgid or _msgid(),
        insuplc_admdvs="320000",
        fixmedins_code=INSTITUTION,
        input=payload,
        at=NOW,
    ).to_json()


def _settle_envelope(amount: str = "321.09") -> dict[str, Any]:
    return _envelope(
        "2207",
        {
            "psn_no": PSN_NO,
            "mdtrt_id": "MDT-1",
            "visit_type": "outpatient",
            "hospital_level": 2,
            "visit_date": "2026-05-31",
            "filing_type": "resettled_retiree",
            "lines": [{"list_code": "DEMO-B-001", "qty": 3, "pric": amount}],
        },
    )


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(seed=SEED, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _post(
    client: TestClient[Any, Any], envelope: Any, *, path: str | None = None, fault: str = ""
) -> tuple[int, Any]:
    headers = {"X-Hub-Fault": fault} if fault else {}
    target = path or f"/hub/v1/{envelope['infno']}"
    async with client.post(target, json=envelope, headers=headers) as response:
        return response.status, await response.json()


async def _status(client: TestClient[Any, Any], msgid: str) -> str:
    status, body = await _post(client, _envelope("5201", {"omsgid": msgid}))
    assert status == 200
    result: str = body["output"]["status"]
    return result


async def _balance(client: TestClient[Any, Any]) -> str:
    _, body = await _post(client, _envelope("1101", {"psn_no": PSN_NO}))
    balance: str = body["output"]["insuinfo"][0]["balc"]
    return balance


# --- envelopes ---------------------------------------------------------------------------------


async def test_a_processed_call_is_http_200_refusals_included(
    client: TestClient[Any, Any],
) -> None:
    envelope = _settle_envelope()
    status, body = await _post(client, envelope)
    assert status == 200
    response = wire.parse_response(body, msgid=envelope["msgid"])
    assert response.ok
    assert response.output["setlinfo"]["psn_no"] == PSN_NO
    status, body = await _post(client, _envelope("1101", {"psn_no": "330000000000001"}))
    assert status == 200
    assert (body["infcode"], body["err_code"]) == (-1, "PERSON_NOT_FOUND")


@pytest.mark.parametrize(
    ("mutate", "path", "field"),
    [
        (lambda e: {k: v for k, v in e.items() if k != "msgid"}, None, "msgid"),
        (lambda e: {**e, "inf_time": "now"}, None, "inf_time"),
        (lambda e: {**e, "input": "x"}, None, "input"),
        (lambda e: e, "/hub/v1/2102", "infno"),
        (lambda e: {**e, "infno": "9999"}, "/hub/v1/9999", "infno"),
        (lambda e: [e], None, None),
    ],
)
async def test_malformed_envelopes_are_400_and_change_nothing(
    client: TestClient[Any, Any], mutate: Any, path: str | None, field: str | None
) -> None:
    envelope = _settle_envelope()
    before = await _balance(client)
    status, body = await _post(client, mutate(envelope), path=path or "/hub/v1/2207")
    assert status == 400
    assert body["code"] == "ENVELOPE_INVALID"
    assert body.get("field") == field
    assert await _balance(client) == before
    assert await _status(client, envelope["msgid"]) == "none"


async def test_a_body_that_is_not_json_is_400(client: TestClient[Any, Any]) -> None:
    async with client.post("/hub/v1/2207", data=b"{nope") as response:
        assert response.status == 400
        assert (await response.json())["code"] == "ENVELOPE_INVALID"
    async with client.post("/hub/v1/22071", json={}) as response:
        assert response.status == 404  # not a transaction path at all
    for body in (b"[" * 100_000, b"\xff\xfe", b'{"infno": NaN}'):
        async with client.post("/hub/v1/2207", data=body) as response:
            assert response.status == 400
            assert (await response.json())["code"] == "ENVELOPE_INVALID"
    async with client.post("/hub/v1/2207", data=io.BytesIO(b" " * (1024 * 1024 + 1))) as response:
        assert response.status == 413
        assert (await response.json())["code"] == "ENVELOPE_TOO_LARGE"
    async with client.put("/hub/admin/faults", data=b"[" * 100_000) as response:
        assert response.status == 400


# --- faults per request ------------------------------------------------------------------------


async def test_drop_after_commit_commits_and_disconnects(client: TestClient[Any, Any]) -> None:
    envelope = _settle_envelope()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _post(client, envelope, fault="drop")
    assert await _status(client, envelope["msgid"]) == "settled"
    # The retry with the same msgid gets the committed answer, charged once.
    status, body = await _post(client, envelope)
    assert status == 200
    query = await _post(client, _envelope("5201", {"omsgid": envelope["msgid"]}))
    assert body["output"]["setlinfo"] == query[1]["output"]["setlinfo"]


async def test_5xx_answers_503_without_committing(client: TestClient[Any, Any]) -> None:
    envelope = _settle_envelope()
    before = await _balance(client)
    status, body = await _post(client, envelope, fault="5xx")
    assert status == 503
    assert body["code"] == "HUB_FAULT_5XX"
    assert await _status(client, envelope["msgid"]) == "none"
    assert await _balance(client) == before
    status, body = await _post(client, envelope)  # a retry then settles
    assert (status, body["infcode"]) == (200, 0)


async def test_latency_sleeps_before_processing(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[tuple[float, wire.MessageStatus]] = []
    envelope = _settle_envelope()
    assert client.app is not None
    state = client.app[hub_app.STATE]

    async def fake_sleep(seconds: float) -> None:
        # Recorded with the message's status at that moment: not processed yet.
        slept.append((seconds, state.message_status(envelope["msgid"])))

    monkeypatch.setattr(hub_app, "_sleep", fake_sleep)
    status, _ = await _post(client, envelope, fault="latency=1500")
    assert status == 200
    assert slept == [(1.5, wire.MessageStatus.NONE)]
    assert state.message_status(envelope["msgid"]) is wire.MessageStatus.SETTLED
    slept.clear()
    await _post(client, _envelope("1101", {"psn_no": PSN_NO}))
    assert slept == []  # no latency switched on


async def test_healthz_counts_the_calls_held_in_flight(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test can wait for its call to reach the hub (the SIGKILL-mid-cancel test does)."""
    held, release = asyncio.Event(), asyncio.Event()

    async def held_sleep(_seconds: float) -> None:
        held.set()
        await release.wait()

    monkeypatch.setattr(hub_app, "_sleep", held_sleep)

    async def in_flight() -> int:
        async with client.get("/hub/admin/healthz") as response:
            count: int = (await response.json())["calls_in_flight"]
            return count

    assert await in_flight() == 0
    call = asyncio.ensure_future(_post(client, _settle_envelope(), fault="latency=1500"))
    await asyncio.wait_for(held.wait(), 10)
    assert await in_flight() == 1
    release.set()
    assert (await call)[0] == 200
    assert await in_flight() == 0


async def test_a_bad_fault_header_is_400(client: TestClient[Any, Any]) -> None:
    envelope = _settle_envelope()
    status, body = await _post(client, envelope, fault="meteor")
    assert status == 400
    assert body["field"] == "X-Hub-Fault"
    assert await _status(client, envelope["msgid"]) == "none"


# --- faults by switch --------------------------------------------------------------------------


async def _put_faults(client: TestClient[Any, Any], body: Any) -> tuple[int, Any]:
    async with client.put("/hub/admin/faults", json=body) as response:
        return response.status, await response.json()


async def test_fault_switches_read_and_write(client: TestClient[Any, Any]) -> None:
    async with client.get("/hub/admin/faults") as response:
        assert await response.json() == {
            "latency_ms": 0,
            "drop_after_commit_ratio": 0.0,
            "error_5xx_ratio": 0.0,
            "refuse_connections_s": 0,
            "seed": 0,
        }
    status, body = await _put_faults(client, {"latency_ms": 0, "error_5xx_ratio": 0.5})
    assert (status, body["error_5xx_ratio"]) == (200, 0.5)
    status, body = await _put_faults(client, {"error_5xx_ratio": 5})
    assert (status, body["code"]) == (400, "FAULT_SPEC_INVALID")
    async with client.put("/hub/admin/faults", data=b"nope") as response:
        assert response.status == 400
    async with client.get("/hub/admin/faults") as response:
        assert (await response.json())["error_5xx_ratio"] == 0.5
    # No listener under the test server: refusing connections is not possible here.
    status, body = await _put_faults(client, {"refuse_connections_s": 1})
    assert (status, body["code"]) == (409, "NO_LISTENER")


async def test_ratio_faults_are_reproducible_from_the_seed(client: TestClient[Any, Any]) -> None:
    async def run() -> list[int]:
        statuses = []
        for _ in range(24):
            try:
                statuses.append((await _post(client, _envelope("1101", {"psn_no": PSN_NO})))[0])
            except aiohttp.ServerDisconnectedError:
                statuses.append(0)  # dropped
        return statuses

    switches = {"seed": 11, "error_5xx_ratio": 0.3, "drop_after_commit_ratio": 0.3}
    await _put_faults(client, switches)
    first = await run()
    await _put_faults(client, {"seed": 11})
    assert await run() == first
    assert set(first) == {0, 200, 503}


async def test_every_call_dropped_at_ratio_one_still_commits(
    client: TestClient[Any, Any],
) -> None:
    await _put_faults(client, {"drop_after_commit_ratio": 1.0})
    envelope = _settle_envelope()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _post(client, envelope)
    await _put_faults(client, {"drop_after_commit_ratio": 0.0})
    assert await _status(client, envelope["msgid"]) == "settled"


# --- refused connections (the real listener) ---------------------------------------------------


def _listening(listener: hub_app.Listener) -> bool:
    return listener.listening


async def test_refuse_connections_closes_the_port_then_listens_again() -> None:
    app = create_app(seed=SEED, faults=FaultSwitches(), clock=lambda: NOW)
    listener = await start_listener(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{listener.url}/hub/admin/healthz") as response:
                assert response.status == 200
            async with session.put(
                f"{listener.url}/hub/admin/faults", json={"refuse_connections_s": 0.3}
            ) as response:
                assert response.status == 200
                assert (await response.json())["refuse_connections_s"] == 0.3
            assert not listener.listening
            with pytest.raises(aiohttp.ClientConnectorError):
                async with session.get(f"{listener.url}/hub/admin/healthz"):
                    pass
            # Back on the same port (readiness wait, bounded; not a timing assertion).
            for _ in range(200):
                if _listening(listener):
                    break
                await asyncio.sleep(0.05)
            async with session.get(f"{listener.url}/hub/admin/healthz") as response:
                assert response.status == 200
                assert "320000" in (await response.json())["provinces"]
    finally:
        await listener.shutdown()


def test_the_test_psn_no_names_a_person() -> None:
    assert derive_person(SEED, PSN_NO) is not None
