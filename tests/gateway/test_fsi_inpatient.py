"""The inpatient transactions on the national door: 2401 admission, 2301/2302 fee lines,
2402 discharge, 2303 pre-settle, 2304 settle, 2305 cancel, 2404/2405 cancels, 2601 of 2304,
2305 and 2401; the same use case as /v1/admissions (same figures), and bad input refused with
a typed code and nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from card_auth_testkit import CardTerminal
from fsi_flows import (
    ADMITTED_ON,
    CARD,
    STAY_LINES,
    STAY_TOTAL,
    admitted,
    card_input,
    settle_input,
    settled_stay,
)
from fsi_testkit import His, refused_code, register_operators
from gateway_testkit import Client, FakeClock, Signer
from settlement_api_testkit import TODAY, Till, assert_ledger_balanced, load_insured_world, snapshot
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from settlement.store import AdmissionRow, AdmissionStatus, SettlementRow, SettlementStatus

_AMOUNTS = (
    "medfee_sumamt", "fulamt_ownpay_amt", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
    "hifp_pay", "pool_prop_selfpay", "hifob_pay", "fund_pay_sumamt", "acct_pay", "balc",
)  # fmt: skip


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}  # the demo card PKI on every backend (PostgreSQL too)


@pytest.fixture
def world(engine: Engine) -> Engine:
    load_insured_world(engine)
    register_operators(engine)
    return engine


@pytest.fixture
async def his(world: Engine, client: Client, clock: FakeClock, signer: Signer) -> His:
    response = await CardTerminal(signer).authenticate(CARD)  # at the hospital's terminal
    assert response.status == 200, await response.text()
    his = His(client, clock)
    await his.sign_in()
    return his


def _stay(world: Engine, mdtrt_id: str) -> AdmissionRow | None:
    with Session(world) as session:
        return session.scalar(select(AdmissionRow).where(AdmissionRow.admission_id == mdtrt_id))


async def test_a_stay_admitted_discharged_and_settled(his: His, world: Engine) -> None:
    mdtrt_id = await admitted(his)
    # One more line, then taken off again by its feedetl_sn (2302).
    await his.ok("2301", {"feedetail": [{"med_list_codg": "DEMO-A-003", "cnt": 1, "pric": 40,
                                         "feedetl_sn": "9", "mdtrt_id": mdtrt_id}]})  # fmt: skip
    removed = await his.ok("2302", {"data": {"mdtrt_id": mdtrt_id, "feedetl_sn": "9"}})
    assert removed["data"] == {"mdtrt_id": mdtrt_id, "cnt": 1}
    await his.ok("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "endtime": f"{TODAY} 10:00:00",
                                       "dscg_way": "1"}, "diseinfo": []})  # fmt: skip
    stay = _stay(world, mdtrt_id)
    assert stay is not None
    assert stay.discharge_date is not None
    assert stay.discharge_date.isoformat() == TODAY
    before = snapshot(world)
    estimate = await his.ok("2303", settle_input(mdtrt_id))
    after = snapshot(world)  # an estimate writes nothing but its answer under its msgid
    assert after.pop("settlement_idempotency_keys") == before.pop("settlement_idempotency_keys") + 1
    assert after == before
    # Without the data node (some clients), and medfee_sumamt as a string.
    settled = await his.ok("2304", {**settle_input(mdtrt_id)["data"], "medfee_sumamt": "31400.00"})
    info = settled["setlinfo"]
    assert info["medfee_sumamt"] == STAY_TOTAL
    assert info["mdtrt_id"] == mdtrt_id
    assert info["clr_type"] == "21"
    assert info["med_type"] == "21"
    assert info["setl_time"].startswith(TODAY + " ")
    for name in _AMOUNTS:
        assert info[name] == estimate["setlinfo"][name], name
    assert info["medfee_sumamt"] == round(
        info["fund_pay_sumamt"] + info["acct_pay"] + info["psn_cash_pay"], 2
    )
    assert sum(item["fund_payamt"] for item in settled["setldetail"]) == info["fund_pay_sumamt"]
    closed = await his.call("2301", {"feedetail": [{**STAY_LINES[0], "mdtrt_id": mdtrt_id}]})
    assert refused_code(closed) == "ADMISSION_CLOSED"
    # 2402 once more with the same date is acknowledged; another date is refused.
    await his.ok("2402", {"mdtrtinfo": {"mdtrt_id": mdtrt_id, "endtime": TODAY}})
    moved = await his.call("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "endtime": ADMITTED_ON}})
    assert refused_code(moved) == "ADMISSION_CLOSED"
    assert_ledger_balanced(world)


async def test_the_same_stay_on_v1_gives_the_same_figures(
    his: His, world: Engine, signer: Signer
) -> None:
    """2304 calls the use case POST /v1/admissions/{id}/discharge calls: the same stay of the
    same person on the same day settles to the fen alike on both doors (the first cancelled,
    2305, so the second starts from the same year-to-date)."""
    mdtrt_id, settled = await settled_stay(his)
    fsi = settled["setlinfo"]
    cancelled = await his.ok("2305", {"data": {"setl_id": fsi["setl_id"], "mdtrt_id": mdtrt_id}})
    assert cancelled["setlinfo"]["pdn_cash_pay"] == fsi["psn_cash_pay"]
    assert cancelled["setlinfo"]["refd_setl_flag"] == "1"
    till = Till(signer)
    await till.read_card(CARD)
    admission = await (await till.post("/v1/admissions", {"admission_date": ADMITTED_ON})).json()
    path = f"/v1/admissions/{admission['admission_id']}"
    lines = [{"code": "DEMO-A-004", "quantity": 5, "unit_price_fen": 8_000},
             {"code": "DEMO-B-003", "quantity": 1, "unit_price_fen": 3_000_000},
             {"code": "DEMO-C-002", "quantity": 2, "unit_price_fen": 50_000}]  # fmt: skip
    assert (await till.post(f"{path}/fee-lines", {"lines": lines})).status == 200
    response = await till.post(f"{path}/discharge", {"discharge_date": TODAY}, key=till.new_key())
    assert response.status == 201, await response.text()
    v1 = await response.json()
    for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "hifp_pay"):
        assert round(fsi[name] * 100) == v1[name], name
    assert_ledger_balanced(world)


async def test_cancel_discharge_reopens_a_cancelled_stay_to_settle_again(
    his: His, world: Engine
) -> None:
    mdtrt_id, settled = await settled_stay(his)
    standing = await his.call("2405", {"data": {"mdtrt_id": mdtrt_id}})
    assert refused_code(standing) == "ADMISSION_CLOSED"  # its settlement stands
    setl_id = settled["setlinfo"]["setl_id"]
    await his.ok("2305", {"setl_id": setl_id, "mdtrt_id": mdtrt_id})  # no data node
    reopened = await his.call("2405", {"data": {"mdtrt_id": mdtrt_id}})
    assert reopened["infcode"] == 0
    assert "open again" in reopened["warn_msg"]
    stay = _stay(world, mdtrt_id)
    assert stay is not None
    assert (stay.status, stay.setl_id, stay.discharge_date) == (AdmissionStatus.OPEN, None, None)
    await his.ok("2302", {"data": {"mdtrt_id": mdtrt_id, "feedetl_sn": "3"}})
    again = await his.ok("2304", settle_input(mdtrt_id, medfee_sumamt=STAY_TOTAL - 1000))
    assert again["setlinfo"]["setl_id"] != setl_id
    assert again["setlinfo"]["medfee_sumamt"] == STAY_TOTAL - 1000
    # An open stay's recorded discharge is forgotten by 2405; without one, nothing to cancel.
    other = await admitted(his)
    nothing = await his.call("2405", {"data": {"mdtrt_id": other}})
    assert refused_code(nothing) == "INVALID_VISIT"
    await his.ok("2402", {"dscginfo": {"mdtrt_id": other, "endtime": f"{TODAY} 09:00:00"}})
    await his.ok("2405", {"data": {"mdtrt_id": other}})
    stay = _stay(world, other)
    assert stay is not None
    assert stay.discharge_date is None
    assert_ledger_balanced(world)


async def test_settle_without_a_recorded_discharge_settles_today_and_records_it(
    his: His, world: Engine
) -> None:
    mdtrt_id = await admitted(his)
    settled = await his.ok("2304", settle_input(mdtrt_id))
    assert settled["setlinfo"]["setl_time"].startswith(TODAY)
    stay = _stay(world, mdtrt_id)
    assert stay is not None
    assert stay.discharge_date is not None
    assert stay.discharge_date.isoformat() == TODAY
    # The order (2304 then 2402): the discharge on the settled date is acknowledged.
    await his.ok("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "endtime": f"{TODAY} 11:00:00"}})


async def test_cancel_admission(his: His, world: Engine) -> None:
    mdtrt_id = await admitted(his)
    await his.ok("2404", {"data": {"mdtrt_id": mdtrt_id, "psn_no": ""}})
    assert _stay(world, mdtrt_id) is None
    gone = await his.call("2301", {"feedetail": [{**STAY_LINES[0], "mdtrt_id": mdtrt_id}]})
    assert refused_code(gone) == "ADMISSION_NOT_FOUND"
    settled_id, _settled = await settled_stay(his)
    refused = await his.call("2404", {"data": {"mdtrt_id": settled_id}})
    assert refused_code(refused) == "ADMISSION_CLOSED"


async def test_an_admission_replays_under_its_msgid(his: His, world: Engine) -> None:
    body = {"mdtrtinfo": {**card_input(), "begntime": f"{ADMITTED_ON} 08:30:00"}}
    msgid = his.msgid()
    first = await his.post_raw(his.envelope("2401", body, msgid=msgid))
    before = snapshot(world)
    again = await his.post_raw(his.envelope("2401", body, msgid=msgid))
    assert await again.text() == await first.text()
    assert snapshot(world) == before


async def test_reversal_of_2304_2305_and_2401(his: His, world: Engine) -> None:
    # 2304 committed, its answer lost: cancelled in full.
    mdtrt_id = await admitted(his)
    dropped = his.msgid()
    await his.post_raw(his.envelope("2304", settle_input(mdtrt_id), msgid=dropped))
    await his.ok("2601", {"data": {"omsgid": dropped, "oinfno": "2304"}})
    with Session(world) as session:
        statuses = session.scalars(select(SettlementRow.status)).all()
    assert statuses == [SettlementStatus.CANCELLED]
    # A committed cancel (2305) is not reversed: settle again instead.
    setl_id = (await his.ok("2304", settle_input(await _reopened(his, mdtrt_id))))["setlinfo"]
    cancel_msgid = his.msgid()
    cancel = his.envelope("2305", {"data": {"setl_id": setl_id["setl_id"]}}, msgid=cancel_msgid)
    await his.post_raw(cancel)
    refused = await his.call("2601", {"data": {"omsgid": cancel_msgid, "oinfno": "2305"}})
    assert refused_code(refused) == "FSI_REVERSAL_REFUSED"
    # 2401 committed with nothing settled: the admission is cancelled.
    body = {"mdtrtinfo": {**card_input(), "begntime": f"{ADMITTED_ON} 08:30:00"}}
    admit_msgid = his.msgid()
    admitted_answer = await (
        await his.post_raw(his.envelope("2401", body, msgid=admit_msgid))
    ).json()
    stay_id = admitted_answer["output"]["result"]["mdtrt_id"]
    await his.ok("2601", {"data": {"omsgid": admit_msgid, "oinfno": "2401"}})
    assert _stay(world, stay_id) is None
    # A 2304 that never arrived: reversed first, refused when it arrives late.
    late_id = await admitted(his)
    never = his.msgid()
    await his.ok("2601", {"data": {"omsgid": never, "oinfno": "2304"}})
    before = snapshot(world)
    late = await his.call("2304", settle_input(late_id), msgid=never)
    assert refused_code(late) == "FSI_MSGID_REVERSED"
    assert snapshot(world) == before
    assert_ledger_balanced(world)


async def test_a_2304_resent_after_its_reversal_is_refused_not_replayed(
    his: His, world: Engine
) -> None:
    mdtrt_id = await admitted(his)
    dropped = his.msgid()
    first = await (
        await his.post_raw(his.envelope("2304", settle_input(mdtrt_id), msgid=dropped))
    ).json()
    setl_id = first["output"]["setlinfo"]["setl_id"]  # the answer the HIS never got
    reversal = his.msgid()
    await his.ok("2601", {"data": {"omsgid": dropped, "oinfno": "2304"}}, msgid=reversal)
    before = snapshot(world)
    resent = await his.call("2304", settle_input(mdtrt_id), msgid=dropped)
    assert resent["infcode"] == -2, resent
    assert refused_code(resent) == "FSI_MSGID_REVERSED"
    assert f"settlement {setl_id} was cancelled by 2601 msgid {reversal}" in resent["err_msg"]
    assert snapshot(world) == before
    # Reopened (2405) and settled anew under a new msgid: that one stands, the old one is
    # still refused.
    settled = await his.ok("2304", settle_input(await _reopened(his, mdtrt_id)))
    assert settled["setlinfo"]["setl_id"] != setl_id
    again = await his.call("2304", settle_input(mdtrt_id), msgid=dropped)
    assert refused_code(again) == "FSI_MSGID_REVERSED"
    assert_ledger_balanced(world)


async def _reopened(his: His, mdtrt_id: str) -> str:
    await his.ok("2405", {"data": {"mdtrt_id": mdtrt_id}})
    return mdtrt_id


BAD = "FSI_ENVELOPE_INVALID"
GONE = "ADMISSION_NOT_FOUND"


def _upload(mdtrt_id: str, **line: Any) -> dict[str, Any]:
    return {"feedetail": [{**STAY_LINES[0], "mdtrt_id": mdtrt_id, **line}]}


@pytest.mark.parametrize(
    ("infno", "body", "code"),
    [
        # missing fields
        ("2401", lambda m: {"mdtrtinfo": {"begntime": f"{TODAY} 08:00:00"}}, BAD),
        ("2402", lambda m: {"dscginfo": {"mdtrt_id": m}}, BAD),
        ("2303", lambda m: {"data": card_input()}, BAD),
        ("2304", lambda m: {"data": card_input()}, BAD),
        ("2305", lambda m: {"data": {"mdtrt_id": m}}, BAD),
        ("2404", lambda m: {"data": {}}, BAD),
        ("2405", lambda m: {"data": {"psn_no": "1"}}, BAD),
        ("2301", lambda m: {"feedetail": [{"mdtrt_id": m, "cnt": 1, "pric": 1}]}, BAD),
        ("2302", lambda m: {"data": {"feedetl_sn": "1"}}, BAD),
        # wrong types and forms
        ("2401", lambda m: {"mdtrtinfo": {**card_input(), "begntime": "tomorrow"}}, BAD),
        ("2402", lambda m: {"dscginfo": {"mdtrt_id": m, "endtime": "2027/01/15"}}, BAD),
        ("2402", lambda m: {"dscginfo": {"mdtrt_id": m, "endtime": 20270115}}, BAD),
        ("2304", lambda m: settle_input(m, medfee_sumamt="lots"), BAD),
        ("2304", lambda m: {"data": {**settle_input(m)["data"], "mdtrt_id": ["A"]}}, BAD),
        ("2301", lambda m: _upload(m, cnt=1.5), BAD),
        ("2301", lambda m: _upload(m, pric="8.001"), BAD),
        # unknown ids and codes
        ("2402", lambda m: {"dscginfo": {"mdtrt_id": "A0", "endtime": TODAY}}, GONE),
        ("2404", lambda m: {"data": {"mdtrt_id": "A0"}}, GONE),
        ("2405", lambda m: {"data": {"mdtrt_id": "A0"}}, GONE),
        ("2303", lambda m: settle_input("A0"), GONE),
        ("2304", lambda m: settle_input("A0"), GONE),
        ("2305", lambda m: {"data": {"setl_id": "S0", "mdtrt_id": m}}, "SETTLEMENT_NOT_FOUND"),
        ("2301", lambda m: _upload("A0"), GONE),
        ("2301", lambda m: _upload(m, med_list_codg="NOPE"), "UNKNOWN_CATALOGUE_CODE"),
        ("2302", lambda m: {"data": {"mdtrt_id": m, "feedetl_sn": "77"}}, "INVALID_CLAIM"),
        # rules
        ("2402", lambda m: {"dscginfo": {"mdtrt_id": m, "endtime": "2027-01-01"}}, "INVALID_VISIT"),
        ("2402", lambda m: {"dscginfo": {"mdtrt_id": m, "endtime": "2027-02-01"}}, "INVALID_VISIT"),
        ("2304", lambda m: settle_input(m, mid_setl_flag="1"), "VISIT_TYPE_NOT_ALLOWED"),
        ("2304", lambda m: settle_input(m, medfee_sumamt=1), "FSI_AMOUNT_MISMATCH"),
        ("2304", lambda m: settle_input(m, psn_no="someone else"), "FSI_CARD_MISMATCH"),
        ("2303", lambda m: settle_input(m, mdtrt_cert_type="02"), "FSI_CERT_TYPE_UNSUPPORTED"),
        ("2403", lambda m: {"adminfo": {"mdtrt_id": m}}, "FSI_INFNO_UNSUPPORTED"),  # docs §7
    ],
)  # fmt: skip
async def test_bad_input_is_refused_and_writes_nothing(
    his: His, world: Engine, infno: str, body: Any, code: str
) -> None:
    mdtrt_id = await admitted(his)
    before = snapshot(world)
    answer = await his.call(infno, body(mdtrt_id))
    assert answer["infcode"] == -1
    assert refused_code(answer) == code, answer["err_msg"]
    assert answer["output"] == {}
    assert snapshot(world) == before
    stay = _stay(world, mdtrt_id)
    assert stay is not None
    assert stay.discharge_date is None
