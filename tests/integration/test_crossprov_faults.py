"""1,000 cross-province settlements while the REAL hub simulator drops 20% of its responses
after committing, driven 24 at a time through a real `gateway serve --workers 2` (once
straight through, once with the gateway SIGKILLed partway and restarted on the same data).

Afterwards there are zero orphans: every message is confirmed on both sides (gateway
``confirmed`` = hub ``settled``) or reversed on both sides (gateway ``reversed`` = hub
``reversed``), nothing is left ``intent`` or ``unknown``, every logical settle (one
Idempotency-Key) got exactly one settlement, and each province's clearing statement matches
the hub's 3201 totals and 3202 details to the cent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from crossprov_kit import (
    OPS_TERMINAL,
    PROVINCES,
    Gateway,
    RunResult,
    Terminal,
    Till,
    all_remote_rows,
    card_session,
    claim,
    holder,
    running_gateway,
    settle_until_done,
    today,
    wait_until_settled_down,
)
from hubproc import HubProcess, start_hub

from settlement.crossprov.store import FilingType
from settlement.crossprov.wire import yuan_to_fen

# Well under a minute each on a quiet 2-core machine; room for a loaded CI run beside others.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SETTLEMENTS = 1_000
IN_FLIGHT = 24  # one till (terminal + card session) each
DROP_RATIO = 0.2
KILL_AFTER = 350  # settled answers before the SIGKILL in the second test
SETTINGS = {
    "hub_timeout_ms": "2000",
    # One retry with the same msgid: a dropped answer is usually recovered by it (the hub
    # answers its stored first result); two drops in a row are left unknown and reversed.
    "hub_retries": "1",
    "hub_reversal_backoff_s": "0.2",
    "hub_reversal_backoff_max_s": "2",
    "hub_reversal_poll_s": "0.3",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def _tills(http: aiohttp.ClientSession, gateway: Gateway) -> list[Till]:
    filings = (FilingType.RESETTLED_RETIREE, FilingType.LONG_TERM_RESIDENT)
    tills = []
    for n in range(IN_FLIGHT):
        province = PROVINCES[n % len(PROVINCES)]
        h = holder(province, filings[n % 2], n // len(PROVINCES))
        terminal = Terminal(http, gateway, 2 + 2 * n)  # hospitals 1..24, one terminal each
        tills.append(Till(terminal, await card_session(terminal, h), h))
    return tills


async def _drive(
    tills: list[Till], result: RunResult, *, on_progress: asyncio.Event | None = None
) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(SETTLEMENTS):
        queue.put_nowait(i)

    async def till_loop(till: Till) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await settle_until_done(
                till, f"load-{i:04d}", claim(1_000 + 7 * i), result, deadline_s=180
            )
            if on_progress is not None and len(result.settled) >= KILL_AFTER:
                on_progress.set()

    await asyncio.gather(*(till_loop(till) for till in tills))


async def _check_no_orphans(
    gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession, result: RunResult
) -> None:
    assert result.other == []
    assert len(result.settled) == SETTLEMENTS
    ops = Terminal(http, gateway, OPS_TERMINAL)
    await wait_until_settled_down(ops, timeout_s=90)
    rows = await all_remote_rows(ops)
    by_status: dict[str, set[str]] = {}
    for row in rows:
        by_status.setdefault(row["status"], set()).add(row["msgid"])
    assert set(by_status) <= {"confirmed", "reversed", "failed"}, by_status.keys()
    # One settlement per logical request, and it is the one the terminal was told about.
    confirmed = by_status.get("confirmed", set())
    assert confirmed == {body["msgid"] for body in result.settled.values()}
    assert len(confirmed) == SETTLEMENTS
    # Both sides agree message by message.
    hub_status: dict[str, str] = {}
    day = today()
    for province in PROVINCES:
        for detail in hub.detail(province, day, day)["details"]:
            hub_status[detail["msgid"]] = detail["status"]
    assert {m for m, s in hub_status.items() if s == "settled"} == confirmed
    reversed_here = by_status.get("reversed", set())
    for msgid in reversed_here:
        if msgid in hub_status:  # committed at the hub, then reversed there
            assert hub_status[msgid] == "reversed", msgid
    for msgid in {m for m, s in hub_status.items() if s == "reversed"}:
        assert msgid in reversed_here, msgid
    for msgid in by_status.get("failed", set()):
        assert hub_status.get(msgid) is None, msgid
    # Each province's clearing statement matches the hub to the cent.
    total_fen = 0
    for province in PROVINCES:
        statement = await ops.request(
            "GET", f"/v1/crossprov/clearing?insuplc_admdvs={province}&begin={day}&end={day}"
        )
        assert statement.status == 200, statement
        body = statement.body
        assert body["mismatches"] == []
        assert body["matched"] is True
        assert body["settled"] == body["hub_settled"]
        totals = hub.totals(province, day, day)["settled"]
        assert body["settled"]["medfee_sumamt"] == yuan_to_fen(totals["medfee_sumamt"])
        assert body["settled"]["fund_pay_sumamt"] == yuan_to_fen(totals["fund_pay_sumamt"])
        assert body["settled"]["acct_pay"] == yuan_to_fen(totals["acct_pay"])
        assert body["settled"]["psn_cash_pay"] == yuan_to_fen(totals["psn_cash_pay"])
        assert body["settled"]["count"] == totals["count"]
        total_fen += body["settled"]["medfee_sumamt"]
        # The ledger's receivable from the province is exactly what Shanghai fronted.
        with gateway.db() as db:
            (receivable_fen,) = db.execute(
                "SELECT COALESCE(SUM(CASE side WHEN 'debit' THEN amount_fen "
                "ELSE -amount_fen END), 0) FROM ledger_entries WHERE account = ?",
                (f"receivable:province:{province}",),
            ).fetchone()
        assert receivable_fen == body["settled"]["fronted_fen"]
    assert total_fen == sum(1_000 + 7 * i for i in range(SETTLEMENTS))


async def test_a_thousand_settlements_with_20_percent_dropped_answers_leave_no_orphans(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with (
        start_hub(tmp_path, seed="itest-faults", drop_ratio=DROP_RATIO, fault_seed=11) as hub,
        running_gateway(tmp_path, hub.url, extra=SETTINGS) as gateway,
    ):
        tills = await _tills(http, gateway)
        started = time.monotonic()
        result = RunResult()
        await _drive(tills, result)
        driven_s = time.monotonic() - started
        hub.clear_faults()
        await _check_no_orphans(gateway, hub, http, result)
        print(
            f"\n1,000 settlements, 20% dropped: driven in {driven_s:.1f} s, "
            f"{result.unknown_answers} HUB_OUTCOME_UNKNOWN answers retried"
        )
        assert result.unknown_answers > 0  # the faults really happened


async def test_the_same_run_survives_a_sigkill_of_the_gateway_and_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with (
        start_hub(tmp_path, seed="itest-faults-kill", drop_ratio=DROP_RATIO, fault_seed=12) as hub,
        running_gateway(tmp_path, hub.url, extra=SETTINGS) as gateway,
    ):
        tills = await _tills(http, gateway)
        started = time.monotonic()
        result = RunResult()
        progress = asyncio.Event()

        async def killer() -> None:
            await progress.wait()
            gateway.kill()  # SIGKILL: supervisor and both workers, mid-traffic
            await asyncio.sleep(0.5)
            await asyncio.to_thread(gateway.start, 2)

        kill_task = asyncio.create_task(killer())
        await _drive(tills, result, on_progress=progress)
        await kill_task
        driven_s = time.monotonic() - started
        hub.clear_faults()
        await _check_no_orphans(gateway, hub, http, result)
        print(f"\n1,000 settlements, 20% dropped, SIGKILL + restart: driven in {driven_s:.1f} s")
