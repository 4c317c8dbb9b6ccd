"""The national-interface door in-process: sign-in, 1101, an outpatient visit
2201→2204→2206→2207 and its 2208, a pharmacy purchase 2101→2102, msgid idempotency, 2601,
and bad envelopes refused with a typed code and nothing written."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from card_auth_testkit import NEW_ACTIVE, CardTerminal
from fsi_testkit import FSI_PATH, His, card_of, refused_code, register_operators
from gateway_testkit import OTHER_TERMINAL, PHARMACY, SECRETS, Client, FakeClock, Signer
from settlement_api_testkit import TODAY, assert_ledger_balanced, load_insured_world, snapshot
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.fsi.store import FsiSignIn

CARD = NEW_ACTIVE  # holder 0's active third-generation card
LINE_A = {"med_list_codg": "DEMO-A-002", "cnt": 1, "pric": "25.00", "feedetl_sn": "1"}
LINE_B = {"med_list_codg": "DEMO-B-001", "cnt": "2", "pric": 30, "feedetl_sn": "2"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The demo PKI and legacy master key, so the terminal can authenticate the card. "auto"
    # gives them only to an embedded SQLite database: PostgreSQL answered 503
    # CARD_AUTH_UNAVAILABLE ("no card trust root") without this.
    return {"demo_world": "on"}


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


def card_input(**extra: Any) -> dict[str, Any]:
    card_sn, card_no = card_of(CARD)
    return {"mdtrt_cert_type": "03", "mdtrt_cert_no": card_no, "card_sn": card_sn, **extra}


async def outpatient_visit(his: His) -> tuple[str, dict[str, Any]]:
    registered = await his.ok("2201", {"data": {**card_input(), "begntime": f"{TODAY} 09:00:00"}})
    mdtrt_id = registered["data"]["mdtrt_id"]
    lines = [{**line, "mdtrt_id": mdtrt_id, "chrg_bchno": "B1"} for line in (LINE_A, LINE_B)]
    uploaded = await his.ok("2204", {"feedetail": lines})
    assert [row["det_item_fee_sumamt"] for row in uploaded["result"]] == [25, 60]
    return mdtrt_id, {"data": {**card_input(), "mdtrt_id": mdtrt_id, "medfee_sumamt": "85.00"}}


async def test_person_information_1101(his: His) -> None:
    output = await his.ok("1101", {"data": card_input()})
    base = output["baseinfo"]
    assert base["psn_no"]
    assert len(base["certno"]) == 18
    assert base["psn_name"]
    assert output["insuinfo"][0]["insuplc_admdvs"] == "310000"
    assert output["insuinfo"][0]["insutype"] == "310"


async def test_outpatient_visit_settles_like_v1_and_replays_byte_for_byte(
    his: His, world: Engine
) -> None:
    mdtrt_id, settle_input = await outpatient_visit(his)
    estimate = (await his.ok("2206", settle_input))["setlinfo"]
    msgid = his.msgid()
    first = await his.post_raw(his.envelope("2207", settle_input, msgid=msgid))
    first_text = await first.text()
    settled = (await first.json())["output"]["setlinfo"]
    for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay"):
        assert settled[name] == estimate[name]
    assert settled["medfee_sumamt"] == 85
    assert settled["medfee_sumamt"] == round(
        settled["fund_pay_sumamt"] + settled["acct_pay"] + settled["psn_cash_pay"], 2
    )
    assert settled["mdtrt_id"] == mdtrt_id
    before = snapshot(world)
    again = await his.post_raw(his.envelope("2207", settle_input, msgid=msgid))
    assert await again.text() == first_text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert snapshot(world) == before
    # The same msgid with another input: a msgid conflict, infcode -2, nothing written.
    other = await his.call(
        "2207", {"data": {**settle_input["data"], "medfee_sumamt": 1}}, msgid=msgid
    )
    assert other["infcode"] == -2
    assert refused_code(other) == "FSI_MSGID_REUSED"
    assert snapshot(world) == before
    cancelled = await his.ok(
        "2208", {"data": {"setl_id": settled["setl_id"], "mdtrt_id": mdtrt_id}}
    )
    assert cancelled["setlinfo"]["pdn_cash_pay"] == settled["psn_cash_pay"]
    assert_ledger_balanced(world)


async def test_a_total_that_is_not_the_lines_sum_writes_nothing(his: His, world: Engine) -> None:
    _mdtrt_id, settle_input = await outpatient_visit(his)
    before = snapshot(world)
    answer = await his.call("2207", {"data": {**settle_input["data"], "medfee_sumamt": "85.01"}})
    assert refused_code(answer) == "FSI_AMOUNT_MISMATCH"
    assert snapshot(world) == before


async def test_two_at_once_settle_once(his: His, world: Engine) -> None:
    _mdtrt_id, settle_input = await outpatient_visit(his)
    msgid = his.msgid()
    env = his.envelope("2207", settle_input, msgid=msgid)
    answers = await asyncio.gather(*(his.post_raw(env) for _ in range(4)))
    bodies = [await answer.json() for answer in answers]
    settled = {body["output"]["setlinfo"]["setl_id"] for body in bodies if body["infcode"] == 0}
    assert len(settled) == 1
    for body in bodies:
        assert body["infcode"] == 0 or refused_code(body) == "FSI_MSGID_IN_USE"
    with Session(world) as session:
        from settlement.store import SettlementRow

        assert session.scalar(select(func.count()).select_from(SettlementRow)) == 1


async def test_pharmacy_purchase(world: Engine, client: Client, clock: FakeClock) -> None:
    pharmacy_terminal = Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL])
    response = await CardTerminal(pharmacy_terminal).authenticate(CARD)
    assert response.status == 200, await response.text()
    his = His(client, clock, fixmedins_code=PHARMACY)
    await his.sign_in()
    body = {"data": {**card_input(), "med_type": "41", "medfee_sumamt": 37.5},
            "feedetail": [{"med_list_codg": "DEMO-A-001", "cnt": 3, "pric": "12.50"}]}  # fmt: skip
    estimate = (await his.ok("2101", body))["setlinfo"]
    settled = (await his.ok("2102", body))["setlinfo"]
    assert settled["medfee_sumamt"] == estimate["medfee_sumamt"] == 37.5
    assert settled["setl_id"]
    assert_ledger_balanced(world)


async def test_reversal_of_a_committed_settle_and_of_one_never_done(
    his: His, world: Engine
) -> None:
    _mdtrt_id, settle_input = await outpatient_visit(his)
    dropped = his.msgid()
    await his.post_raw(his.envelope("2207", settle_input, msgid=dropped))  # answer "lost"
    undone = await his.call("2601", {"data": {"omsgid": dropped, "oinfno": "2207"}})
    assert undone["infcode"] == 0, undone["err_msg"]
    with Session(world) as session:
        from settlement.store import SettlementRow, SettlementStatus

        statuses = session.scalars(select(SettlementRow.status)).all()
        setl_ids = session.scalars(select(SettlementRow.setl_id)).all()
        assert statuses == [SettlementStatus.CANCELLED]
    # warn_msg says what was undone (docs/national-interface.md §3).
    assert undone["warn_msg"] == f"settlement {setl_ids[0]} cancelled"
    # A settle whose original never arrived: reversed first, then refused when it arrives.
    _second, second_input = await outpatient_visit(his)
    never = his.msgid()
    await his.ok("2601", {"data": {"omsgid": never, "oinfno": "2207"}})
    before = snapshot(world)
    late = await his.call("2207", second_input, msgid=never)
    assert late["infcode"] == -2
    assert refused_code(late) == "FSI_MSGID_REVERSED"
    assert snapshot(world) == before
    # Only the listed codes may be reversed.
    refused = await his.call("2601", {"data": {"omsgid": dropped, "oinfno": "2206"}})
    assert refused_code(refused) == "FSI_REVERSAL_REFUSED"
    assert_ledger_balanced(world)


def _refused_as_reversed(answer: dict[str, Any], *, setl_id: str, reversal: str) -> None:
    """A resend of a settle a 2601 undid: -2 FSI_MSGID_REVERSED naming the settlement and the
    reversal's msgid (docs/national-interface.md §2), never the stored success."""
    assert answer["infcode"] == -2, answer
    assert refused_code(answer) == "FSI_MSGID_REVERSED"
    assert f"settlement {setl_id} was cancelled by 2601 msgid {reversal}" in answer["err_msg"]
    assert answer["output"] == {}


async def test_a_settle_resent_after_its_reversal_is_refused_not_replayed(
    his: His, world: Engine
) -> None:
    _mdtrt_id, settle_input = await outpatient_visit(his)
    dropped = his.msgid()
    first = await (await his.post_raw(his.envelope("2207", settle_input, msgid=dropped))).json()
    setl_id = first["output"]["setlinfo"]["setl_id"]  # the answer the HIS never got
    reversal = his.msgid()
    await his.ok("2601", {"data": {"omsgid": dropped, "oinfno": "2207"}}, msgid=reversal)
    before = snapshot(world)
    resent = await his.post_raw(his.envelope("2207", settle_input, msgid=dropped))
    assert "Idempotent-Replayed" not in resent.headers
    _refused_as_reversed(await resent.json(), setl_id=setl_id, reversal=reversal)
    assert snapshot(world) == before
    # A settlement cancelled by 2208 (the HIS named its setl_id: it had the answer) still
    # replays its settle's answer, byte for byte.
    _second, second_input = await outpatient_visit(his)
    msgid = his.msgid()
    kept = await his.post_raw(his.envelope("2207", second_input, msgid=msgid))
    kept_text = await kept.text()
    second_id = json.loads(kept_text)["output"]["setlinfo"]["setl_id"]
    await his.ok("2208", {"data": {"setl_id": second_id}})
    again = await his.post_raw(his.envelope("2207", second_input, msgid=msgid))
    assert await again.text() == kept_text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_ledger_balanced(world)


async def test_a_pharmacy_settle_resent_after_its_reversal_is_refused(
    world: Engine, client: Client, clock: FakeClock
) -> None:
    pharmacy_terminal = Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL])
    response = await CardTerminal(pharmacy_terminal).authenticate(CARD)
    assert response.status == 200, await response.text()
    his = His(client, clock, fixmedins_code=PHARMACY)
    await his.sign_in()
    body = {"data": {**card_input(), "med_type": "41"},
            "feedetail": [{"med_list_codg": "DEMO-A-001", "cnt": 3, "pric": "12.50"}]}  # fmt: skip
    dropped = his.msgid()
    first = await (await his.post_raw(his.envelope("2102", body, msgid=dropped))).json()
    reversal = his.msgid()
    await his.ok("2601", {"data": {"omsgid": dropped, "oinfno": "2102"}}, msgid=reversal)
    before = snapshot(world)
    resent = await his.call("2102", body, msgid=dropped)
    _refused_as_reversed(resent, setl_id=first["output"]["setlinfo"]["setl_id"], reversal=reversal)
    assert snapshot(world) == before
    assert_ledger_balanced(world)


async def test_sign_out_ends_the_sign_no(his: His) -> None:
    await his.ok("9002", {"signOut": {"sign_no": his.sign_no, "opter_no": his.opter}})
    answer = await his.call("1101", {"data": card_input()})
    assert refused_code(answer) == "FSI_SIGN_NO_INVALID"


async def test_unknown_operator_cannot_sign_in(
    world: Engine, client: Client, clock: FakeClock
) -> None:
    his = His(client, clock, opter="NOBODY")
    answer = await his.call("9001", {"signIn": {}})
    assert refused_code(answer) == "FSI_OPERATOR_UNKNOWN"
    with Session(world) as session:
        assert session.scalar(select(func.count()).select_from(FsiSignIn)) == 0


async def test_a_card_not_read_at_the_device_is_refused(
    world: Engine, client: Client, clock: FakeClock
) -> None:
    his = His(client, clock)
    await his.sign_in()
    answer = await his.call("1101", {"data": card_input()})
    assert refused_code(answer) == "FSI_CARD_NOT_PRESENT"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda env: env.pop("msgid"), "FSI_ENVELOPE_INVALID"),
        (lambda env: env.update(infno=2207), "FSI_ENVELOPE_INVALID"),
        (lambda env: env.update(input=[1, 2]), "FSI_ENVELOPE_INVALID"),
        (lambda env: env.update(infno="4101"), "FSI_INFNO_UNSUPPORTED"),
        (lambda env: env.update(sign_no="WRONG"), "FSI_SIGN_NO_INVALID"),
        (lambda env: env.update(fixmedins_code="H99999999999"), "FSI_INSTITUTION_UNKNOWN"),
        (
            lambda env: env["input"]["data"].update(mdtrt_cert_type="02"),
            "FSI_CERT_TYPE_UNSUPPORTED",
        ),
        (lambda env: env["input"]["data"].update(medfee_sumamt="1.001"), "FSI_ENVELOPE_INVALID"),
        (lambda env: env["input"]["data"].update(mdtrt_id=None), "FSI_ENVELOPE_INVALID"),
    ],
)
async def test_bad_envelopes_are_refused_and_write_nothing(
    his: His, world: Engine, mutate: Any, code: str
) -> None:
    _mdtrt_id, settle_input = await outpatient_visit(his)
    env = his.envelope("2207", settle_input)
    mutate(env)
    before = snapshot(world)
    response = await his.post_raw(env)
    assert response.status == 200
    assert refused_code(await response.json()) == code
    assert snapshot(world) == before


async def test_transport_level_problems_stay_http_errors(his: His) -> None:
    not_json = await his.post_raw(b"{not json")
    assert not_json.status == 400
    assert (await not_json.json())["code"] == "MALFORMED_JSON"
    oversize = await his.post_raw(b'{"input": "' + b"x" * (1024 * 1024) + b'"}')
    assert oversize.status == 413
    elsewhere = await his.post_raw(his.envelope("1101", {}), path="/fsi/other")
    assert elsewhere.status == 404


async def test_the_infno_may_be_appended_to_the_url(his: His) -> None:
    env = his.envelope("1101", {"data": card_input()})
    response = await his.post_raw(env, path=FSI_PATH + "/1101")
    assert (await response.json())["infcode"] == 0
    wrong = await his.post_raw(
        his.envelope("1101", {"data": card_input()}), path=FSI_PATH + "/2207"
    )
    assert refused_code(await wrong.json()) == "FSI_ENVELOPE_INVALID"


@pytest.mark.parametrize("infno", ["%C2%B9%C2%B9%C2%B9%C2%B9", "%D9%A1%D9%A1%D9%A0%D9%A1"])
async def test_an_infno_in_the_url_is_ascii_digits_only(his: His, infno: str) -> None:
    """ "¹¹¹¹" and "١١٠١" (Arabic-Indic 1101) pass str.isdigit: the address does not exist."""
    response = await his.post_raw(
        his.envelope("1101", {"data": card_input()}), path=f"{FSI_PATH}/{infno}"
    )
    assert response.status == 404
