"""The queries on the national door: 5201 visits, 5203 a settlement, 5204 fee lines, 5206
year-to-date totals: the same figures as /v1 (GET /v1/settlements/{setl_id}, POST
/v1/eligibility), and bad input refused with a typed code and nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from card_auth_testkit import CardTerminal
from fsi_flows import CARD, STAY_LINES, STAY_TOTAL, admitted, card_input, settled_stay
from fsi_testkit import His, refused_code, register_operators
from gateway_testkit import Client, FakeClock, Signer
from settlement_api_testkit import TODAY, Till, load_insured_world, snapshot
from sqlalchemy import Engine


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


async def _outpatient_settled(his: His) -> dict[str, Any]:
    registered = await his.ok("2201", {"data": {**card_input(), "begntime": f"{TODAY} 09:00:00"}})
    mdtrt_id = registered["data"]["mdtrt_id"]
    line = {"med_list_codg": "DEMO-A-002", "cnt": 2, "pric": "25.00", "feedetl_sn": "7",
            "mdtrt_id": mdtrt_id, "chrg_bchno": "B1"}  # fmt: skip
    await his.ok("2204", {"feedetail": [line]})
    settled = await his.ok("2207", {"data": {**card_input(), "mdtrt_id": mdtrt_id}})
    info: dict[str, Any] = settled["setlinfo"]
    return info


async def test_visits_settlement_fee_lines_and_totals(
    his: His, world: Engine, signer: Signer
) -> None:
    outpatient = await _outpatient_settled(his)
    stay_id, stay = await settled_stay(his)
    open_id = await admitted(his)
    psn_no = outpatient["psn_no"]
    # 5201: every visit here of the person, with its state.
    listed = (await his.ok("5201", {"data": {"psn_no": psn_no}}))["mdtrtinfo"]
    by_id = {row["mdtrt_id"]: row for row in listed}
    assert set(by_id) == {outpatient["mdtrt_id"], stay_id, open_id}
    assert by_id[stay_id]["mdtrt_stas"] == "settled"
    assert by_id[stay_id]["setl_id"] == stay["setlinfo"]["setl_id"]
    assert by_id[stay_id]["endtime"] == f"{TODAY} 00:00:00"
    assert by_id[stay_id]["med_type"] == "21"
    assert by_id[open_id]["mdtrt_stas"] == "open"
    assert by_id[open_id]["endtime"] is None
    assert by_id[outpatient["mdtrt_id"]]["med_type"] == "11"
    only = await his.ok("5201", {"data": {"psn_no": psn_no, "mdtrt_id": stay_id}})
    assert [row["mdtrt_id"] for row in only["mdtrtinfo"]] == [stay_id]
    # Without the data node; a date range and a med_type.
    query = {"psn_no": psn_no, "med_type": "21", "begntime": "2027-01-01 00:00:00"}
    inpatient = await his.ok("5201", {**query, "endtime": TODAY})
    assert {row["mdtrt_id"] for row in inpatient["mdtrtinfo"]} == {stay_id, open_id}
    nobody = await his.ok("5201", {"data": {"psn_no": "NO-SUCH-PERSON"}})
    assert nobody["mdtrtinfo"] == []
    # 5203: the settlement as 2304 answered it and as /v1 reads it.
    setl_id = stay["setlinfo"]["setl_id"]
    found = await his.ok("5203", {"data": {"setl_id": setl_id, "psn_no": psn_no}})
    assert found["setlinfo"] == stay["setlinfo"]
    assert found["setldetail"] == stay["setldetail"]
    till = Till(signer)
    v1 = await (await till.get(f"/v1/settlements/{setl_id}")).json()
    for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "hifp_pay"):
        assert round(found["setlinfo"][name] * 100) == v1[name], name
    # 5204: the settled lines by setl_id; an open stay's by mdtrt_id, with the HIS's numbers.
    settled_lines = (await his.ok("5204", {"data": {"setl_id": setl_id}}))["feedetail"]
    assert sum(line["det_item_fee_sumamt"] for line in settled_lines) == STAY_TOTAL
    assert {line["setl_id"] for line in settled_lines} == {setl_id}
    open_lines = (await his.ok("5204", {"data": {"mdtrt_id": open_id}}))["feedetail"]
    assert [line["feedetl_sn"] for line in open_lines] == [x["feedetl_sn"] for x in STAY_LINES]
    assert [line["med_list_codg"] for line in open_lines] == [
        x["med_list_codg"] for x in STAY_LINES
    ]
    assert open_lines[0]["setl_id"] is None
    # 5206: the year's totals, as POST /v1/eligibility reports them.
    await till.read_card(CARD)
    eligibility = await till.eligibility()
    cuminfo = (await his.ok("5206", {"data": {**card_input(), "cum_ym": "202701"}}))["cuminfo"]
    cum = {row["cum_type_code"]: row["cum"] for row in cuminfo}
    assert round(cum["S001"] * 100) == eligibility["self_pay_band_consumed_fen"]
    assert round(cum["D001"] * 100) == eligibility["deductible_consumed_fen"]
    assert round(cum["F001"] * 100) == eligibility["pooling_fund_paid_fen"]
    assert eligibility["pooling_fund_paid_fen"] > 0
    assert {row["year"] for row in cuminfo} == {2027}


BAD = "FSI_ENVELOPE_INVALID"
GONE = "SETTLEMENT_NOT_FOUND"


@pytest.mark.parametrize(
    ("infno", "body", "code"),
    [
        # missing fields
        ("5201", lambda s: {"data": {"begntime": TODAY}}, BAD),
        ("5203", lambda s: {"data": {"psn_no": "1"}}, BAD),
        ("5204", lambda s: {"data": {"psn_no": "1"}}, BAD),
        ("5206", lambda s: {"data": {"cum_ym": "202701"}}, BAD),  # no card named
        # wrong types and forms
        ("5201", lambda s: {"data": {"psn_no": 42}}, BAD),
        ("5201", lambda s: {"data": {"psn_no": "1", "begntime": "2027.01.01"}}, BAD),
        ("5201", lambda s: {"data": {"psn_no": "1", "begntime": TODAY, "endtime": "2027"}}, BAD),
        ("5201", lambda s: {"psn_no": "1", "begntime": TODAY, "endtime": "2027-01-01"}, BAD),
        ("5203", lambda s: {"data": {"setl_id": 12345}}, BAD),
        ("5204", lambda s: {"data": {"setl_id": "S-1"}}, BAD),
        ("5206", lambda s: {"data": {**card_input(), "cum_ym": "2027-1"}}, BAD),
        ("5206", lambda s: {"data": {**card_input(), "cum_ym": "202601"}}, BAD),
        ("5206", lambda s: {"data": card_input(mdtrt_cert_type="02")}, "FSI_CERT_TYPE_UNSUPPORTED"),
        # unknown ids
        ("5203", lambda s: {"data": {"setl_id": "S0"}}, GONE),
        ("5203", lambda s: {"data": {"setl_id": s, "psn_no": "someone"}}, GONE),
        ("5203", lambda s: {"data": {"setl_id": s, "mdtrt_id": "A0"}}, GONE),
        ("5204", lambda s: {"data": {"setl_id": "S0"}}, GONE),
        ("5204", lambda s: {"data": {"mdtrt_id": "A0"}}, "ADMISSION_NOT_FOUND"),
        ("5204", lambda s: {"data": {"setl_id": s, "psn_no": "someone"}}, GONE),
        ("5206", lambda s: {"data": card_input(psn_no="someone")}, "FSI_CARD_MISMATCH"),
        # queries not offered (docs §7)
        ("5202", lambda s: {"data": {"psn_no": "1"}}, "FSI_INFNO_UNSUPPORTED"),
        ("5205", lambda s: {"data": {"psn_no": "1"}}, "FSI_INFNO_UNSUPPORTED"),
    ],
)  # fmt: skip
async def test_bad_queries_are_refused_and_write_nothing(
    his: His, world: Engine, infno: str, body: Any, code: str
) -> None:
    setl_id = (await _outpatient_settled(his))["setl_id"]
    before = snapshot(world)
    answer = await his.call(infno, body(setl_id))
    assert answer["infcode"] == -1
    assert refused_code(answer) == code, answer["err_msg"]
    assert answer["output"] == {}
    assert snapshot(world) == before
