"""Outpatient (门诊) splits worked out by hand: every category × hospital level, both tables.

Order (DOMAIN §6): current-year account (当年账户) first, then the self-pay band (自负段),
then the co-pay band (共付段) at the fund ratio by level and category; the past-years account
(历年账户) pays the patient's in-scope share, cash the rest. Fund shares round DOWN to the
fen (settlement.money), so the amounts below end in …01 on purpose.
"""

from __future__ import annotations

import datetime as dt

import pytest
from settlement_testkit import (
    EMPLOYEE_30,
    EMPLOYEE_50,
    LATER_DAY,
    PRE_REFORM_DAY,
    RETIREE_65,
    consultation,
    run,
)

from settlement.claim import AccountBalances, InsuredPerson, YearToDate
from settlement.policy import BenefitCategory, HospitalLevel

L1, L2, L3 = HospitalLevel.LEVEL_1, HospitalLevel.LEVEL_2, HospitalLevel.LEVEL_3

# Pre-reform table (sh-employee-2019). Claim 2,300.01 yuan = 230001 fen, all class A, so
# in scope 230001. Current-year account 300 yuan (30000) pays first → 200001 left.
# Employees: band 150000 → co-pay band 200001 − 150000 = 50001.
# Retirees (band ASSUMED 700 yuan = 70000) → co-pay band 200001 − 70000 = 130001.
# Past-years account 400 yuan (40000) always pays 40000 (the share is larger everywhere).
# cash = band + co-pay patient share − 40000.
PRE_REFORM_ROWS = [
    # person, level, band, fund, co-pay patient, cash
    # ≤44, L1 65 %: 50001 × 0.65 = 32500.65 → 32500; patient 17501; cash 150000+17501−40000
    (EMPLOYEE_30, L1, 150000, 32500, 17501, 127501),
    # ≤44, L2 60 %: 50001 × 0.60 = 30000.6 → 30000; patient 20001; cash 130001
    (EMPLOYEE_30, L2, 150000, 30000, 20001, 130001),
    # ≤44, L3 50 %: 50001 × 0.50 = 25000.5 → 25000; patient 25001; cash 135001
    (EMPLOYEE_30, L3, 150000, 25000, 25001, 135001),
    # ≥45, L1 75 %: 50001 × 0.75 = 37500.75 → 37500; patient 12501; cash 122501
    (EMPLOYEE_50, L1, 150000, 37500, 12501, 122501),
    # ≥45, L2 70 %: 50001 × 0.70 = 35000.7 → 35000; patient 15001; cash 125001
    (EMPLOYEE_50, L2, 150000, 35000, 15001, 125001),
    # ≥45, L3 60 %: 50001 × 0.60 = 30000.6 → 30000; patient 20001; cash 130001
    (EMPLOYEE_50, L3, 150000, 30000, 20001, 130001),
    # retiree, L1 85 % (ASSUMED): 130001 × 0.85 = 110500.85 → 110500; patient 19501;
    # cash 70000 + 19501 − 40000 = 49501
    (RETIREE_65, L1, 70000, 110500, 19501, 49501),
    # retiree, L2 80 %: 130001 × 0.80 = 104000.8 → 104000; patient 26001; cash 56001
    (RETIREE_65, L2, 70000, 104000, 26001, 56001),
    # retiree, L3 70 %: 130001 × 0.70 = 91000.7 → 91000; patient 39001; cash 69001
    (RETIREE_65, L3, 70000, 91000, 39001, 69001),
]


@pytest.mark.parametrize(
    ("person", "level", "band_fen", "fund_fen", "copay_patient_fen", "cash_fen"),
    PRE_REFORM_ROWS,
)
def test_pre_reform_outpatient_by_category_and_level(
    person: InsuredPerson,
    level: HospitalLevel,
    band_fen: int,
    fund_fen: int,
    copay_patient_fen: int,
    cash_fen: int,
) -> None:
    result = run(
        [consultation(230001)],
        person=person,
        day=PRE_REFORM_DAY,
        level=level,
        current_year_fen=30000,
        past_years_fen=40000,
    )
    assert result.policy_id == "sh-employee-2019"
    assert result.medfee_sumamt == 230001
    assert result.inscp_scp_amt == 230001
    assert result.fulamt_ownpay_amt == result.preselfpay_amt == 0
    assert result.acct_detail.current_year_fen == 30000
    assert result.act_pay_dedc == band_fen
    assert result.hifp_pay == fund_fen
    assert result.fund_pay_sumamt == fund_fen
    assert result.hifob_pay == 0
    assert result.pool_prop_selfpay == copay_patient_fen
    assert result.acct_detail.past_years_fen == 40000
    assert result.acct_pay == 70000
    assert result.psn_cash_pay == cash_fen
    assert result.medfee_sumamt == fund_fen + 70000 + cash_fen
    assert result.balc == 0
    assert result.year_to_date_after == YearToDate(
        self_pay_band_consumed_fen=band_fen, pooling_fund_paid_fen=fund_fen
    )
    assert [(row.fund_pay_type, row.amount_fen) for row in result.setldetail] == [
        ("310100", fund_fen)
    ]


# Later table (sh-employee-2023): band 500 yuan employees / 300 retirees; 80/75/70 % for all.
# Claim 1,000.01 yuan = 100001 fen, class A; current-year 30000 pays first → 70001 left;
# past-years 40000.
LATER_ROWS = [
    # ≤44, L1 80 %: band 50000 → co-pay 20001 × 0.80 = 16000.8 → 16000; patient 4001;
    # share 54001, past-years 40000, cash 14001. Check 16000 + 70000 + 14001 = 100001.
    (EMPLOYEE_30, L1, 50000, 16000, 4001, 14001),
    # ≥45, L2 75 %: co-pay 20001 × 0.75 = 15000.75 → 15000; patient 5001; cash 15001
    (EMPLOYEE_50, L2, 50000, 15000, 5001, 15001),
    # retiree, L3 70 %: band 30000 → co-pay 40001 × 0.70 = 28000.7 → 28000; patient 12001;
    # share 42001, past-years 40000, cash 2001. Check 28000 + 70000 + 2001 = 100001.
    (RETIREE_65, L3, 30000, 28000, 12001, 2001),
]


@pytest.mark.parametrize(
    ("person", "level", "band_fen", "fund_fen", "copay_patient_fen", "cash_fen"), LATER_ROWS
)
def test_later_table_outpatient(
    person: InsuredPerson,
    level: HospitalLevel,
    band_fen: int,
    fund_fen: int,
    copay_patient_fen: int,
    cash_fen: int,
) -> None:
    result = run(
        [consultation(100001)],
        person=person,
        day=LATER_DAY,
        level=level,
        current_year_fen=30000,
        past_years_fen=40000,
    )
    assert result.policy_id == "sh-employee-2023"
    assert (result.act_pay_dedc, result.hifp_pay, result.pool_prop_selfpay) == (
        band_fen,
        fund_fen,
        copay_patient_fen,
    )
    assert result.acct_pay == 70000
    assert result.psn_cash_pay == cash_fen


@pytest.mark.parametrize(
    ("visit_day", "category"),
    [
        # Born 1975-06-01: 44 on the eve of the 45th birthday, 45 on the day.
        (dt.date(2020, 5, 31), BenefitCategory.EMPLOYEE_44_AND_UNDER),
        (dt.date(2020, 6, 1), BenefitCategory.EMPLOYEE_45_AND_OVER),
    ],
)
def test_age_band_turns_on_the_45th_birthday(visit_day: dt.date, category: BenefitCategory) -> None:
    person = InsuredPerson(retired=False, birth_date=dt.date(1975, 6, 1))
    result = run([consultation(100)], person=person, day=visit_day)
    assert result.benefit_category is category


def test_age_years_instead_of_birth_date() -> None:
    assert (
        run([consultation(100)], person=InsuredPerson(retired=False, age_years=44), day=LATER_DAY)
    ).benefit_category is BenefitCategory.EMPLOYEE_44_AND_UNDER
    assert (
        run([consultation(100)], person=InsuredPerson(retired=False, age_years=45), day=LATER_DAY)
    ).benefit_category is BenefitCategory.EMPLOYEE_45_AND_OVER


def test_retiree_category_ignores_age() -> None:
    young_retiree = InsuredPerson(retired=True, age_years=40)
    result = run([consultation(100)], person=young_retiree, day=LATER_DAY)
    assert result.benefit_category is BenefitCategory.RETIREE


def test_current_year_account_covers_everything_band_untouched() -> None:
    # 300.00 in scope, current-year balance 1,000.00: the account pays all 30000, nothing
    # reaches the self-pay band, the fund pays nothing, balance 100000 − 30000 = 70000.
    result = run([consultation(30000)], person=EMPLOYEE_30, day=LATER_DAY, current_year_fen=100000)
    assert result.acct_detail.current_year_fen == 30000
    assert result.act_pay_dedc == result.hifp_pay == result.psn_cash_pay == 0
    assert result.balances_after.current_year_fen == 70000
    assert result.year_to_date_after == YearToDate()


def test_band_already_used_goes_straight_to_copay() -> None:
    # Later table, ≤44, L1: band 50000 already used; 100.00 → fund 80 % = 8000, patient 2000.
    result = run(
        [consultation(10000)],
        person=EMPLOYEE_30,
        day=LATER_DAY,
        year_to_date=YearToDate(self_pay_band_consumed_fen=50000),
    )
    assert (result.act_pay_dedc, result.hifp_pay, result.psn_cash_pay) == (0, 8000, 2000)


def test_explanation_has_one_line_per_step_with_the_chinese_term() -> None:
    result = run([consultation(230001)], person=EMPLOYEE_30, day=PRE_REFORM_DAY)
    terms = ["费用", "当年账户", "自负段", "共付段", "历年账户", "现金"]
    assert len(result.explanation) == len(terms)
    for line, term in zip(result.explanation, terms, strict=True):
        assert line.startswith(term), line
    # No accounts: 230001 − 150000 band = 80001 reaches the co-pay band.
    assert "800.01" in result.explanation[3]


def test_postcondition_check_catches_a_tampered_result() -> None:
    from dataclasses import replace

    result = run([consultation(230001)], person=EMPLOYEE_30, day=PRE_REFORM_DAY)
    no_accounts = AccountBalances(current_year_fen=0, past_years_fen=0)  # run()'s default
    result.check_invariants(year_to_date=YearToDate(), balances=no_accounts)
    for tampered in (
        replace(result, psn_cash_pay=result.psn_cash_pay + 1),
        replace(result, hifp_pay=result.hifp_pay - 1),
    ):
        with pytest.raises(AssertionError):
            tampered.check_invariants(year_to_date=YearToDate(), balances=no_accounts)
