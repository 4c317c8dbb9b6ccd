"""The settlement API end to end, in process: a software card authenticates, the terminal
signs every request, the gateway settles into the ledger. SQLite and (mark ``postgres``)
PostgreSQL through the shared ``db_url`` fixture. After every test the ledger sums to zero.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from card_auth_testkit import LEGACY_ACTIVE, NEW_ACTIVE, SEED
from gateway_testkit import (
    HOSPITAL,
    OTHER_TERMINAL,
    PHARMACY,
    SECRETS,
    Client,
    FakeClock,
    Signer,
    assert_problem,
)
from settlement_api_testkit import (
    OUTPATIENT_LINES,
    PHARMACY_LINES,
    TODAY,
    Till,
    assert_ledger_balanced,
    load_insured_world,
    outpatient,
    snapshot,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway.app import create_app
from gateway.settings import Settings
from gateway.settlement_api.demo import demo_balances_fen
from issuance.store import Card, CardState
from settlement.ledger import account_balance_fen, institution_account
from settlement.store import IdempotencyKey
from sscard import demo as sd


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Demo PKI on every backend; the pharmacy's terminals act as operations terminals.
    return {"demo_world": "on", "reconciliation_ops_institutions": PHARMACY}


@pytest.fixture
def world(engine: Engine) -> Iterator[Engine]:
    load_insured_world(engine)
    yield engine
    assert_ledger_balanced(engine)


@pytest.fixture
async def till(signer: Signer, world: Engine) -> Till:
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)  # holder 0 (cardholder id 1)
    return till


@pytest.fixture
async def pharmacy(client: Client, clock: FakeClock, world: Engine) -> Till:
    till = Till(Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL]))
    await till.read_card(NEW_ACTIVE)
    return till


def check_split(body: dict[str, Any]) -> None:
    assert (
        body["medfee_sumamt"] == body["fund_pay_sumamt"] + body["acct_pay"] + body["psn_cash_pay"]
    )
    assert body["fund_pay_sumamt"] == sum(row["fund_payamt"] for row in body["setldetail"])
    assert body["acct_pay"] == body["acct_pay_current_year_fen"] + body["acct_pay_past_years_fen"]


# --- eligibility, pre-settle, settle ----------------------------------------------------------


async def test_eligibility_is_1101_person_information(till: Till):
    body = await till.eligibility()
    current_fen, past_fen = demo_balances_fen("ssc-demo-2019", 1)
    assert body["psn_no"] == "310000000000001"
    (insurance,) = body["insuinfo"]
    assert insurance["insuplc_admdvs"] == "310000"
    assert insurance["insutype"] == "310"
    assert insurance["balc"] == current_fen + past_fen
    assert insurance["current_year_balance_fen"] == current_fen
    assert body["benefit_category"] in {"employee_44_and_under", "employee_45_and_over", "retiree"}
    assert "citizen_id" not in body
    assert "name" not in body


async def test_pre_settle_estimates_and_writes_nothing(till: Till, world: Engine):
    before = snapshot(world)
    response = await till.post("/v1/settlements/pre-settle", outpatient())
    assert response.status == 200, await response.text()
    estimate = await response.json()
    assert snapshot(world) == before
    assert estimate["medfee_sumamt"] == 2_500 + 6_000 + 1_000
    assert estimate["explanation"]
    settled = await till.settled(outpatient())
    for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay", "balc"):
        assert settled[name] == estimate[name], name


async def test_outpatient_settle_end_to_end(till: Till, world: Engine):
    before = await till.eligibility()
    body = await till.settled(outpatient())
    check_split(body)
    assert body["status"] == "settled"
    assert body["fixmedins_code"] == HOSPITAL
    assert body["fulamt_ownpay_amt"] == 1_000
    assert body["preselfpay_amt"] == 600
    after = await till.eligibility()
    assert after["insuinfo"][0]["balc"] == before["insuinfo"][0]["balc"] - body["acct_pay"]
    assert body["balc"] == after["insuinfo"][0]["balc"]
    # Query one, and the day's list.
    one = await till.get(f"/v1/settlements/{body['setl_id']}")
    assert one.status == 200
    queried = await one.json()
    assert queried["medfee_sumamt"] == body["medfee_sumamt"]
    assert queried["explanation"] is None
    day = await (await till.get(f"/v1/settlements?date={TODAY}")).json()
    assert [item["setl_id"] for item in day["items"]] == [body["setl_id"]]
    assert day["next_cursor"] is None
    other_day = await (await till.get("/v1/settlements?date=2027-01-14")).json()
    assert other_day["items"] == []
    with Session(world) as session:
        assert account_balance_fen(session, institution_account(HOSPITAL, "fees")) == -9_500


async def test_card_reported_lost_after_authentication_cannot_settle(till: Till, world: Engine):
    # The card session is still valid, but the registry now says lost: money must not move.
    with Session(world) as session, session.begin():
        card = session.get(Card, sd.demo_card(SEED, NEW_ACTIVE).card_sn)
        assert card is not None
        card.state = CardState.LOST
    before = snapshot(world)
    response = await till.post("/v1/settlements", outpatient(), key="lost-1")
    await assert_problem(response, 403, "CARD_LOST")
    assert snapshot(world) == before
    # Nor does it still show balances or estimates.
    estimate = await till.post("/v1/settlements/pre-settle", outpatient())
    await assert_problem(estimate, 403, "CARD_LOST")
    eligibility = await till.post("/v1/eligibility", {})
    await assert_problem(eligibility, 403, "CARD_LOST")


async def test_pharmacy_is_paid_from_the_personal_account(pharmacy: Till):
    before = (await pharmacy.eligibility())["insuinfo"][0]
    body = await pharmacy.settled(
        {"visit_type": "pharmacy", "visit_date": TODAY, "lines": PHARMACY_LINES}
    )
    check_split(body)
    assert body["fund_pay_sumamt"] == 0
    expected_acct = min(3_750, before["balc"])
    assert body["acct_pay"] == expected_acct
    assert body["psn_cash_pay"] == 3_750 - expected_acct
    assert body["fixmedins_code"] == PHARMACY


# --- cancel and partial refund ----------------------------------------------------------------


async def test_cancel_reverses_everything_and_only_once(till: Till, world: Engine):
    before = snapshot(world)["accounts"]
    balance_before = (await till.eligibility())["insuinfo"][0]["balc"]
    settled = await till.settled(outpatient())
    path = f"/v1/settlements/{settled['setl_id']}/cancel"
    key = till.new_key()
    missing_reason = await till.post(path, {}, key=key)
    await assert_problem(missing_reason, 422, "VALIDATION_FAILED")
    response = await till.post(path, {"reason": "patient left before treatment"}, key=key)
    assert response.status == 200, await response.text()
    cancelled = await response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_reason"] == "patient left before treatment"
    assert snapshot(world)["accounts"] == before
    assert (await till.eligibility())["insuinfo"][0]["balc"] == balance_before
    with Session(world) as session:
        assert account_balance_fen(session, institution_account(HOSPITAL, "fees")) == 0
        assert account_balance_fen(session, institution_account(HOSPITAL, "cash")) == 0
    # The same key again: the stored answer. Another key: already cancelled.
    replay = await till.post(path, {"reason": "patient left before treatment"}, key=key)
    assert replay.status == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == cancelled
    again = await till.post(path, {"reason": "again"}, key=till.new_key())
    await assert_problem(again, 409, "SETTLEMENT_ALREADY_CANCELLED")
    queried = await (await till.get(f"/v1/settlements/{settled['setl_id']}")).json()
    assert queried["status"] == "cancelled"


async def test_partial_refund_is_cancel_then_settle_again(till: Till, world: Engine):
    first = await till.settled(outpatient())
    response = await till.post(
        f"/v1/settlements/{first['setl_id']}/cancel",
        {"reason": "one item returned"},
        key=till.new_key(),
    )
    assert response.status == 200
    second = await till.settled(outpatient(OUTPATIENT_LINES[:2]))
    check_split(second)
    assert second["medfee_sumamt"] == first["medfee_sumamt"] - 1_000
    day = await (await till.get(f"/v1/settlements?date={TODAY}")).json()
    assert {item["setl_id"]: item["status"] for item in day["items"]} == {
        first["setl_id"]: "cancelled",
        second["setl_id"]: "settled",
    }
    with Session(world) as session:
        assert (
            account_balance_fen(session, institution_account(HOSPITAL, "fees"))
            == -(second["medfee_sumamt"])
        )


# --- idempotency (DOMAIN §7) ------------------------------------------------------------------


async def test_missing_or_malformed_key_is_400_and_writes_nothing(till: Till, world: Engine):
    before = snapshot(world)
    response = await till.post("/v1/settlements", outpatient())
    await assert_problem(response, 400, "IDEMPOTENCY_KEY_MISSING")
    response = await till.post("/v1/settlements", outpatient(), key="has space")
    await assert_problem(response, 400, "IDEMPOTENCY_KEY_MISSING")
    response = await till.post("/v1/settlements", outpatient(), key="k" * 256)
    await assert_problem(response, 400, "IDEMPOTENCY_KEY_MISSING")
    assert snapshot(world) == before


async def test_same_key_same_body_replays_the_first_response(
    till: Till, world: Engine, clock: FakeClock
):
    key = till.new_key()
    first = await till.settle(outpatient(), key=key)
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    written = snapshot(world)
    second = await till.settle(outpatient(), key=key)
    assert second.status == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await second.read() == await first.read()
    assert snapshot(world) == written
    # Kept at least 24 h: 23 h later, with the card read again, still the first answer.
    clock.now_s += 23 * 3600
    await till.read_card(NEW_ACTIVE)
    third = await till.settle(outpatient(), key=key)
    assert third.status == 201
    assert await third.read() == await first.read()
    assert snapshot(world) == written


async def test_same_key_other_body_is_422(till: Till, world: Engine):
    key = till.new_key()
    assert (await till.settle(outpatient(), key=key)).status == 201
    written = snapshot(world)
    other = await till.settle(outpatient(OUTPATIENT_LINES[:1]), key=key)
    await assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    # The same key on another route is another request too.
    setl_id = (await (await till.get(f"/v1/settlements?date={TODAY}")).json())["items"][0][
        "setl_id"
    ]
    cancel = await till.post(f"/v1/settlements/{setl_id}/cancel", {"reason": "x"}, key=key)
    await assert_problem(cancel, 422, "IDEMPOTENCY_KEY_REUSED")
    assert snapshot(world) == written


async def test_same_key_while_running_is_409_and_settles_once(till: Till, world: Engine):
    key = till.new_key()
    responses = await asyncio.gather(
        till.settle(outpatient(), key=key), till.settle(outpatient(), key=key)
    )
    statuses = sorted(response.status for response in responses)
    # Usually the second arrives while the first runs (409); if the first has already
    # committed it gets the replay. Never two settlements.
    assert statuses in ([201, 409], [201, 201])
    for response in responses:
        if response.status == 409:
            await assert_problem(response, 409, "IDEMPOTENCY_KEY_IN_USE")
            assert response.headers["Retry-After"] == "1"
    assert len(snapshot(world)["settlement_status"]) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_key_held_by_another_worker_is_409_on_postgresql(till: Till, world: Engine):
    from settlement.keyed import advisory_lock_id

    key = till.new_key()
    before = snapshot(world)
    # Another worker's uncommitted settle holds the key's advisory lock.
    with world.connect() as other, other.begin():
        other.execute(select(_advisory_lock(advisory_lock_id(HOSPITAL, key))))
        response = await till.settle(outpatient(), key=key)
        await assert_problem(response, 409, "IDEMPOTENCY_KEY_IN_USE")
    assert snapshot(world) == before
    assert (await till.settle(outpatient(), key=key)).status == 201


def _advisory_lock(lock_id: int) -> Any:
    from sqlalchemy import func

    return func.pg_advisory_xact_lock(lock_id)


async def test_keys_are_scoped_to_the_institution(till: Till, pharmacy: Till, world: Engine):
    key = "shared-key-1"
    assert (await till.settle(outpatient(), key=key)).status == 201
    response = await pharmacy.settle(
        {"visit_type": "pharmacy", "visit_date": TODAY, "lines": PHARMACY_LINES}, key=key
    )
    assert response.status == 201
    assert "Idempotent-Replayed" not in response.headers
    with Session(world) as session:
        clients = set(session.scalars(select(IdempotencyKey.client_id)))
    assert clients == {HOSPITAL, PHARMACY}


# --- bad input: typed 4xx, nothing written ----------------------------------------------------


def _line(**overrides: Any) -> list[dict[str, Any]]:
    return [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_500, **overrides}]


BAD_BODIES = [
    pytest.param(outpatient(_line(unit_price_fen=-1)), 422, "VALIDATION_FAILED", id="negative"),
    pytest.param(outpatient(_line(unit_price_fen=12.5)), 422, "VALIDATION_FAILED", id="fraction"),
    pytest.param(outpatient(_line(unit_price_fen="2500")), 422, "VALIDATION_FAILED", id="string"),
    pytest.param(outpatient(_line(quantity=1.0)), 422, "VALIDATION_FAILED", id="float-quantity"),
    pytest.param(outpatient(_line(quantity=0)), 422, "VALIDATION_FAILED", id="zero-quantity"),
    pytest.param(outpatient(_line(unit_price_fen=10**12)), 422, "VALIDATION_FAILED", id="huge"),
    pytest.param(outpatient(_line(quantity=10**7)), 422, "VALIDATION_FAILED", id="huge-qty"),
    pytest.param(outpatient(_line(code="NOPE-1")), 422, "UNKNOWN_CATALOGUE_CODE", id="unknown"),
    pytest.param(outpatient(_line(code="bad code")), 422, "VALIDATION_FAILED", id="bad-code"),
    pytest.param(outpatient(_line() * 501), 422, "VALIDATION_FAILED", id="too-many-lines"),
    pytest.param(outpatient([]), 422, "VALIDATION_FAILED", id="no-lines"),
    pytest.param(outpatient(extra=1), 422, "VALIDATION_FAILED", id="unknown-field"),
    # Lines the engine takes one by one, a claim it does not: all 0, or above the outpatient
    # counter limit (50,000 yuan: two lines of 25,000.01 yuan).
    pytest.param(outpatient(_line(unit_price_fen=0)), 422, "CLAIM_EMPTY", id="zero-claim"),
    pytest.param(
        outpatient(_line(unit_price_fen=2_500_001) * 2),
        422,
        "CLAIM_ABOVE_COUNTER_LIMIT",
        id="above-counter-limit",
    ),
    pytest.param(
        outpatient(visit_type="inpatient"), 422, "VISIT_TYPE_NOT_ALLOWED", id="inpatient-direct"
    ),
    pytest.param(
        outpatient(visit_type="pharmacy"), 422, "VISIT_TYPE_NOT_ALLOWED", id="pharmacy-at-hospital"
    ),
    pytest.param(outpatient(visit_date="2027-01-16"), 422, "INVALID_VISIT", id="future"),
    # Before the demo insurance began (2019): not covered on that date.
    pytest.param(outpatient(visit_date="2018-06-01"), 422, "INVALID_PERSON", id="not-insured"),
    pytest.param(outpatient(visit_date="2027-02-30"), 422, "VALIDATION_FAILED", id="bad-date"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
@pytest.mark.parametrize("path", ["/v1/settlements", "/v1/settlements/pre-settle"])
async def test_bad_claims_are_typed_4xx_and_write_nothing(
    till: Till, world: Engine, path: str, body: dict[str, Any], status: int, code: str
):
    before = snapshot(world)
    response = await till.post(path, body, key=till.new_key())
    await assert_problem(response, status, code)
    assert snapshot(world) == before


async def test_card_session_of_another_terminal_expired_or_missing(
    till: Till, pharmacy: Till, world: Engine, clock: FakeClock
):
    before = snapshot(world)
    assert pharmacy.card_session is not None
    response = await till.post(
        "/v1/settlements", outpatient(), key=till.new_key(), session=pharmacy.card_session
    )
    await assert_problem(response, 403, "CARD_SESSION_WRONG_TERMINAL")
    response = await till.post("/v1/settlements", outpatient(), key="k1", with_session=False)
    await assert_problem(response, 401, "CARD_SESSION_INVALID")
    response = await till.post("/v1/eligibility", {}, session="cs1.not-a-token")
    await assert_problem(response, 401, "CARD_SESSION_INVALID")
    clock.now_s += 301  # card_session_ttl_s is 300
    response = await till.post("/v1/settlements", outpatient(), key=till.new_key())
    await assert_problem(response, 401, "CARD_SESSION_EXPIRED")
    assert snapshot(world) == before


async def test_another_institutions_settlement_does_not_leak(
    till: Till, pharmacy: Till, world: Engine
):
    settled = await till.settled(outpatient())
    before = snapshot(world)
    response = await pharmacy.get(f"/v1/settlements/{settled['setl_id']}")
    body = await assert_problem(response, 404, "SETTLEMENT_NOT_FOUND")
    missing = await assert_problem(
        await pharmacy.get("/v1/settlements/S20270115ffffffffffffffff"), 404, "SETTLEMENT_NOT_FOUND"
    )
    assert body["detail"] == missing["detail"]
    response = await pharmacy.post(
        f"/v1/settlements/{settled['setl_id']}/cancel", {"reason": "x"}, key=pharmacy.new_key()
    )
    await assert_problem(response, 404, "SETTLEMENT_NOT_FOUND")
    day = await (await pharmacy.get(f"/v1/settlements?date={TODAY}")).json()
    assert day["items"] == []
    assert snapshot(world) == before
    bad_date = await pharmacy.get("/v1/settlements?date=yesterday")
    await assert_problem(bad_date, 422, "VALIDATION_FAILED")


# --- inpatient --------------------------------------------------------------------------------


async def test_inpatient_admission_fee_lines_discharge(till: Till, world: Engine, signer: Signer):
    response = await till.post("/v1/admissions", {"admission_date": "2027-01-10"})
    assert response.status == 201, await response.text()
    admission = await response.json()
    admission_id = admission["admission_id"]
    assert admission["status"] == "open"
    path = f"/v1/admissions/{admission_id}"
    for lines in (
        [{"code": "DEMO-A-004", "quantity": 5, "unit_price_fen": 8_000}],
        [
            {"code": "DEMO-B-003", "quantity": 1, "unit_price_fen": 3_000_000},
            {"code": "DEMO-C-002", "quantity": 2, "unit_price_fen": 50_000},
        ],
    ):
        uploaded = await till.post(f"{path}/fee-lines", {"lines": lines})
        assert uploaded.status == 200, await uploaded.text()
    assert (await uploaded.json())["line_count"] == 3
    # With an Idempotency-Key, a retried upload adds its lines once.
    extra = {"lines": [{"code": "DEMO-A-003", "quantity": 1, "unit_price_fen": 4_000}]}
    key = till.new_key()
    first_upload = await till.post(f"{path}/fee-lines", extra, key=key)
    retried = await till.post(f"{path}/fee-lines", extra, key=key)
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert (
        await retried.json()
        == await first_upload.json()
        == {
            "admission_id": admission_id,
            "accepted": 1,
            "line_count": 4,
        }
    )
    bad = await till.post(
        f"{path}/fee-lines", {"lines": [{"code": "NOPE", "quantity": 1, "unit_price_fen": 1}]}
    )
    problem = await assert_problem(bad, 422, "UNKNOWN_CATALOGUE_CODE")
    assert "'NOPE'" in problem["detail"]  # the clerk learns which item code is wrong
    # Another patient's card cannot discharge this stay.
    other = Till(signer)
    await other.read_card(LEGACY_ACTIVE)
    before = snapshot(world)
    response = await other.post(f"{path}/discharge", {"discharge_date": TODAY}, key=other.new_key())
    await assert_problem(response, 403, "ADMISSION_OTHER_PERSON")
    assert snapshot(world) == before
    key = till.new_key()
    response = await till.post(f"{path}/discharge", {"discharge_date": TODAY}, key=key)
    assert response.status == 201, await response.text()
    settled = await response.json()
    check_split(settled)
    assert settled["visit_type"] == "inpatient"
    assert settled["mdtrt_id"] == admission_id
    assert settled["medfee_sumamt"] == 40_000 + 3_000_000 + 100_000 + 4_000
    assert settled["hifp_pay"] > 0
    replay = await till.post(f"{path}/discharge", {"discharge_date": TODAY}, key=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == settled
    closed = await till.post(
        f"{path}/fee-lines", {"lines": [{"code": "DEMO-A-004", "quantity": 1, "unit_price_fen": 1}]}
    )
    await assert_problem(closed, 409, "ADMISSION_CLOSED")
    again = await till.post(f"{path}/discharge", {"discharge_date": TODAY}, key=till.new_key())
    await assert_problem(again, 409, "ADMISSION_CLOSED")


async def test_inpatient_bad_input(till: Till, pharmacy: Till, world: Engine):
    response = await pharmacy.post("/v1/admissions", {"admission_date": TODAY})
    await assert_problem(response, 422, "VISIT_TYPE_NOT_ALLOWED")
    admission = await (await till.post("/v1/admissions", {"admission_date": TODAY})).json()
    path = f"/v1/admissions/{admission['admission_id']}"
    before = snapshot(world)
    empty = await till.post(f"{path}/discharge", {"discharge_date": TODAY}, key=till.new_key())
    await assert_problem(empty, 422, "INVALID_CLAIM")
    early = await till.post(
        f"{path}/discharge", {"discharge_date": "2027-01-01"}, key=till.new_key()
    )
    await assert_problem(early, 422, "INVALID_VISIT")
    foreign = await pharmacy.post(
        f"{path}/fee-lines", {"lines": [{"code": "DEMO-A-004", "quantity": 1, "unit_price_fen": 1}]}
    )
    await assert_problem(foreign, 404, "ADMISSION_NOT_FOUND")
    unknown = await till.post("/v1/admissions/A0/discharge", {"discharge_date": TODAY}, key="k")
    await assert_problem(unknown, 404, "ADMISSION_NOT_FOUND")
    assert snapshot(world) == before


# --- reconciliation ---------------------------------------------------------------------------


async def test_reconciliation_totals_details_and_mismatch_listing(
    till: Till, pharmacy: Till, world: Engine
):
    first = await till.settled(outpatient())
    second = await till.settled(outpatient(OUTPATIENT_LINES[:1]))
    cancelled = await till.settled(outpatient(OUTPATIENT_LINES[:2]))
    await till.post(
        f"/v1/settlements/{cancelled['setl_id']}/cancel", {"reason": "x"}, key=till.new_key()
    )
    valid = [first, second]

    def totals(count: int, shift_fen: int = 0) -> dict[str, Any]:
        return {
            "clr_type": "11",
            "stmt_date": TODAY,
            "fixmedins_setl_cnt": count,
            "medfee_sumamt": sum(s["medfee_sumamt"] for s in valid) + shift_fen,
            "fund_pay_sumamt": sum(s["fund_pay_sumamt"] for s in valid),
            "acct_pay": sum(s["acct_pay"] for s in valid),
            "psn_cash_pay": sum(s["psn_cash_pay"] for s in valid) + shift_fen,
        }

    match = await (await till.post("/v1/reconciliation/totals", totals(2))).json()
    assert match["stmt_rslt"] == "0"
    assert match["gateway"] == match["institution"]
    mismatch = await (await till.post("/v1/reconciliation/totals", totals(2, 100))).json()
    assert mismatch["stmt_rslt"] == "1"
    assert mismatch["institution"]["psn_cash_pay"] == mismatch["gateway"]["psn_cash_pay"] + 100
    zero = dict.fromkeys(("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay"), 0)
    inpatient = await (
        await till.post("/v1/reconciliation/totals", {**totals(0), **zero, "clr_type": "21"})
    ).json()
    assert inpatient["stmt_rslt"] == "0"
    assert inpatient["gateway"]["count"] == 0

    def detail(s: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        names = ("setl_id", "medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
        return {**{name: s[name] for name in names}, **overrides}

    same = {"clr_type": "11", "stmt_date": TODAY, "details": [detail(first), detail(second)]}
    result = await (await till.post("/v1/reconciliation/details", same)).json()
    assert result["stmt_rslt"] == "0"
    assert result["differences"] == []
    differing = {
        "clr_type": "11",
        "stmt_date": TODAY,
        "details": [
            detail(  # one fen more paid in cash, by the institution's books
                first,
                medfee_sumamt=first["medfee_sumamt"] + 1,
                psn_cash_pay=first["psn_cash_pay"] + 1,
            ),
            detail(cancelled),  # cancelled at the gateway: not a valid settlement
        ],
    }
    result = await (await till.post("/v1/reconciliation/details", differing)).json()
    assert result["stmt_rslt"] == "1"
    reasons = {d["setl_id"]: d["reason"] for d in result["differences"]}
    assert reasons == {
        first["setl_id"]: "amounts_differ",
        cancelled["setl_id"]: "missing_at_gateway",
        second["setl_id"]: "missing_at_institution",
    }
    # Operations listing: the hospital sees its own mismatches only; scope=all needs an
    # operations terminal (the pharmacy's, in this test's settings).
    own = await (await till.get(f"/v1/reconciliation/mismatches?date={TODAY}")).json()
    assert [(item["kind"], item["fixmedins_code"]) for item in own["items"]] == [
        ("totals", HOSPITAL),
        ("details", HOSPITAL),
    ]
    # The answer as it was given, as JSON (it was a string of JSON inside the JSON).
    totals_answer, details_answer = (item["figures"] for item in own["items"])
    assert (totals_answer["stmt_rslt"], details_answer["stmt_rslt"]) == ("1", "1")
    assert details_answer["difference_count"] == 3
    forbidden = await till.get(f"/v1/reconciliation/mismatches?date={TODAY}&scope=all")
    await assert_problem(forbidden, 403, "RECONCILIATION_FORBIDDEN")
    everything = await (
        await pharmacy.get(f"/v1/reconciliation/mismatches?date={TODAY}&scope=all")
    ).json()
    assert len(everything["items"]) == 2
    pharmacy_own = await (await pharmacy.get(f"/v1/reconciliation/mismatches?date={TODAY}")).json()
    assert pharmacy_own["items"] == []


async def test_reconciliation_bad_input(till: Till, world: Engine):
    before = snapshot(world)
    for body in (
        {"clr_type": "99", "stmt_date": TODAY, "details": []},
        {"clr_type": "11", "stmt_date": TODAY, "details": [{"setl_id": "x"}]},
        {"clr_type": "11", "stmt_date": "today", "details": []},
    ):
        response = await till.post("/v1/reconciliation/details", body)
        await assert_problem(response, 422, "VALIDATION_FAILED")
    assert snapshot(world) == before


def _statement(path: str, stmt_date: str, figures: dict[str, int]) -> dict[str, Any]:
    if path.endswith("totals"):
        return {"clr_type": "11", "stmt_date": stmt_date, "fixmedins_setl_cnt": 1, **figures}
    return {"clr_type": "11", "stmt_date": stmt_date, "details": [{"setl_id": "S1", **figures}]}


ADDS_UP = {"medfee_sumamt": 1_000, "fund_pay_sumamt": 600, "acct_pay": 300, "psn_cash_pay": 100}


@pytest.mark.parametrize("path", ["/v1/reconciliation/totals", "/v1/reconciliation/details"])
@pytest.mark.parametrize(
    ("stmt_date", "figures", "code"),
    [
        ("2027-01-16", ADDS_UP, "STATEMENT_DATE_OUT_OF_WINDOW"),  # tomorrow (Beijing)
        ("2026-01-13", ADDS_UP, "STATEMENT_DATE_OUT_OF_WINDOW"),  # 367 days back
        (TODAY, {**ADDS_UP, "psn_cash_pay": 101}, "STATEMENT_FIGURES_INCONSISTENT"),
        (TODAY, {**ADDS_UP, "medfee_sumamt": 999}, "STATEMENT_FIGURES_INCONSISTENT"),
    ],
    ids=["future", "over-a-year-back", "cash-off", "total-off"],
)
async def test_a_statement_out_of_window_or_not_adding_up_is_refused_and_stores_nothing(
    till: Till, world: Engine, path: str, stmt_date: str, figures: dict[str, int], code: str
):
    await till.settled(outpatient())
    before = snapshot(world)
    response = await till.post(path, _statement(path, stmt_date, figures))
    problem = await assert_problem(response, 422, code)
    assert "1000" not in problem["detail"]  # the detail names the row, never the amounts
    assert snapshot(world) == before
    with world.connect() as connection:
        runs = connection.exec_driver_sql("SELECT count(*) FROM reconciliation_runs").scalar()
    assert runs == 0


async def test_a_statement_of_a_year_back_today_included_is_compared(till: Till):
    for stmt_date in ("2026-01-14", TODAY):  # 366 days back; today
        result = await (
            await till.post(
                "/v1/reconciliation/totals",
                _statement("/totals", stmt_date, dict.fromkeys(ADDS_UP, 0))
                | {"fixmedins_setl_cnt": 0},
            )
        ).json()
        assert result["stmt_rslt"] == "0", result


async def test_a_settlement_listed_twice_is_reported_as_such(till: Till):
    first = await till.settled(outpatient())
    names = ("setl_id", "medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
    row = {name: first[name] for name in names}
    body = {"clr_type": "11", "stmt_date": TODAY, "details": [row, row]}
    result = await (await till.post("/v1/reconciliation/details", body)).json()
    assert result["stmt_rslt"] == "1"
    assert result["difference_count"] == 1
    (difference,) = result["differences"]
    assert difference["setl_id"] == first["setl_id"]
    assert difference["reason"] == "listed_twice"
    assert difference["gateway"]["medfee_sumamt"] == first["medfee_sumamt"]


@pytest.mark.parametrize("raw", ["%C2%B9", "%D9%A3", "1" * 19])
async def test_a_cursor_is_ascii_digits_only(till: Till, raw: str):
    # "¹" passed str.isdigit and then made int() raise (a 500); "٣" was read as cursor 3.
    for path in ("/v1/settlements", "/v1/crossprov/settlements"):
        response = await till.get(f"{path}?date={TODAY}&cursor={raw}")
        await assert_problem(response, 422, "VALIDATION_FAILED")


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_settlements_never_overdraw(
    till: Till, world: Engine, settings: Settings, clock: FakeClock
):
    """Parallel settlements for one person through two app instances (two connection pools,
    as two workers), each draining the account: every acknowledged settlement is recorded
    once, the balance never goes below zero, and what the accounts paid is what they lost."""
    start = (await till.eligibility())["insuinfo"][0]["balc"]
    # Big enough that the accounts run dry within the batch.
    lines = [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 80_000}]
    async with TestClient(TestServer(create_app(settings, clock=clock))) as second_client:
        second = Till(Signer(second_client, clock), card_session=till.card_session)
        responses = await asyncio.gather(
            *((till if n % 2 else second).settle(outpatient(lines)) for n in range(12))
        )
        bodies = [await response.json() for response in responses]
    assert [response.status for response in responses] == [201] * 12, bodies
    paid_fen = sum(body["acct_pay"] for body in bodies)
    end = (await till.eligibility())["insuinfo"][0]["balc"]
    assert end >= 0
    assert start - end == paid_fen
    assert len({body["setl_id"] for body in bodies}) == 12


@pytest.mark.parametrize(("rows", "status"), [(2_000, 200), (2_001, 422)])
async def test_3202_takes_the_promised_2000_rows_of_the_longest_form(
    till: Till, rows: int, status: int
):
    # 40-character setl_ids of astral characters, sent as \\u escapes (12 bytes each): the
    # longest JSON a row can be, so the body is as large as 2,000 valid rows can make it.
    def setl_id(n: int) -> str:
        return "".join(chr(0x1D7D8 + int(digit)) for digit in f"{n:040d}")

    details = [{"setl_id": setl_id(n), **ADDS_UP} for n in range(rows)]
    body = json.dumps({"clr_type": "11", "stmt_date": TODAY, "details": details}).encode()
    assert len(body) > 1024 * 1024  # far above the 64 KiB default body limit
    response = await till.post("/v1/reconciliation/details", body)
    if status == 422:
        await assert_problem(response, 422, "VALIDATION_FAILED")
        return
    assert response.status == 200, await response.text()
    result = await response.json()
    assert result["difference_count"] == 2_000  # none of them is the gateway's
    assert len(result["differences"]) == 1_000  # the answer lists the first 1,000
    assert {d["reason"] for d in result["differences"]} == {"missing_at_gateway"}
