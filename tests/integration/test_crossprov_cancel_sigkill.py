"""A cancel through the REAL hub simulator whose gateway is SIGKILLed mid-call, against a real
`gateway serve --workers 2`: the hub cancels after the gateway died (its answer reaches no
one, nothing was committed on our side), and after a restart the reversal task finds the cancel
check's lease run out, asks the hub (5201) and books the cancellation exactly once, so both
sides and the clearing statement agree without the terminal ever retrying; when it does retry
with the killed request's key, it gets the 200 it never received."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from crossprov_kit import (
    OPS_TERMINAL,
    Terminal,
    card_session,
    claim,
    holder,
    running_gateway,
    today,
    wait_until_settled_down,
)
from hubproc import start_hub

from settlement.crossprov.store import FilingType

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PROVINCE = "330000"
HUB_LATENCY_MS = 3_000
SETTINGS = {
    "hub_timeout_ms": "6000",  # longer than the injected latency: the call is in flight
    "hub_retries": "0",
    "hub_reversal_backoff_s": "0.2",
    "hub_reversal_backoff_max_s": "2",
    "hub_reversal_poll_s": "0.3",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _until(what: str, check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"not within {timeout_s} s: {what}")


async def test_a_sigkill_mid_cancel_converges_to_one_booked_cancellation(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with (
        start_hub(tmp_path, seed="itest-cancel-kill") as hub,
        running_gateway(tmp_path, hub.url, extra=SETTINGS) as gateway,
    ):
        terminal = Terminal(http, gateway, 90)
        token = await card_session(terminal, holder(PROVINCE, FilingType.LONG_TERM_RESIDENT, 2))
        settled = await terminal.request(
            "POST",
            "/v1/settlements",
            claim(7_700),
            {"X-Card-Session": token, "Idempotency-Key": "kill-settle"},
        )
        assert settled.status == 201, settled
        msgid, setl_id = settled.body["msgid"], settled.body["setl_id"]

        hub.set_faults(latency_ms=HUB_LATENCY_MS)
        cancel = asyncio.create_task(
            terminal.request(
                "POST",
                f"/v1/settlements/{setl_id}/cancel",
                {"reason": "wrong patient"},
                {"Idempotency-Key": "kill-cancel"},
            )
        )

        async def cancel_msgid_written() -> bool:
            with gateway.db() as db:
                row = db.execute(
                    "SELECT cancel_msgid FROM remote_settlements WHERE msgid = ?", (msgid,)
                ).fetchone()
            return row is not None and row[0] is not None

        await _until("the cancel msgid is written", cancel_msgid_written, 30)

        async def hub_holds_the_cancel() -> bool:
            return hub.calls_in_flight() >= 1  # it sleeps on the call for its latency

        await _until("the cancel reaches the hub", hub_holds_the_cancel, 30)
        gateway.kill()  # mid-call: the hub has the cancel; our commit will never come
        hub.clear_faults()  # (for the calls to come; the one in flight keeps its latency)
        with pytest.raises((aiohttp.ClientError, OSError)):
            await cancel

        async def hub_cancelled() -> bool:
            status = hub.query(msgid, insuplc_admdvs=PROVINCE)["status"]
            return bool(status == "cancelled")

        await _until("the hub commits the cancel nobody waits for", hub_cancelled, 30)
        with gateway.db() as db:
            status, cancel_msgid = db.execute(
                "SELECT status, cancel_msgid FROM remote_settlements WHERE msgid = ?", (msgid,)
            ).fetchone()
        assert status == "confirmed"  # our side never heard of it
        assert hub.query(cancel_msgid, insuplc_admdvs=PROVINCE)["status"] == "cancelled"

        await asyncio.to_thread(gateway.start, 2)

        async def booked() -> bool:
            try:
                shown = await terminal.request("GET", f"/v1/settlements/{setl_id}")
            except (aiohttp.ClientError, OSError):
                return False
            return bool(shown.status == 200 and shown.body["status"] == "cancelled")

        # The dead worker's lease runs out (2 × longest call + 5 s), then the task resolves.
        await _until("the reversal task books the cancellation", booked, 90)
        ops = Terminal(http, gateway, OPS_TERMINAL)
        await wait_until_settled_down(ops, timeout_s=30)
        with gateway.db() as db:
            (cancel_txns,) = db.execute(
                "SELECT COUNT(*) FROM ledger_transactions WHERE txn_id = ?",
                (f"hub_cancel:{msgid}",),
            ).fetchone()
            (receivable,) = db.execute(
                "SELECT COALESCE(SUM(CASE side WHEN 'debit' THEN amount_fen "
                "ELSE -amount_fen END), 0) FROM ledger_entries WHERE account = ?",
                (f"receivable:province:{PROVINCE}",),
            ).fetchone()
        assert cancel_txns == 1
        assert receivable == 0
        day = today()
        statement = await ops.request(
            "GET", f"/v1/crossprov/clearing?insuplc_admdvs={PROVINCE}&begin={day}&end={day}"
        )
        assert statement.status == 200, statement
        assert statement.body["mismatches"] == []
        assert statement.body["matched"] is True
        done = await ops.request("GET", "/v1/crossprov/reversals?status=done")
        checks = [i for i in done.body["items"] if i["omsgid"] == msgid]
        assert [(c["kind"], c["oinfno"]) for c in checks] == [("cancel_check", "2208")]
        # The terminal's retry with the killed request's key gets the answer it never got.
        retried = await terminal.request(
            "POST",
            f"/v1/settlements/{setl_id}/cancel",
            {"reason": "wrong patient"},
            {"Idempotency-Key": "kill-cancel"},
        )
        assert retried.status == 200, retried
        assert retried.headers.get("Idempotent-Replayed") == "true"
        assert retried.body["status"] == "cancelled"
        # Any later cancel is told the truth and posts nothing.
        again = await terminal.request(
            "POST",
            f"/v1/settlements/{setl_id}/cancel",
            {"reason": "again"},
            {"Idempotency-Key": "kill-cancel-2"},
        )
        assert again.status == 409, again
