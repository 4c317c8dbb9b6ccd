"""Cross-province filings on the national door: 2501 referral and 2505 designated-place
filings registered through the same use case as POST /v1/crossprov/filings (and listed there),
2502/2506 cancelling them; 2503/2504/2507 refused; bad input refused, writing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from crossprov_testkit import INSURED_PLACE, PSN_NO, load_jiangsu_world
from fsi_testkit import His, refused_code, register_operators
from gateway_testkit import HOSPITAL, PHARMACY, Client, FakeClock, Signer
from settlement_api_testkit import Till, snapshot
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from settlement.crossprov.store import FilingRow


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}


@pytest.fixture
def world(engine: Engine) -> Engine:
    load_jiangsu_world(engine)  # holder 0 insured in Jiangsu, filed F1 (resettled retiree)
    register_operators(engine)
    return engine


@pytest.fixture
async def his(world: Engine, client: Client, clock: FakeClock) -> His:
    his = His(client, clock)
    await his.sign_in()
    return his


def _written(world: Engine) -> dict[str, Any]:
    counts = snapshot(world)
    with Session(world) as session:
        counts["filings"] = session.scalar(select(func.count()).select_from(FilingRow))
    return counts


REFERRAL = {"psn_no": PSN_NO, "begndate": "2027-01-10", "enddate": "2027-03-31",
            "reflin_medins_no": HOSPITAL, "diag_code": "I10", "refl_rea": "转诊",
            "insuplc_admdvs": INSURED_PLACE}  # fmt: skip
DESIGNATED = {"psn_no": PSN_NO, "biz_appy_type": "02", "begndate": "2027-01-01 00:00:00"}


async def _listed(signer: Signer) -> dict[str, dict[str, Any]]:
    response = await Till(signer).get(f"/v1/crossprov/filings?psn_no={PSN_NO}")
    assert response.status == 200, await response.text()
    return {item["filing_id"]: item for item in (await response.json())["items"]}


async def test_filings_registered_and_cancelled_like_v1(
    his: His, world: Engine, signer: Signer
) -> None:
    # The insured place in the envelope (most clients), then in the input (some).
    sent = {k: v for k, v in REFERRAL.items() if k != "insuplc_admdvs"}
    referral = await his.ok("2501", {"refmedin": sent}, insuplc_admdvs=INSURED_PLACE)
    referral_id = referral["result"]["trt_dcla_detl_sn"]
    designated = await his.ok("2505", {"data": {**DESIGNATED, "insuplc_admdvs": INSURED_PLACE}})
    designated_id = designated["result"]["trt_dcla_detl_sn"]
    listed = await _listed(signer)
    assert listed[referral_id]["filing_type"] == "referral"
    assert listed[referral_id]["valid_from"] == "2027-01-10"
    assert listed[referral_id]["valid_to"] == "2027-03-31"
    assert listed[referral_id]["target_fixmedins_code"] == HOSPITAL
    assert listed[referral_id]["registered_by"] == HOSPITAL
    assert listed[designated_id]["filing_type"] == "long_term_resident"
    assert listed[designated_id]["valid_to"] is None
    # Only the institution that registered a filing cancels it.
    pharmacy = His(his.client, his.clock, fixmedins_code=PHARMACY)
    await pharmacy.sign_in()
    before = _written(world)
    theirs = await pharmacy.call("2502", {"data": {"trt_dcla_detl_sn": referral_id}})
    assert refused_code(theirs) == "FILING_NOT_FOUND"
    assert _written(world) == before
    await his.ok("2502", {"data": {"trt_dcla_detl_sn": referral_id, "psn_no": PSN_NO}})
    await his.ok("2506", {"data": {"trt_dcla_detl_sn": designated_id, "memo": "moved back"}})
    assert set(await _listed(signer)) == {"F1"}
    again = await his.call("2502", {"data": {"trt_dcla_detl_sn": referral_id}})
    assert refused_code(again) == "FILING_NOT_FOUND"


BAD = "FSI_ENVELOPE_INVALID"


@pytest.mark.parametrize(
    ("infno", "body", "code"),
    [
        # missing fields
        ("2501", {"refmedin": {**REFERRAL, "psn_no": None}}, BAD),
        ("2501", {"refmedin": {k: v for k, v in REFERRAL.items() if k != "enddate"}}, BAD),
        ("2505", {"data": {k: v for k, v in DESIGNATED.items() if k != "biz_appy_type"}}, BAD),
        ("2502", {"data": {"psn_no": PSN_NO}}, BAD),
        # wrong types and forms
        ("2501", {"refmedin": {**REFERRAL, "psn_no": 320000000000001}}, BAD),
        ("2501", {"refmedin": {**REFERRAL, "begndate": "10/01/2027"}}, BAD),
        ("2501", {"refmedin": {**REFERRAL, "reflin_medins_no": "h1"}}, BAD),
        ("2501", {"refmedin": {**REFERRAL, "enddate": "2027-01-01"}}, "VALIDATION_FAILED"),
        ("2501", {"refmedin": {**REFERRAL, "insuplc_admdvs": "310000"}}, BAD),
        ("2501", {"refmedin": {**REFERRAL, "insuplc_admdvs": "310115"}}, BAD),
        ("2505", {"data": {**DESIGNATED, "insuplc_admdvs": INSURED_PLACE,
                           "biz_appy_type": "09"}}, BAD),
        ("2505", {"data": DESIGNATED}, BAD),  # no insured place at all (envelope's is 310000)
        # unknown ids
        ("2502", {"data": {"trt_dcla_detl_sn": "F404"}}, "FILING_NOT_FOUND"),
        ("2506", {"data": {"trt_dcla_detl_sn": "F1", "psn_no": "320000000000999"}},
         "FILING_NOT_FOUND"),
        # filings with no counterpart in the settlement rules
        ("2503", {"data": {"psn_no": PSN_NO, "opsp_dise_code": "M00100"}}, "FSI_INFNO_UNSUPPORTED"),
        ("2504", {"data": {"trt_dcla_detl_sn": "F1"}}, "FSI_INFNO_UNSUPPORTED"),
        ("2507", {"data": {"psn_no": PSN_NO}}, "FSI_INFNO_UNSUPPORTED"),
    ],
)  # fmt: skip
async def test_bad_filings_are_refused_and_write_nothing(
    his: His, world: Engine, infno: str, body: dict[str, Any], code: str
) -> None:
    before = _written(world)
    answer = await his.call(infno, body)
    assert answer["infcode"] == -1
    assert refused_code(answer) == code, answer["err_msg"]
    assert _written(world) == before


@pytest.mark.parametrize("insuplc_admdvs", ["310000", "310115"])
async def test_both_doors_refuse_a_filing_for_a_person_insured_here_in_their_own_form(
    his: His, world: Engine, signer: Signer, insuplc_admdvs: str
) -> None:
    # One rule (settlement.crossprov.filings.register_filing), two renderings of its refusal:
    # the national door's err_msg names the field, /v1's field errors name it.
    before = _written(world)
    national = await his.call("2501", {"refmedin": {**REFERRAL, "insuplc_admdvs": insuplc_admdvs}})
    assert national["infcode"] == -1
    assert refused_code(national) == "FSI_ENVELOPE_INVALID"
    detail = "(insuplc_admdvs: a filing is for a person insured in another province)"
    assert detail in national["err_msg"]
    response = await Till(signer).post(
        "/v1/crossprov/filings",
        {"psn_no": PSN_NO, "insuplc_admdvs": insuplc_admdvs, "filing_type": "long_term_resident",
         "valid_from": "2027-01-01"},
    )  # fmt: skip
    assert response.status == 422, await response.text()
    problem = await response.json()
    assert problem["code"] == "VALIDATION_FAILED"
    assert problem["detail"] == "a filing is for a person insured in another province"
    assert problem["errors"] == [
        {"field": "insuplc_admdvs", "problem": "not another province", "type": "value"}
    ]
    assert _written(world) == before
