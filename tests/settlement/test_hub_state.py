"""The hub simulator's books (settlement.hub.state.HubState), driven directly: every
transaction, idempotency by msgid, reversal before and after commit, tombstones, cancels,
3201/3202 to the cent, and concurrent calls."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import pytest

from settlement.catalogue import Catalogue, load_catalogue
from settlement.claim import AccountBalances, ClaimLine, InsuredPerson, Visit, YearToDate
from settlement.crossprov import wire
from settlement.crossprov.wire import BEIJING, HubRequest, HubResponse
from settlement.engine import settle
from settlement.hub.persons import RemotePerson, derive_person
from settlement.hub.province import Province, load_provinces
from settlement.hub.state import HubState
from settlement.policy import HospitalLevel, VisitType

SEED = "hub-unit-seed"
NOW = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Beijing
VISIT_DAY = "2026-05-30"
INSTITUTION = "H31000000001"
OTHER_INSTITUTION = "H31000000002"
_sequence = itertools.count(1)


@cache
def provinces() -> dict[str, Province]:
    return dict(load_provinces())


@cache
def catalogue() -> Catalogue:
    return load_catalogue("demo")


def new_state() -> HubState:
    return HubState(seed=SEED, provinces=provinces(), catalogue=catalogue())


def new_msgid(institution: str = INSTITUTION) -> str:
    return wire.make_msgid(institution, NOW, next(_sequence) % 10_000)


def request(
    infno: str,
    payload: dict[str, Any],
    *,
    insuplc: str = "320000",
    msgid: str | None = None,
    institution: str = INSTITUTION,
) -> HubRequest:
    return HubRequest.build(
        infno,
        msgid=msgid or new_msgid(institution),
        insuplc_admdvs=insuplc,
        fixmedins_code=institution,
        input=payload,
        at=NOW,
    )


def persons(prefix: str, *, retired: bool | None = None) -> Iterator[RemotePerson]:
    """Derived persons of a province, in psn_no order, optionally by retired flag."""
    for n in itertools.count(1):
        person = derive_person(SEED, f"{prefix}{n:013d}")
        assert person is not None
        if retired is None or person.retired is retired:
            yield person


def first_person(prefix: str = "32", *, retired: bool | None = None) -> RemotePerson:
    return next(persons(prefix, retired=retired))


def consultation(amount: str = "1234.50", code: str = "DEMO-A-002") -> list[dict[str, Any]]:
    return [{"list_code": code, "qty": 1, "pric": amount}]


def settle_input(
    psn_no: str,
    *,
    visit_type: str = "outpatient",
    lines: list[dict[str, Any]] | None = None,
    filing: str = "long_term_resident",
    day: str = VISIT_DAY,
    level: Any = 1,
    mdtrt_id: str = "MDT-1",
) -> dict[str, Any]:
    return {
        "psn_no": psn_no,
        "mdtrt_id": mdtrt_id,
        "visit_type": visit_type,
        "hospital_level": level,
        "visit_date": day,
        "filing_type": filing,
        "lines": lines if lines is not None else consultation(),
    }


def call(
    state: HubState, infno: str, payload: dict[str, Any], *, now: dt.datetime = NOW, **kw: Any
) -> HubResponse:
    return state.handle(request(infno, payload, **kw), now=now)


def ok(response: HubResponse) -> dict[str, Any]:
    assert response.ok, (response.err_code, response.err_msg)
    # Every answer survives the strict parser the gateway uses.
    assert wire.parse_response(response.to_json(), msgid=response.inf_refmsgid) == response
    return dict(response.output)


def refused(response: HubResponse, err_code: str) -> None:
    assert not response.ok
    assert response.err_code == err_code, (response.err_code, response.err_msg)
    assert response.output == {}


def balance_fen(state: HubState, psn_no: str, insuplc: str = "320000") -> int:
    output = ok(call(state, "1101", {"psn_no": psn_no}, insuplc=insuplc))
    return wire.yuan_to_fen(output["insuinfo"][0]["balc"])


def opening_fen(person: RemotePerson) -> int:
    return person.opening_current_year_fen + person.opening_past_years_fen


# --- 1101 --------------------------------------------------------------------------------------


def test_person_info_answers_the_derived_person() -> None:
    state = new_state()
    retired, working = first_person(retired=True), first_person(retired=False)
    for person, psn_type in ((retired, "21"), (working, "11")):
        output = ok(call(state, "1101", {"psn_no": person.psn_no}))
        age = (
            2026
            - person.birth_date.year
            - ((person.birth_date.month, person.birth_date.day) > (6, 1))
        )
        assert output["baseinfo"] == {"psn_no": person.psn_no, "age": age}
        assert output["insuinfo"] == [
            {
                "insuplc_admdvs": "320000",
                "insutype": "310",
                "psn_type": psn_type,
                "balc": wire.fen_to_yuan(opening_fen(person)),
            }
        ]
    # A city code of a served province is that province.
    assert ok(call(state, "1101", {"psn_no": working.psn_no}, insuplc="320500"))


def test_same_seed_same_people_other_seed_other_people() -> None:
    a, b = derive_person(SEED, "320000000000001"), derive_person(SEED, "320000000000001")
    assert a == b
    other = derive_person("another-seed", "320000000000001")
    assert other is not None
    assert (other.birth_date, other.opening_past_years_fen) != (
        a.birth_date,  # type: ignore[union-attr]
        a.opening_past_years_fen,  # type: ignore[union-attr]
    )
    assert "000000000" not in repr(a)  # masked


@pytest.mark.parametrize(
    ("psn_no", "insuplc", "err_code"),
    [
        ("330000000000001", "320000", "PERSON_NOT_FOUND"),  # insured in Zhejiang, not Jiangsu
        ("32000000000001", "320000", "PERSON_NOT_FOUND"),  # 14 digits
        ("32000000000000A", "320000", "PERSON_NOT_FOUND"),
        (None, "320000", "PERSON_NOT_FOUND"),
        ("120000000000001", "120000", "UNKNOWN_PROVINCE"),  # Tianjin: not served
    ],
)
def test_person_info_refusals(psn_no: object, insuplc: str, err_code: str) -> None:
    refused(call(new_state(), "1101", {"psn_no": psn_no}, insuplc=insuplc), err_code)


# --- settle ------------------------------------------------------------------------------------


def _engine(
    person: RemotePerson, province: Province, *, temporary: bool, amount_fen: int = 123_450
) -> Any:
    return settle(
        lines=[ClaimLine("DEMO-A-002", 1, amount_fen)],
        person=InsuredPerson(retired=person.retired, birth_date=person.birth_date),
        visit=Visit(dt.date(2026, 5, 30), VisitType.OUTPATIENT, HospitalLevel.LEVEL_1),
        policy=province.policy_for(temporary=temporary),
        catalogue=catalogue(),
        year_to_date=YearToDate(),
        balances=AccountBalances(person.opening_current_year_fen, person.opening_past_years_fen),
    )


@pytest.mark.parametrize("prefix", ["11", "32", "33", "34", "44", "51"])
def test_settle_prices_under_the_insured_places_policy(prefix: str) -> None:
    state = new_state()
    person = first_person(prefix)
    province = provinces()[prefix]
    output = ok(call(state, "2207", settle_input(person.psn_no), insuplc=province.admdvs))
    setlinfo = output["setlinfo"]
    amounts = wire.setlinfo_amounts_fen(setlinfo)
    expected = _engine(person, province, temporary=False)
    for name in wire.SETLINFO_AMOUNT_FIELDS:
        assert amounts[name] == getattr(expected, name, 0), name
    assert setlinfo["psn_no"] == person.psn_no
    assert setlinfo["mdtrt_id"] == "MDT-1"
    assert setlinfo["setl_time"] == "2026-06-01 10:00:00"  # Beijing
    assert setlinfo["insuplc_admdvs"] == province.admdvs
    assert (
        sum(wire.yuan_to_fen(row["fund_payamt"]) for row in output["setldetail"])
        == (amounts["fund_pay_sumamt"])
    )
    # The account paid what setlinfo says, and balc is what 1101 now reports.
    after = balance_fen(state, person.psn_no, province.admdvs)
    assert after == opening_fen(person) - amounts["acct_pay"] == amounts["balc"]


def test_same_claim_same_person_splits_differently_by_insured_province() -> None:
    # One person's figures under each province's policy: the policy is the insured place's.
    person = RemotePerson("320000000000001", "32", dt.date(1990, 1, 1), False, 0, 0)
    splits = {
        prefix: _engine(person, province, temporary=False, amount_fen=300_000)
        for prefix, province in provinces().items()
    }
    assert len(splits) == 6
    assert len({s.fund_pay_sumamt for s in splits.values()}) == 6
    # Jiangsu by hand: band 600 yuan, then 75 % at level 1 for an employee under 45.
    assert splits["32"].act_pay_dedc == 60_000
    assert splits["32"].hifp_pay == (300_000 - 60_000) * 7500 // 10_000


def test_temporary_filing_lowers_every_fund_ratio_by_the_provinces_reduction() -> None:
    for province in provinces().values():
        reduction = province.temporary_case_reduction_bp
        assert reduction > 0
        base, temp = province.policy, province.temporary_policy
        assert temp.outpatient.copay_fund_ratio_bp.employee_44_and_under.level_1 == max(
            0, base.outpatient.copay_fund_ratio_bp.employee_44_and_under.level_1 - reduction
        )
        assert temp.inpatient.fund_ratio_bp.retiree == max(
            1, base.inpatient.fund_ratio_bp.retiree - reduction
        )
        assert temp.outpatient.self_pay_band_fen == base.outpatient.self_pay_band_fen
    # Through the hub: a referral pays the fund less than a long-term filing, same claim.
    person = first_person("34")
    big = consultation("8000.00")
    long_term = ok(
        call(new_state(), "2207", settle_input(person.psn_no, lines=big), insuplc="340000")
    )
    referral = ok(
        call(
            new_state(),
            "2207",
            settle_input(person.psn_no, lines=big, filing="referral"),
            insuplc="340000",
        )
    )
    fund = [wire.yuan_to_fen(o["setlinfo"]["fund_pay_sumamt"]) for o in (long_term, referral)]
    assert fund[1] < fund[0]
    expected = _engine(person, provinces()["34"], temporary=True, amount_fen=800_000)
    assert fund[1] == expected.fund_pay_sumamt


def test_settle_is_idempotent_by_msgid() -> None:
    state = new_state()
    person = first_person()
    first_request = request("2207", settle_input(person.psn_no))
    first = state.handle(first_request, now=NOW)
    again = state.handle(first_request, now=NOW + dt.timedelta(minutes=5))
    assert again == first  # the stored first answer, times included
    amounts = wire.setlinfo_amounts_fen(ok(first)["setlinfo"])
    assert balance_fen(state, person.psn_no) == opening_fen(person) - amounts["acct_pay"]
    totals = ok(call(state, "3201", _period("2026-06-01", "2026-06-01")))
    assert totals["settled"]["count"] == 1


def test_a_used_msgid_with_another_call_is_refused_and_changes_nothing() -> None:
    state = new_state()
    person = first_person()
    msgid = new_msgid()
    ok(call(state, "2207", settle_input(person.psn_no), msgid=msgid))
    balance = balance_fen(state, person.psn_no)
    other = settle_input(person.psn_no, lines=consultation("1.00"))
    refused(call(state, "2207", other, msgid=msgid), "MSGID_REUSED")
    refused(
        call(state, "2601", {"omsgid": new_msgid(), "oinfno": "2207"}, msgid=msgid), "MSGID_REUSED"
    )
    assert balance_fen(state, person.psn_no) == balance


@pytest.mark.parametrize(
    ("infno", "changes", "err_code"),
    [
        ("2207", {"lines": consultation(code="NOT-IN-CATALOGUE")}, "UNKNOWN_ITEM"),
        ("2102", {}, "INVALID_INPUT"),  # an outpatient visit settled as pharmacy
        ("2207", {"visit_type": "dental"}, "INVALID_INPUT"),
        ("2207", {"hospital_level": 4}, "INVALID_INPUT"),
        ("2207", {"hospital_level": True}, "INVALID_INPUT"),
        ("2207", {"visit_date": "2026-06-02"}, "INVALID_INPUT"),  # tomorrow in Beijing
        ("2207", {"visit_date": "30/05/2026"}, "INVALID_INPUT"),
        ("2207", {"visit_date": "2018-12-31"}, "POLICY_NOT_APPLICABLE"),
        ("2207", {"filing_type": "holiday"}, "INVALID_INPUT"),
        ("2207", {"mdtrt_id": ""}, "INVALID_INPUT"),
        ("2207", {"lines": []}, "INVALID_INPUT"),
        (
            "2207",
            {"lines": [{"list_code": "DEMO-A-002", "qty": 1.0, "pric": "1.00"}]},
            "INVALID_INPUT",
        ),
        ("2207", {"lines": [{"list_code": "DEMO-A-002", "qty": 1, "pric": 1.0}]}, "INVALID_INPUT"),
        (
            "2207",
            {"lines": [{"list_code": "DEMO-A-002", "qty": 1, "pric": "1.005"}]},
            "INVALID_INPUT",
        ),
        (
            "2207",
            {"lines": [{"list_code": "DEMO-A-002", "qty": 0, "pric": "1.00"}]},
            "INVALID_INPUT",
        ),
        ("2207", {"lines": ["DEMO-A-002"]}, "INVALID_INPUT"),
    ],
)
def test_settle_refusals_change_nothing_and_are_stored(
    infno: str, changes: dict[str, Any], err_code: str
) -> None:
    state = new_state()
    person = first_person()
    envelope = request(infno, {**settle_input(person.psn_no), **changes})
    refused(state.handle(envelope, now=NOW), err_code)
    assert state.handle(envelope, now=NOW).err_code == err_code  # the stored answer
    assert balance_fen(state, person.psn_no) == opening_fen(person)
    assert ok(call(state, "5201", {"omsgid": envelope.msgid})) == {
        "omsgid": envelope.msgid,
        "status": "none",
        "infno": infno,
        "err_code": err_code,
    }


# --- 2601 reversal -----------------------------------------------------------------------------


def test_reversal_after_commit_restores_balances_and_accumulators() -> None:
    state = new_state()
    person = first_person()
    big = consultation("8000.00")  # beyond the current-year account: the band fills
    settled = request("2207", settle_input(person.psn_no, lines=big))
    first = wire.setlinfo_amounts_fen(ok(state.handle(settled, now=NOW))["setlinfo"])
    assert first["act_pay_dedc"] > 0  # the band moved: its restoration is visible below
    assert first["hifp_pay"] > 0
    output = ok(call(state, "2601", {"omsgid": settled.msgid, "oinfno": "2207"}))
    assert output == {
        "omsgid": settled.msgid,
        "oinfno": "2207",
        "reversed": True,
        "status": "reversed",
    }
    assert balance_fen(state, person.psn_no) == opening_fen(person)
    # Same claim again: the same split, so the band and the cap were given back too.
    again = wire.setlinfo_amounts_fen(
        ok(call(state, "2207", settle_input(person.psn_no, lines=big)))["setlinfo"]
    )
    assert again == first
    assert ok(call(state, "5201", {"omsgid": settled.msgid}))["status"] == "reversed"
    # Idempotent and final: a second reversal undoes nothing more.
    second = ok(call(state, "2601", {"omsgid": settled.msgid, "oinfno": "2207"}))
    assert second["reversed"] is False
    assert balance_fen(state, person.psn_no) == opening_fen(person) - again["acct_pay"]
    # A retry of the reversed settle is refused, not replayed from the stored answer.
    refused(state.handle(settled, now=NOW), "MSG_REVERSED")


def test_reversal_before_commit_leaves_a_tombstone() -> None:
    state = new_state()
    person = first_person()
    late = request("2207", settle_input(person.psn_no))
    output = ok(call(state, "2601", {"omsgid": late.msgid, "oinfno": "2207"}))
    assert output["reversed"] is False
    assert output["status"] == "reversed"
    refused(state.handle(late, now=NOW), "MSG_REVERSED")
    assert balance_fen(state, person.psn_no) == opening_fen(person)
    assert ok(call(state, "5201", {"omsgid": late.msgid})) == {
        "omsgid": late.msgid,
        "status": "reversed",
        "infno": "2207",
    }
    totals = ok(call(state, "3201", _period("2026-06-01", "2026-06-01")))
    assert totals["settled"]["count"] == totals["reversed"]["count"] == 0


def test_reversing_a_refused_call_tombstones_it() -> None:
    state = new_state()
    person = first_person()
    bad = request("2207", settle_input(person.psn_no, lines=consultation(code="NOPE")))
    refused(state.handle(bad, now=NOW), "UNKNOWN_ITEM")
    assert ok(call(state, "2601", {"omsgid": bad.msgid, "oinfno": "2207"}))["reversed"] is False
    refused(state.handle(bad, now=NOW), "MSG_REVERSED")


def test_reversal_is_idempotent_by_its_own_msgid() -> None:
    state = new_state()
    person = first_person()
    settled = request("2207", settle_input(person.psn_no))
    ok(state.handle(settled, now=NOW))
    reversal = request("2601", {"omsgid": settled.msgid, "oinfno": "2207"})
    first = state.handle(reversal, now=NOW)
    assert ok(first)["reversed"] is True
    assert state.handle(reversal, now=NOW) == first  # the retry gets the same answer


@pytest.mark.parametrize(
    ("payload", "err_code"),
    [
        ({"omsgid": "nonsense", "oinfno": "2207"}, "INVALID_INPUT"),
        ({"oinfno": "2207"}, "INVALID_INPUT"),
        ({"omsgid": "H31000000001202606010000000001"}, "INVALID_INPUT"),
        ({"omsgid": "H31000000001202606010000000001", "oinfno": "1101"}, "NOT_REVERSIBLE"),
        ({"omsgid": "H31000000001202606010000000001", "oinfno": "5201"}, "NOT_REVERSIBLE"),
    ],
)
def test_reversal_input_refusals(payload: dict[str, Any], err_code: str) -> None:
    refused(call(new_state(), "2601", payload), err_code)


def test_reversal_must_name_the_messages_own_infno() -> None:
    state = new_state()
    settled = request("2207", settle_input(first_person().psn_no))
    ok(state.handle(settled, now=NOW))
    refused(call(state, "2601", {"omsgid": settled.msgid, "oinfno": "2102"}), "INVALID_INPUT")
    assert state.message_status(settled.msgid) is wire.MessageStatus.SETTLED


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_gives_everything_back_and_only_once() -> None:
    state = new_state()
    person = first_person()
    settled = request("2207", settle_input(person.psn_no))
    setlinfo = ok(state.handle(settled, now=NOW))["setlinfo"]
    cancel = request("2208", {"psn_no": person.psn_no, "setl_id": setlinfo["setl_id"]})
    output = ok(state.handle(cancel, now=NOW))
    info = output["setlinfo"]
    assert info["setl_id"] != setlinfo["setl_id"]
    assert info["orig_setl_id"] == setlinfo["setl_id"]
    negated = wire.setlinfo_amounts_fen(info, signed=True)
    original = wire.setlinfo_amounts_fen(setlinfo)
    for name in wire.SETLINFO_AMOUNT_FIELDS:
        if name != "balc":
            assert negated[name] == -original[name], name
    assert negated["balc"] == opening_fen(person) == balance_fen(state, person.psn_no)
    # The retry with the same msgid gets the stored answer; a new cancel is refused.
    assert state.handle(cancel, now=NOW) == state.handle(cancel, now=NOW)
    assert ok(state.handle(cancel, now=NOW)) == output
    again = {"psn_no": person.psn_no, "setl_id": setlinfo["setl_id"]}
    refused(call(state, "2208", again), "ALREADY_CANCELLED")
    assert balance_fen(state, person.psn_no) == opening_fen(person)
    assert ok(call(state, "5201", {"omsgid": settled.msgid}))["status"] == "cancelled"
    cancel_query = ok(call(state, "5201", {"omsgid": cancel.msgid}))
    assert cancel_query["status"] == "cancelled"
    assert cancel_query["setlinfo"] == info
    # A cancelled settlement cannot be reversed.
    refused(call(state, "2601", {"omsgid": settled.msgid, "oinfno": "2207"}), "ALREADY_CANCELLED")


def test_cancel_refusals() -> None:
    state = new_state()
    person, other = itertools.islice(persons("32"), 2)
    setl_id = ok(call(state, "2207", settle_input(person.psn_no)))["setlinfo"]["setl_id"]
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("2208", {"psn_no": person.psn_no, "setl_id": "SETL-NOPE"}, {}),
        ("2208", {"psn_no": other.psn_no, "setl_id": setl_id}, {}),  # another person's
        ("2103", {"psn_no": person.psn_no, "setl_id": setl_id}, {}),  # not its pair
        ("2208", {"psn_no": person.psn_no, "setl_id": setl_id}, {"institution": OTHER_INSTITUTION}),
        ("2208", {"psn_no": person.psn_no, "setl_id": setl_id}, {"insuplc": "330000"}),
    ]
    for infno, payload, kw in cases:
        refused(call(state, infno, payload, **kw), "SETTLEMENT_NOT_FOUND")
    refused(call(state, "2208", {"psn_no": person.psn_no}), "INVALID_INPUT")
    assert ok(call(state, "2208", {"psn_no": person.psn_no, "setl_id": setl_id}))


def test_cancel_of_a_reversed_settlement_is_refused() -> None:
    state = new_state()
    person = first_person()
    settled = request("2207", settle_input(person.psn_no))
    setl_id = ok(state.handle(settled, now=NOW))["setlinfo"]["setl_id"]
    ok(call(state, "2601", {"omsgid": settled.msgid, "oinfno": "2207"}))
    refused(call(state, "2208", {"psn_no": person.psn_no, "setl_id": setl_id}), "ALREADY_REVERSED")


def test_reversing_a_cancel_puts_the_settlement_back() -> None:
    state = new_state()
    person = first_person()
    settled = request("2207", settle_input(person.psn_no))
    setlinfo = ok(state.handle(settled, now=NOW))["setlinfo"]
    cancel = request("2208", {"psn_no": person.psn_no, "setl_id": setlinfo["setl_id"]})
    ok(state.handle(cancel, now=NOW))
    assert ok(call(state, "2601", {"omsgid": cancel.msgid, "oinfno": "2208"}))["reversed"] is True
    assert ok(call(state, "5201", {"omsgid": settled.msgid}))["status"] == "settled"
    assert ok(call(state, "5201", {"omsgid": cancel.msgid}))["status"] == "reversed"
    assert balance_fen(state, person.psn_no) == wire.yuan_to_fen(setlinfo["balc"])
    refused(state.handle(cancel, now=NOW), "MSG_REVERSED")
    # It can be cancelled again with a new msgid.
    ok(call(state, "2208", {"psn_no": person.psn_no, "setl_id": setlinfo["setl_id"]}))


def test_reversing_a_cancel_needs_the_money_still_in_the_account() -> None:
    state = new_state()
    person = next(p for p in persons("32") if p.opening_current_year_fen > 0)
    big = consultation("45000.00")  # within the outpatient counter limit (50,000 yuan)
    settled = ok(call(state, "2207", settle_input(person.psn_no, lines=big)))["setlinfo"]
    assert wire.yuan_to_fen(settled["acct_pay"]) > 0
    cancel = request("2208", {"psn_no": person.psn_no, "setl_id": settled["setl_id"]})
    ok(state.handle(cancel, now=NOW))
    drained = ok(call(state, "2207", settle_input(person.psn_no, lines=big, mdtrt_id="MDT-2")))
    assert drained["setlinfo"]["balc"] == "0.00"
    refused(call(state, "2601", {"omsgid": cancel.msgid, "oinfno": "2208"}), "INSUFFICIENT_BALANCE")
    assert ok(call(state, "5201", {"omsgid": cancel.msgid}))["status"] == "cancelled"


# --- 3201 / 3202 -------------------------------------------------------------------------------


def _period(begin: str, end: str, insuplc: str = "320000") -> dict[str, Any]:
    return {"insuplc_admdvs": insuplc, "stmt_begndate": begin, "stmt_enddate": end}


def test_totals_and_detail_agree_to_the_cent() -> None:
    state = new_state()
    js = list(itertools.islice(persons("32"), 6))
    zj = first_person("33")
    day1 = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)
    late_day1 = dt.datetime(2026, 6, 1, 16, 30, tzinfo=dt.UTC)  # 00:30 on 2 June in Beijing
    answers: list[tuple[HubRequest, dict[str, Any]]] = []
    for n, (person, when) in enumerate(
        zip(js, [day1, day1, day1, late_day1, late_day1, day1], strict=True)
    ):
        envelope = request(
            "2207", settle_input(person.psn_no, lines=consultation(f"{100 + n * 37}.{n:02d}"))
        )
        answers.append((envelope, ok(state.handle(envelope, now=when))["setlinfo"]))
    ok(call(state, "2207", settle_input(zj.psn_no), insuplc="330000"))  # another province
    # Cancel the second, reverse the third.
    ok(call(state, "2208", {"psn_no": js[1].psn_no, "setl_id": answers[1][1]["setl_id"]}))
    ok(call(state, "2601", {"omsgid": answers[2][0].msgid, "oinfno": "2207"}))

    def fen(setlinfo: dict[str, Any], name: str) -> int:
        return wire.yuan_to_fen(setlinfo[name])

    june1 = ok(call(state, "3201", _period("2026-06-01", "2026-06-01")))
    june2 = ok(call(state, "3201", _period("2026-06-02", "2026-06-02")))
    both = ok(call(state, "3201", _period("2026-06-01", "2026-06-02")))
    expected_june1 = [answers[0][1], answers[5][1]]
    for name in wire.FIGURE_FIELDS:
        assert wire.yuan_to_fen(june1["settled"][name]) == sum(fen(s, name) for s in expected_june1)
        assert wire.yuan_to_fen(june1["cancelled"][name]) == fen(answers[1][1], name)
        assert wire.yuan_to_fen(june1["reversed"][name]) == fen(answers[2][1], name)
        assert wire.yuan_to_fen(june2["settled"][name]) == sum(
            fen(answers[i][1], name) for i in (3, 4)
        )
        assert wire.yuan_to_fen(both["settled"][name]) == wire.yuan_to_fen(
            june1["settled"][name]
        ) + wire.yuan_to_fen(june2["settled"][name])
    assert (june1["settled"]["count"], june1["cancelled"]["count"]) == (2, 1)
    assert (june1["reversed"]["count"], june2["settled"]["count"]) == (1, 2)

    detail = ok(call(state, "3202", _period("2026-06-01", "2026-06-02")))
    rows = detail["details"]
    assert [row["msgid"] for row in rows] == [
        answers[i][0].msgid for i in (0, 1, 2, 5, 3, 4)
    ]  # by settle time
    assert [row["status"] for row in rows] == [
        "settled",
        "cancelled",
        "reversed",
        "settled",
        "settled",
        "settled",
    ]
    for name in wire.FIGURE_FIELDS:
        assert sum(
            wire.yuan_to_fen(row[name]) for row in rows if row["status"] == "settled"
        ) == wire.yuan_to_fen(both["settled"][name])
    assert all(row["fixmedins_code"] == INSTITUTION for row in rows)
    zj_totals = ok(call(state, "3201", _period("2026-06-01", "2026-06-02", "330000")))
    assert zj_totals["settled"]["count"] == 1


@pytest.mark.parametrize(
    ("payload", "err_code"),
    [
        (_period("2026-06-02", "2026-06-01"), "INVALID_INPUT"),
        (_period("2025-01-01", "2026-01-02"), "INVALID_INPUT"),  # over 366 days
        (_period("2026-06-01", "2026-6-1"), "INVALID_INPUT"),
        (_period("2026-06-01", "2026-06-01", "120000"), "UNKNOWN_PROVINCE"),
        ({"stmt_begndate": "2026-06-01", "stmt_enddate": "2026-06-01"}, "INVALID_INPUT"),
    ],
)
def test_period_refusals(payload: dict[str, Any], err_code: str) -> None:
    refused(call(new_state(), "3201", payload), err_code)
    refused(call(new_state(), "3202", payload), err_code)


# --- 5201 --------------------------------------------------------------------------------------


def test_query_of_an_unknown_msgid_is_none() -> None:
    msgid = new_msgid()
    assert ok(call(new_state(), "5201", {"omsgid": msgid})) == {"omsgid": msgid, "status": "none"}
    refused(call(new_state(), "5201", {"omsgid": "x"}), "INVALID_INPUT")


# --- concurrency -------------------------------------------------------------------------------


def test_concurrent_calls_are_atomic() -> None:
    state = new_state()
    person = next(p for p in persons("44") if p.opening_current_year_fen > 100_000)
    envelopes = [
        request(
            "2207",
            settle_input(person.psn_no, lines=consultation("37.13"), mdtrt_id=f"M{i}"),
            insuplc="440000",
        )
        for i in range(80)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Each envelope twice: retries racing their originals.
        answers = list(pool.map(lambda e: state.handle(e, now=NOW), envelopes * 2))
    by_msgid: dict[str, HubResponse] = {}
    for answer in answers:
        assert answer.ok
        assert by_msgid.setdefault(answer.inf_refmsgid, answer) == answer
    paid = sum(wire.yuan_to_fen(a.output["setlinfo"]["acct_pay"]) for a in by_msgid.values())
    assert balance_fen(state, person.psn_no, "440000") == opening_fen(person) - paid
    totals = ok(call(state, "3201", _period("2026-06-01", "2026-06-01", "440000")))
    assert totals["settled"]["count"] == 80
    assert len({a.output["setlinfo"]["setl_id"] for a in by_msgid.values()}) == 80


def test_beijing_date_decides_the_visit_day_limit() -> None:
    state = new_state()
    person = first_person()
    # 16:30 UTC on 1 June is 00:30 on 2 June in Beijing: a visit on 2 June is not future.
    late = dt.datetime(2026, 6, 1, 16, 30, tzinfo=dt.UTC)
    assert late.astimezone(BEIJING).date() == dt.date(2026, 6, 2)
    ok(call(state, "2207", settle_input(person.psn_no, day="2026-06-02"), now=late))


def test_memory_is_bounded_and_a_full_hub_refuses_without_doing_anything() -> None:
    state = HubState(seed=SEED, provinces=provinces(), catalogue=catalogue(), max_messages=2)
    person = first_person()
    first = request("2207", settle_input(person.psn_no, mdtrt_id="A"))
    ok(state.handle(first, now=NOW))
    ok(call(state, "2207", settle_input(person.psn_no, mdtrt_id="B")))
    balance = balance_fen(state, person.psn_no)
    full = request("2207", settle_input(person.psn_no, mdtrt_id="C"))
    refused(state.handle(full, now=NOW), "HUB_FULL")
    assert balance_fen(state, person.psn_no) == balance
    assert state.message_status(full.msgid) is wire.MessageStatus.NONE
    assert ok(state.handle(first, now=NOW))  # stored answers still come back
