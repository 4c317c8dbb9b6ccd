"""Inpatient, pharmacy and emergency splits, the annual cap and exhausted accounts, worked
out by hand (arithmetic in the comments; fund shares round down to the fen)."""

from __future__ import annotations

from settlement_testkit import (
    EMPLOYEE_30,
    EMPLOYEE_50,
    LATER_DAY,
    PRE_REFORM_DAY,
    RETIREE_65,
    consultation,
    run,
)

from settlement.claim import ClaimLine, YearToDate
from settlement.policy import HospitalLevel, VisitType


def test_inpatient_employee_pre_reform_with_class_b_and_c_items() -> None:
    # bed 10 × 200.00 = 200000 (甲 A)          → in scope 200000
    # hip joint 1 × 30,000.00 = 3000000 (乙 B, 20 % first part) → preselfpay 600000,
    #                                             in scope 2400000
    # supplement 1 × 100.00 = 10000 (丙 C)      → wholly self-paid 10000
    # medfee 3210000; in scope 2600000. Inpatient: current-year account not used (ASSUMED).
    # deductible 150000 → 2450000 × 85 % = 2082500 fund, patient 367500.
    # patient in-scope share 150000 + 367500 = 517500; past-years pays 100000 (its balance).
    # cash = 10000 + 600000 + 517500 − 100000 = 1027500.
    # Check: 2082500 + 100000 + 1027500 = 3210000.
    result = run(
        [
            ClaimLine("DEMO-A-004", 10, 20000),
            ClaimLine("DEMO-B-003", 1, 3000000),
            ClaimLine("DEMO-C-001", 1, 10000),
        ],
        person=EMPLOYEE_30,
        day=PRE_REFORM_DAY,
        visit_type=VisitType.INPATIENT,
        level=HospitalLevel.LEVEL_3,
        current_year_fen=50000,
        past_years_fen=100000,
    )
    assert result.medfee_sumamt == 3210000
    assert result.fulamt_ownpay_amt == 10000
    assert result.preselfpay_amt == 600000
    assert result.inscp_scp_amt == 2600000
    assert result.act_pay_dedc == 150000
    assert result.hifp_pay == 2082500
    assert result.pool_prop_selfpay == 367500
    assert result.acct_detail.current_year_fen == 0
    assert result.acct_detail.past_years_fen == 100000
    assert result.psn_cash_pay == 1027500
    assert result.balc == 50000  # the current-year account is untouched
    assert result.year_to_date_after == YearToDate(
        deductible_consumed_fen=150000, pooling_fund_paid_fen=2082500
    )


def test_inpatient_retiree_later_table_deductible_partly_used() -> None:
    # bed 30 × 200.00 = 600000 (A). Retiree deductible 120000, 100000 used → 20000 left.
    # 600000 − 20000 = 580000 × 92 % = 533600 fund; patient 46400.
    # No accounts: cash 20000 + 46400 = 66400. Check 533600 + 66400 = 600000.
    result = run(
        [ClaimLine("DEMO-A-004", 30, 20000)],
        person=RETIREE_65,
        day=LATER_DAY,
        visit_type=VisitType.INPATIENT,
        year_to_date=YearToDate(deductible_consumed_fen=100000),
    )
    assert (result.act_pay_dedc, result.hifp_pay, result.psn_cash_pay) == (20000, 533600, 66400)
    assert result.year_to_date_after.deductible_consumed_fen == 120000


def test_inpatient_cap_reached_mid_claim_supplementary_fund_above_it() -> None:
    # Later table, employee ≥45: cap 63,000,000; 62,900,000 paid → 100000 left.
    # Deductible already used. Claim 50 × 200.00 = 1000000 (A).
    # Uncapped fund 85 % = 850000 > 100000, so the cap binds:
    #   below the cap: ceil(100000 × 10000 / 8500) = ceil(117647.06) = 117648 → fund 100000
    #   above the cap: 1000000 − 117648 = 882352 → 附加基金 80 % = 705881.6 → 705881
    #   patient: 1000000 − 100000 − 705881 = 194119 (cash: no accounts)
    # Check: 100000 + 705881 + 194119 = 1000000.
    result = run(
        [ClaimLine("DEMO-A-004", 50, 20000)],
        person=EMPLOYEE_50,
        day=LATER_DAY,
        visit_type=VisitType.INPATIENT,
        year_to_date=YearToDate(deductible_consumed_fen=150000, pooling_fund_paid_fen=62_900_000),
    )
    assert result.hifp_pay == 100000
    assert result.hifob_pay == 705881
    assert result.fund_pay_sumamt == 805881
    assert result.psn_cash_pay == 194119
    assert result.year_to_date_after.pooling_fund_paid_fen == 63_000_000
    assert [(row.fund_pay_type, row.amount_fen) for row in result.setldetail] == [
        ("310100", 100000),
        ("310300", 705881),
    ]
    assert "最高支付限额" in result.explanation[3]


def test_cap_already_reached_fund_pays_nothing_more() -> None:
    # Cap fully used: the whole 1000000 is above it → supplementary 80 % = 800000,
    # patient 200000, pooling fund 0 (and no 310100 row).
    result = run(
        [ClaimLine("DEMO-A-004", 50, 20000)],
        person=EMPLOYEE_50,
        day=LATER_DAY,
        visit_type=VisitType.INPATIENT,
        year_to_date=YearToDate(deductible_consumed_fen=150000, pooling_fund_paid_fen=63_000_000),
    )
    assert (result.hifp_pay, result.hifob_pay, result.psn_cash_pay) == (0, 800000, 200000)
    assert [row.fund_pay_type for row in result.setldetail] == ["310300"]
    assert result.year_to_date_after.pooling_fund_paid_fen == 63_000_000


def test_pharmacy_accounts_then_cash_and_the_band_fills() -> None:
    # Pre-reform, employee ≤44, at a pharmacy (药店):
    # amoxicillin 3 × 40.00 = 12000 (A) → in scope 12000
    # atorvastatin 1 × 33.33 = 3333 (B, 10 %): in scope floor(3333 × 0.9) = floor(2999.7)
    #   = 2999, first part 334 (the patient takes the rounding fen)
    # medfee 15333; in scope 14999. Current-year 10000 pays first → 4999 left.
    # Band 150000 with 149000 used → 1000 left → band 1000; co-pay 3999 with NO fund at a
    # pharmacy (ASSUMED) → patient 3999. Share 4999; past-years pays 4999 (5000 → 1).
    # cash = 334 (first part). Check: 0 + (10000 + 4999) + 334 = 15333.
    result = run(
        [ClaimLine("DEMO-A-001", 3, 4000), ClaimLine("DEMO-B-001", 1, 3333)],
        person=EMPLOYEE_30,
        day=PRE_REFORM_DAY,
        visit_type=VisitType.PHARMACY,
        year_to_date=YearToDate(self_pay_band_consumed_fen=149000),
        current_year_fen=10000,
        past_years_fen=5000,
    )
    assert result.medfee_sumamt == 15333
    assert result.preselfpay_amt == 334
    assert result.inscp_scp_amt == 14999
    assert result.act_pay_dedc == 1000
    assert result.hifp_pay == 0
    assert result.pool_prop_selfpay == 3999
    assert result.acct_detail.current_year_fen == 10000
    assert result.acct_detail.past_years_fen == 4999
    assert result.psn_cash_pay == 334
    assert result.balc == 1
    assert result.setldetail == ()
    assert result.year_to_date_after.self_pay_band_consumed_fen == 150000


def test_band_filled_at_a_pharmacy_counts_at_the_next_outpatient_visit() -> None:
    # A 1,500.00 pharmacy purchase with no accounts fills the whole pre-reform band (cash).
    pharmacy = run(
        [ClaimLine("DEMO-A-001", 1, 150000)],
        person=EMPLOYEE_30,
        day=PRE_REFORM_DAY,
        visit_type=VisitType.PHARMACY,
    )
    assert (pharmacy.act_pay_dedc, pharmacy.psn_cash_pay) == (150000, 150000)
    # Then 100.00 outpatient at level 1: straight to the co-pay band, 65 % = 6500 fund.
    visit = run(
        [consultation(10000)],
        person=EMPLOYEE_30,
        day=PRE_REFORM_DAY,
        year_to_date=pharmacy.year_to_date_after,
    )
    assert (visit.act_pay_dedc, visit.hifp_pay, visit.psn_cash_pay) == (0, 6500, 3500)


def test_emergency_settles_like_outpatient() -> None:
    # Later table, ≤44, level 2, no accounts; band 50000 with 45000 used → 5000 left.
    # 600.00: band 5000; co-pay 55000 × 75 % = 41250 fund, patient 13750; cash 18750.
    # Check: 41250 + 18750 = 60000.
    result = run(
        [consultation(60000)],
        person=EMPLOYEE_30,
        day=LATER_DAY,
        visit_type=VisitType.EMERGENCY,
        level=HospitalLevel.LEVEL_2,
        year_to_date=YearToDate(self_pay_band_consumed_fen=45000),
    )
    assert (result.act_pay_dedc, result.hifp_pay, result.psn_cash_pay) == (5000, 41250, 18750)


def test_accounts_exhausted_everything_the_patient_owes_is_cash() -> None:
    # Both accounts empty; pre-reform ≥45 level 2; 2,000.00 → band 150000, co-pay 50000 ×
    # 70 % = 35000 fund, patient 15000; cash 150000 + 15000 = 165000.
    result = run(
        [consultation(200000)], person=EMPLOYEE_50, day=PRE_REFORM_DAY, level=HospitalLevel.LEVEL_2
    )
    assert result.acct_pay == 0
    assert (result.hifp_pay, result.psn_cash_pay, result.balc) == (35000, 165000, 0)


def test_accounts_run_dry_mid_claim() -> None:
    # Later table, ≤44, level 1; current-year 100 fen, past-years 200 fen, 1,000.00 claim:
    # current pays 100 → 99900; band 50000; co-pay 49900 × 80 % = 39920 fund, patient 9980;
    # share 59980, past pays 200 (all it has) → cash 59780.
    # Check: 39920 + 300 + 59780 = 100000.
    result = run(
        [consultation(100000)],
        person=EMPLOYEE_30,
        day=LATER_DAY,
        current_year_fen=100,
        past_years_fen=200,
    )
    assert result.acct_detail.current_year_fen == 100
    assert result.acct_detail.past_years_fen == 200
    assert (result.hifp_pay, result.psn_cash_pay, result.balc) == (39920, 59780, 0)


def test_out_of_scope_items_are_cash_even_with_money_in_the_accounts() -> None:
    # 丙 supplement 100.00 only: wholly self-paid, accounts untouched.
    result = run(
        [ClaimLine("DEMO-C-001", 1, 10000)],
        person=EMPLOYEE_30,
        day=LATER_DAY,
        current_year_fen=99999,
        past_years_fen=99999,
    )
    assert (result.fulamt_ownpay_amt, result.psn_cash_pay, result.acct_pay) == (10000, 10000, 0)
    assert result.balc == 199998


def test_zero_priced_line_beside_a_priced_one_adds_nothing() -> None:
    result = run([consultation(0), consultation(500)], person=EMPLOYEE_30, day=LATER_DAY)
    assert result.medfee_sumamt == result.psn_cash_pay + result.fund_pay_sumamt == 500
