"""Discharge settlement (2304) of a person insured elsewhere, in process against the REAL hub
simulator: the stay's fee lines settle through the hub with the admission id as ``mdtrt_id``,
the confirmed discharge closes the admission row (``remote_msgid``: later fee lines get the
local ADMISSION_CLOSED), a second discharge is refused with the same error, and so is a
discharge after the remote settlement was cancelled (as a cancelled local discharge leaves its
stay closed); a discharge reversed at the hub leaves the stay open. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from gateway_testkit import assert_problem
from settlement_api_testkit import Till
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_crossprov_cancel import (  # the real hub process and the Jiangsu person
    VISIT_DATE,
    HubProcess,
    hub,
    settings_overrides,
    till,
    world,
)

from gateway.crossprov.hub import HUB, run_reversals_once
from gateway.state import CLOCK, DATABASE
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus
from settlement.store import AdmissionRow, AdmissionStatus

__all__ = ["hub", "settings_overrides", "till", "world"]  # fixtures, used by name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ADMITTED = VISIT_DATE - dt.timedelta(days=3)
STAY_LINES = [
    {"code": "DEMO-A-002", "quantity": 2, "unit_price_fen": 2_500},
    {"code": "DEMO-B-001", "quantity": 4, "unit_price_fen": 3_000},
]


async def _admitted_with_lines(till: Till) -> str:
    admitted = await till.post(
        "/v1/admissions", {"admission_date": ADMITTED.isoformat()}, key=till.new_key()
    )
    assert admitted.status in (200, 201), await admitted.text()
    admission_id: str = (await admitted.json())["admission_id"]
    lines = await till.post(
        f"/v1/admissions/{admission_id}/fee-lines", {"lines": STAY_LINES}, key=till.new_key()
    )
    assert lines.status == 200, await lines.text()
    return admission_id


async def _discharge(till: Till, admission_id: str, key: str) -> Any:
    return await till.post(
        f"/v1/admissions/{admission_id}/discharge",
        {"discharge_date": VISIT_DATE.isoformat()},
        key=key,
    )


def _remote(engine: Engine) -> list[RemoteSettlementRow]:
    with Session(engine) as session:
        rows = list(session.scalars(select(RemoteSettlementRow).order_by(RemoteSettlementRow.id)))
        session.expunge_all()
        return rows


def _admission(engine: Engine, admission_id: str) -> AdmissionRow:
    with Session(engine) as session:
        row = session.scalar(select(AdmissionRow).where(AdmissionRow.admission_id == admission_id))
        assert row is not None
        session.expunge(row)
        return row


async def test_a_remote_discharge_settles_the_stay_once_through_the_hub(
    till: Till, world: Engine
) -> None:
    admission_id = await _admitted_with_lines(till)
    discharged = await _discharge(till, admission_id, "d-1")
    assert discharged.status == 201, await discharged.text()
    body = await discharged.json()
    assert (body["route"], body["visit_type"], body["mdtrt_id"]) == (
        "cross_province",
        "inpatient",
        admission_id,
    )
    assert body["medfee_sumamt"] == 2 * 2_500 + 4 * 3_000
    (row,) = _remote(world)
    assert (row.infno, row.status) == ("2304", RemoteStatus.CONFIRMED)
    replay = await _discharge(till, admission_id, "d-1")
    assert replay.headers.get("Idempotent-Replayed") == "true"
    # Another discharge of the same stay: the local closed-admission error, nothing sent.
    await assert_problem(await _discharge(till, admission_id, "d-2"), 409, "ADMISSION_CLOSED")
    assert len(_remote(world)) == 1


async def test_a_cancelled_remote_discharge_leaves_the_stay_closed_like_a_local_one(
    till: Till, world: Engine
) -> None:
    admission_id = await _admitted_with_lines(till)
    discharged = await _discharge(till, admission_id, "d-1")
    assert discharged.status == 201, await discharged.text()
    setl_id = (await discharged.json())["setl_id"]
    cancelled = await till.post(
        f"/v1/settlements/{setl_id}/cancel", {"reason": "wrong stay"}, key="c-1"
    )
    assert cancelled.status == 200, await cancelled.text()
    assert (await cancelled.json())["status"] == "cancelled"
    # A cancelled local discharge keeps its admission discharged: no second discharge.
    await assert_problem(await _discharge(till, admission_id, "d-2"), 409, "ADMISSION_CLOSED")
    (row,) = _remote(world)
    assert row.status is RemoteStatus.CANCELLED
    admission = _admission(world, admission_id)
    assert (admission.status, admission.remote_msgid) == (AdmissionStatus.DISCHARGED, row.msgid)
    await _late_fee_lines_refused(till, world, admission_id)


async def _late_fee_lines_refused(till: Till, world: Engine, admission_id: str) -> None:
    late = await till.post(
        f"/v1/admissions/{admission_id}/fee-lines", {"lines": STAY_LINES}, key=till.new_key()
    )
    await assert_problem(late, 409, "ADMISSION_CLOSED")
    assert _admission(world, admission_id).line_count == len(STAY_LINES)


async def test_a_remote_discharge_closes_the_admission_and_refuses_later_fee_lines(
    till: Till, world: Engine
) -> None:
    admission_id = await _admitted_with_lines(till)
    assert _admission(world, admission_id).status is AdmissionStatus.OPEN
    discharged = await _discharge(till, admission_id, "d-1")
    assert discharged.status == 201, await discharged.text()
    (row,) = _remote(world)
    admission = _admission(world, admission_id)
    # Closed by the hub's message, not by a local settlement.
    assert (admission.status, admission.remote_msgid, admission.setl_id) == (
        AdmissionStatus.DISCHARGED,
        row.msgid,
        None,
    )
    await _late_fee_lines_refused(till, world, admission_id)


async def test_two_discharges_of_one_stay_at_once_settle_it_once(till: Till, world: Engine) -> None:
    admission_id = await _admitted_with_lines(till)
    first, second = await asyncio.gather(
        _discharge(till, admission_id, "d-a"), _discharge(till, admission_id, "d-b")
    )
    answers = sorted([first.status, second.status])
    assert answers == [201, 409], [await first.text(), await second.text()]
    loser = first if first.status == 409 else second
    await assert_problem(loser, 409, "ADMISSION_CLOSED")
    (row,) = _remote(world)
    assert row.status is RemoteStatus.CONFIRMED
    assert _admission(world, admission_id).remote_msgid == row.msgid


async def test_a_retry_while_an_unknown_discharge_is_being_reversed_is_told_to_retry(
    till: Till, world: Engine, hub: HubProcess, client: Any
) -> None:
    admission_id = await _admitted_with_lines(till)
    hub.set_faults(error_5xx_ratio=1.0)  # nothing processed, the outcome unknown to us
    await assert_problem(await _discharge(till, admission_id, "d-1"), 503, "HUB_OUTCOME_UNKNOWN")
    # The reversal cannot get through yet: the SDK's retry is told to wait, not "closed".
    retried = await _discharge(till, admission_id, "d-1")
    await assert_problem(retried, 503, "HUB_OUTCOME_UNKNOWN")
    assert retried.headers["Retry-After"] == "1"
    assert [r.status for r in _remote(world)] == [RemoteStatus.UNKNOWN]
    hub.clear_faults()
    assert await run_reversals_once(client.app[HUB], client.app[DATABASE], client.app[CLOCK]) == 1
    # The reversed discharge never closed the stay.
    reopened = _admission(world, admission_id)
    assert (reopened.status, reopened.remote_msgid) == (AdmissionStatus.OPEN, None)
    again = await _discharge(till, admission_id, "d-1")
    assert again.status == 201, await again.text()
    reversed_row, confirmed = _remote(world)
    assert [reversed_row.status, confirmed.status] == [
        RemoteStatus.REVERSED,
        RemoteStatus.CONFIRMED,
    ]
    assert _admission(world, admission_id).remote_msgid == confirmed.msgid


async def test_fee_lines_uploaded_during_the_hub_call_are_never_closed_out_unsettled(
    till: Till, world: Engine, hub: HubProcess, client: Any
) -> None:
    admission_id = await _admitted_with_lines(till)
    hub.set_faults(latency_ms=1_500)  # holds the discharge at the hub while a line is uploaded
    discharging = asyncio.ensure_future(_discharge(till, admission_id, "d-1"))
    for _ in range(1_000):  # until the intent is written: the stay's lines were read and sent
        if _remote(world):
            break
        await asyncio.sleep(0.005)
    late_line = [STAY_LINES[0]]
    late = await till.post(
        f"/v1/admissions/{admission_id}/fee-lines", {"lines": late_line}, key="late"
    )
    assert late.status == 200, await late.text()  # still open: the hub has not answered
    # The hub settled two lines of a stay that now has three: not booked, reversed instead.
    await assert_problem(await discharging, 503, "HUB_OUTCOME_UNKNOWN")
    hub.clear_faults()
    assert [r.status for r in _remote(world)] == [RemoteStatus.UNKNOWN]
    admission = _admission(world, admission_id)
    assert (admission.status, admission.remote_msgid, admission.line_count) == (
        AdmissionStatus.OPEN,
        None,
        len(STAY_LINES) + 1,
    )
    assert await run_reversals_once(client.app[HUB], client.app[DATABASE], client.app[CLOCK]) == 1
    # The SDK's retry with the same key discharges the stay as it is now: every line.
    again = await _discharge(till, admission_id, "d-1")
    assert again.status == 201, await again.text()
    lines = [*STAY_LINES, *late_line]
    assert (await again.json())["medfee_sumamt"] == sum(
        line["quantity"] * line["unit_price_fen"] for line in lines
    )
    reversed_row, confirmed = _remote(world)
    assert [reversed_row.status, confirmed.status] == [
        RemoteStatus.REVERSED,
        RemoteStatus.CONFIRMED,
    ]
    assert _admission(world, admission_id).remote_msgid == confirmed.msgid
