"""A registered outpatient visit (2201→2204→2207) of a person insured in another province
settles through the REAL hub simulator, as POST /v1/settlements does for a visit without
registration (settlement.crossprov.remote_settle: the same steps, the visit's id as
``mdtrt_id``, the visit closed on confirmation), is read back by 5203 and cancelled by 2208
through the hub. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

import pytest
from card_auth_testkit import NEW_ACTIVE
from fsi_flows import card_input
from fsi_testkit import His, refused_code, register_operators
from gateway_testkit import Client, FakeClock, Signer
from settlement_api_testkit import Till
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_crossprov_cancel import (  # the real hub process and the Jiangsu person
    VISIT_DATE,
    HubProcess,
    hub,
    settings_overrides,
    world,
)

from gateway.crossprov.hub import HUB, run_reversals_once
from gateway.state import CLOCK, DATABASE
from settlement.crossprov.remote_settle import require_stay_not_discharged
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus
from settlement.errors import AdmissionNotFound
from settlement.store import AdmissionRow, AdmissionStatus

__all__ = ["HubProcess", "hub", "settings_overrides", "world"]  # fixtures, by name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class _DeafEvent(asyncio.Event):
    def set(self) -> None:
        pass


@pytest.fixture
async def his(world: Engine, signer: Signer, client: Client, clock: FakeClock) -> His:
    # Operators first: a card's presence is recorded only for an institution on the door.
    register_operators(world)
    # The app's reversal task is muted, as test_crossprov_cancel's till does.
    client.app[HUB].wake = _DeafEvent()
    await Till(signer).read_card(NEW_ACTIVE)  # at the hospital's terminal: its dev_no
    his = His(client, clock)
    await his.sign_in()
    return his


async def registered_with_a_line(his: His) -> str:
    """A visit registered (2201) with one fee line uploaded (2204): its mdtrt_id."""
    registered = await his.ok(
        "2201", {"data": {**card_input(), "begntime": f"{VISIT_DATE} 10:00:00"}}
    )
    mdtrt_id: str = registered["data"]["mdtrt_id"]
    line = {"med_list_codg": "DEMO-A-002", "cnt": 1, "pric": 25, "mdtrt_id": mdtrt_id}
    await his.ok("2204", {"feedetail": [line]})
    return mdtrt_id


async def test_a_registered_visit_of_a_person_insured_elsewhere_settles_through_the_hub(
    his: His, world: Engine
) -> None:
    registered = await his.ok(
        "2201", {"data": {**card_input(), "begntime": f"{VISIT_DATE} 09:00:00"}}
    )
    mdtrt_id = registered["data"]["mdtrt_id"]
    lines = [
        {"med_list_codg": "DEMO-A-002", "cnt": 2, "pric": "25.00", "mdtrt_id": mdtrt_id},
        {"med_list_codg": "DEMO-B-001", "cnt": 1, "pric": 30, "mdtrt_id": mdtrt_id},
    ]
    await his.ok("2204", {"feedetail": lines})
    settle: dict[str, Any] = {"data": {**card_input(), "mdtrt_id": mdtrt_id}}
    estimate = await his.call("2206", settle)
    assert refused_code(estimate) == "VISIT_TYPE_NOT_ALLOWED"  # no estimate through the hub
    settled = (await his.ok("2207", settle))["setlinfo"]
    assert settled["medfee_sumamt"] == 80
    assert settled["medfee_sumamt"] == round(
        settled["fund_pay_sumamt"] + settled["acct_pay"] + settled["psn_cash_pay"], 2
    )
    with Session(world) as session:
        (row,) = session.scalars(select(RemoteSettlementRow)).all()
        visit = session.scalar(select(AdmissionRow).where(AdmissionRow.admission_id == mdtrt_id))
    assert row.mdtrt_id == mdtrt_id
    assert row.status is RemoteStatus.CONFIRMED
    assert row.setl_id == settled["setl_id"]
    assert visit is not None
    assert visit.status is AdmissionStatus.DISCHARGED
    assert visit.remote_msgid == row.msgid
    # Settled once: the visit is closed to a second settle and to more fee lines.
    again = await his.call("2207", settle)
    assert refused_code(again) == "ADMISSION_CLOSED"
    # 5203 reads it back as the hub answered it; 2208 cancels it through the hub.
    found = await his.ok("5203", {"data": {"setl_id": settled["setl_id"]}})
    assert found["setlinfo"]["medfee_sumamt"] == 80
    cancelled = await his.ok("2208", {"data": {"setl_id": settled["setl_id"]}})
    assert cancelled["setlinfo"]["pdn_cash_pay"] == settled["psn_cash_pay"]
    assert cancelled["setlinfo"]["refd_setl_flag"] == "1"
    assert cancelled["setlinfo"]["setl_id"] == settled["setl_id"]
    with Session(world) as session:
        assert session.scalar(select(RemoteSettlementRow.status)) is RemoteStatus.CANCELLED


async def test_a_dropped_settle_through_the_hub_is_reversed_by_2601(
    his: His, world: Engine
) -> None:
    mdtrt_id = await registered_with_a_line(his)
    dropped = his.msgid()
    settle = {"data": {**card_input(), "mdtrt_id": mdtrt_id}}
    await his.post_raw(his.envelope("2207", settle, msgid=dropped))  # its answer "lost"
    reversal = his.envelope("2601", {"data": {"omsgid": dropped, "oinfno": "2207"}})
    answer = await (await his.post_raw(reversal)).json()
    assert answer["infcode"] == 0, answer["err_msg"]
    assert "through the national hub" in answer["warn_msg"]
    with Session(world) as session:
        assert session.scalar(select(RemoteSettlementRow.status)) is RemoteStatus.CANCELLED
    # Resent, the reversal answers its first answer and cancels nothing more.
    again = await his.post_raw(reversal)
    assert (await again.json()) == answer


async def test_a_settle_through_the_hub_resent_after_its_reversal_is_refused(
    his: His, world: Engine
) -> None:
    mdtrt_id = await registered_with_a_line(his)
    dropped = his.msgid()
    settle = {"data": {**card_input(), "mdtrt_id": mdtrt_id}}
    first = await (await his.post_raw(his.envelope("2207", settle, msgid=dropped))).json()
    setl_id = first["output"]["setlinfo"]["setl_id"]  # the answer the HIS never got
    reversal = his.msgid()
    await his.ok("2601", {"data": {"omsgid": dropped, "oinfno": "2207"}}, msgid=reversal)
    resent = await his.call("2207", settle, msgid=dropped)
    assert resent["infcode"] == -2, resent
    assert refused_code(resent) == "FSI_MSGID_REVERSED"
    assert f"settlement {setl_id} was cancelled by 2601 msgid {reversal}" in resent["err_msg"]
    with Session(world) as session:
        assert session.scalar(select(RemoteSettlementRow.status)) is RemoteStatus.CANCELLED


async def _settling_during(his: His, world: Engine, hub: HubProcess, mdtrt_id: str) -> Any:
    """Start 2207 with the hub slow, and return once its intent is written (the visit's lines
    were read and are on their way): the caller changes the visit while the hub settles."""
    hub.set_faults(latency_ms=1_500)
    settling = asyncio.ensure_future(
        his.call("2207", {"data": {**card_input(), "mdtrt_id": mdtrt_id}})
    )
    for _ in range(1_000):
        with Session(world) as session:
            if session.scalar(select(RemoteSettlementRow.id)) is not None:
                return settling
        await asyncio.sleep(0.005)
    raise AssertionError("the settle never wrote its intent")


def _visit(world: Engine, mdtrt_id: str) -> AdmissionRow | None:
    with Session(world) as session:
        row = session.scalar(select(AdmissionRow).where(AdmissionRow.admission_id == mdtrt_id))
        if row is not None:
            session.expunge(row)
        return row


async def test_a_line_cancelled_and_another_uploaded_during_the_hub_call_is_never_closed_out(
    his: His, world: Engine, hub: HubProcess, client: Client
) -> None:
    registered = await his.ok(
        "2201", {"data": {**card_input(), "begntime": f"{VISIT_DATE} 11:00:00"}}
    )
    mdtrt_id = registered["data"]["mdtrt_id"]
    line = {"med_list_codg": "DEMO-A-002", "cnt": 1, "pric": 25, "mdtrt_id": mdtrt_id}
    await his.ok("2204", {"feedetail": [{**line, "feedetl_sn": "1"}, {**line, "feedetl_sn": "2"}]})
    settling = await _settling_during(his, world, hub, mdtrt_id)
    # One line off, a dearer one on: as many lines as were sent, but not the lines sent.
    await his.ok("2205", {"data": {"mdtrt_id": mdtrt_id, "feedetl_sn": "2"}})
    dearer = {**line, "pric": 300, "feedetl_sn": "3", "chrg_bchno": "B2"}
    await his.ok("2204", {"feedetail": [dearer]})
    assert refused_code(await settling) == "HUB_OUTCOME_UNKNOWN"
    hub.clear_faults()
    with Session(world) as session:
        assert session.scalar(select(RemoteSettlementRow.status)) is RemoteStatus.UNKNOWN
    visit = _visit(world, mdtrt_id)
    assert visit is not None
    assert (visit.status, visit.remote_msgid, visit.line_count) == (AdmissionStatus.OPEN, None, 2)
    assert await run_reversals_once(client.app[HUB], client.app[DATABASE], client.app[CLOCK]) == 1
    # Settled afresh, over the lines the visit has now.
    settled = await his.ok("2207", {"data": {**card_input(), "mdtrt_id": mdtrt_id}})
    assert settled["setlinfo"]["medfee_sumamt"] == 325
    with Session(world) as session:
        statuses = list(
            session.scalars(select(RemoteSettlementRow.status).order_by(RemoteSettlementRow.id))
        )
    assert statuses == [RemoteStatus.REVERSED, RemoteStatus.CONFIRMED]


async def test_a_registration_cancelled_during_the_hub_call_is_reversed_not_a_crash(
    his: His, world: Engine, hub: HubProcess, client: Client
) -> None:
    registered = await his.ok(
        "2201", {"data": {**card_input(), "begntime": f"{VISIT_DATE} 12:00:00"}}
    )
    mdtrt_id = registered["data"]["mdtrt_id"]
    line = {"med_list_codg": "DEMO-A-002", "cnt": 1, "pric": 25, "mdtrt_id": mdtrt_id}
    await his.ok("2204", {"feedetail": [line]})
    settling = await _settling_during(his, world, hub, mdtrt_id)
    await his.ok("2202", {"data": {"mdtrt_id": mdtrt_id}})  # deletes the visit
    assert refused_code(await settling) == "HUB_OUTCOME_UNKNOWN"
    hub.clear_faults()
    assert _visit(world, mdtrt_id) is None
    with Session(world) as session:
        assert session.scalar(select(RemoteSettlementRow.status)) is RemoteStatus.UNKNOWN
    assert await run_reversals_once(client.app[HUB], client.app[DATABASE], client.app[CLOCK]) == 1
    with Session(world) as session:
        assert session.scalar(select(RemoteSettlementRow.status)) is RemoteStatus.REVERSED
    # Settled again (the terminal's retry): the visit is gone, a typed refusal.
    again = await his.call("2207", {"data": {**card_input(), "mdtrt_id": mdtrt_id}})
    assert refused_code(again) == "ADMISSION_NOT_FOUND"


def test_a_deleted_visit_is_not_found_when_the_intent_is_written(world: Engine) -> None:
    with Session(world) as session, pytest.raises(AdmissionNotFound):
        require_stay_not_discharged(
            session, fixmedins_code="H31010100001", admission_id="M-gone", lock=True
        )


async def test_a_cancel_through_the_hub_resent_with_another_input_is_a_reused_msgid(
    his: His, world: Engine
) -> None:
    registered = await his.ok(
        "2201", {"data": {**card_input(), "begntime": f"{VISIT_DATE} 13:00:00"}}
    )
    mdtrt_id = registered["data"]["mdtrt_id"]
    line = {"med_list_codg": "DEMO-A-002", "cnt": 1, "pric": 25, "mdtrt_id": mdtrt_id}
    await his.ok("2204", {"feedetail": [line]})
    settled = (await his.ok("2207", {"data": {**card_input(), "mdtrt_id": mdtrt_id}}))["setlinfo"]
    cancel = {"data": {"setl_id": settled["setl_id"], "mdtrt_id": mdtrt_id}}
    msgid = his.msgid()
    first = await his.call("2208", cancel, msgid=msgid)
    assert first["infcode"] == 0, first["err_msg"]
    # The settlement's cancel_reason (shown to people) names the request by a short
    # reference, not by the door's full fingerprint (a SHA-256 over sign_no and the input).
    with Session(world) as session:
        reason = session.scalar(
            select(RemoteSettlementRow.cancel_reason).where(
                RemoteSettlementRow.setl_id == settled["setl_id"]
            )
        )
    assert reason is not None
    prefix = f"national interface 2208 msgid {msgid} request "
    assert reason.startswith(prefix)
    assert re.fullmatch(r"[0-9a-f]{16}", reason.removeprefix(prefix))
    # The same msgid and setl_id, another input: not the first answer, as for a local one.
    other = {"data": {**cancel["data"], "mdtrt_id": "M-another-visit"}}
    reused = await his.call("2208", other, msgid=msgid)
    assert reused["infcode"] == -2
    assert refused_code(reused) == "FSI_MSGID_REUSED"
    # Resent as it was, it gets its first answer.
    again = await his.call("2208", cancel, msgid=msgid)
    assert again["output"] == first["output"]


async def test_a_stay_line_cancelled_by_feedetl_sn_during_2304_is_never_closed_out(
    his: His, world: Engine, hub: HubProcess, client: Client
) -> None:
    admitted = await his.ok(
        "2401",
        {
            "mdtrtinfo": {
                **card_input(),
                "begntime": f"{VISIT_DATE - dt.timedelta(days=2)} 08:00:00",
                "med_type": "21",
            },
            "diseinfo": [],
        },
    )
    mdtrt_id = admitted["result"]["mdtrt_id"]
    line = {"med_list_codg": "DEMO-A-002", "cnt": 1, "pric": 25, "mdtrt_id": mdtrt_id}
    await his.ok("2301", {"feedetail": [{**line, "feedetl_sn": "1"}, {**line, "feedetl_sn": "2"}]})
    await his.ok("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "endtime": f"{VISIT_DATE}"}})
    hub.set_faults(latency_ms=1_500)
    settle = {"data": {**card_input(), "mdtrt_id": mdtrt_id, "med_type": "21"}}
    settling = asyncio.ensure_future(his.call("2304", settle))
    for _ in range(1_000):
        with Session(world) as session:
            if session.scalar(select(RemoteSettlementRow.id)) is not None:
                break
        await asyncio.sleep(0.005)
    # 2302 takes line 2 off by its feedetl_sn; 2301 puts a dearer one on: still two lines.
    await his.ok("2302", {"data": {"mdtrt_id": mdtrt_id, "feedetl_sn": "2"}})
    await his.ok("2301", {"feedetail": [{**line, "pric": 300, "feedetl_sn": "3"}]})
    assert refused_code(await settling) == "HUB_OUTCOME_UNKNOWN"
    hub.clear_faults()
    visit = _visit(world, mdtrt_id)
    assert visit is not None
    assert (visit.status, visit.remote_msgid, visit.line_count) == (AdmissionStatus.OPEN, None, 2)
    assert await run_reversals_once(client.app[HUB], client.app[DATABASE], client.app[CLOCK]) == 1
    settled = await his.ok("2304", settle)
    assert settled["setlinfo"]["medfee_sumamt"] == 325
