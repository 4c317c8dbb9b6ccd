"""Property tests: for any valid claim, person, visit, year-to-date totals and balances,
the split is exact and within every limit (DESIGN §5 "Money is exact"): no fund pays beyond
its cap (the pooling fund's annual cap, the supplementary fund's share of what lies above it,
each account's balance), and a claim is refused exactly when it is empty or above its visit
type's counter limit.

The split properties run on the shipped policies with their counter limits lifted
(:func:`_unlimited`), so that large claims still reach the caps; the counter limits have their
own property on the shipped policies as they are."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from settlement_testkit import book, demo_catalogue

from settlement import errors
from settlement.claim import AccountBalances, ClaimLine, InsuredPerson, Visit, YearToDate
from settlement.engine import _ratio_band, settle
from settlement.money import share_floor_fen
from settlement.policy import MAX_POLICY_FEN, HospitalLevel, Policy, VisitType
from settlement.result import SettlementResult

CODES = sorted(demo_catalogue().items)

lines_st = st.lists(
    st.builds(
        ClaimLine,
        catalogue_code=st.sampled_from(CODES),
        quantity=st.integers(1, 500),
        unit_price_fen=st.one_of(st.integers(0, 20_000), st.integers(0, 5_000_000)),
    ),
    min_size=1,
    max_size=12,
)
person_st = st.builds(
    InsuredPerson, retired=st.booleans(), age_years=st.integers(0, 110), insutype=st.just("310")
)
visit_st = st.builds(
    Visit,
    visit_date=st.dates(dt.date(2019, 1, 1), dt.date(2030, 12, 31)),
    visit_type=st.sampled_from(VisitType),
    hospital_level=st.sampled_from(HospitalLevel),
)
# Year-to-date figures around and beyond the bands, deductibles and caps.
ytd_st = st.builds(
    YearToDate,
    self_pay_band_consumed_fen=st.one_of(st.integers(0, 200_000), st.integers(0, 10**8)),
    deductible_consumed_fen=st.one_of(st.integers(0, 200_000), st.integers(0, 10**8)),
    pooling_fund_paid_fen=st.one_of(
        st.integers(0, 10**6), st.integers(54_000_000, 64_000_000), st.integers(0, 10**9)
    ),
)
balances_st = st.builds(
    AccountBalances,
    current_year_fen=st.one_of(st.just(0), st.integers(0, 500_000)),
    past_years_fen=st.one_of(st.just(0), st.integers(0, 5_000_000)),
)


def _unlimited(policy: Policy) -> Policy:
    """The policy with every visit type's counter limit lifted to the schema's maximum."""
    rules = {
        name: getattr(policy.visit_types, name).model_copy(update={"max_claim_fen": MAX_POLICY_FEN})
        for name in type(policy.visit_types).model_fields
    }
    return policy.model_copy(update={"visit_types": policy.visit_types.model_copy(update=rules)})


def _total(lines: list[ClaimLine]) -> int:
    return sum(line.quantity * line.unit_price_fen for line in lines)


def _settle(
    lines: list[ClaimLine],
    person: InsuredPerson,
    visit: Visit,
    ytd: YearToDate,
    balances: AccountBalances,
) -> SettlementResult:
    assume(_total(lines) > 0)  # a claim of 0 is refused (its own property below)
    return settle(
        lines=lines,
        person=person,
        visit=visit,
        policy=_unlimited(book().for_date(visit.visit_date)),
        catalogue=demo_catalogue(),
        year_to_date=ytd,
        balances=balances,
    )


@settings(max_examples=400, deadline=None)
@given(lines_st, person_st, visit_st, ytd_st, balances_st)
def test_split_is_exact_and_within_limits(
    lines: list[ClaimLine],
    person: InsuredPerson,
    visit: Visit,
    ytd: YearToDate,
    balances: AccountBalances,
) -> None:
    result = _settle(lines, person, visit, ytd, balances)
    policy = book().for_date(visit.visit_date)

    # total = fund + account + cash, computed independently from the lines
    assert result.medfee_sumamt == sum(line.quantity * line.unit_price_fen for line in lines)
    assert result.medfee_sumamt == result.fund_pay_sumamt + result.acct_pay + result.psn_cash_pay
    assert result.fund_pay_sumamt == result.hifp_pay + result.hifob_pay
    # nothing negative
    for name in ("hifp_pay", "hifob_pay", "acct_pay", "psn_cash_pay", "act_pay_dedc", "balc"):
        assert getattr(result, name) >= 0, name
    # balances never exceeded
    assert 0 <= result.acct_detail.current_year_fen <= balances.current_year_fen
    assert 0 <= result.acct_detail.past_years_fen <= balances.past_years_fen
    assert result.balc == balances.total_fen - result.acct_pay
    # the cap is never exceeded by this settlement
    cap_fen = policy.annual.pooling_fund_cap_fen
    cap_left_fen = max(0, cap_fen - ytd.pooling_fund_paid_fen)
    assert result.hifp_pay <= cap_left_fen
    # the supplementary fund pays only above the cap, at most its share of the in-scope cost
    # (it has no cap of its own: docs/domain.md §6)
    if result.hifob_pay:
        assert result.hifp_pay == cap_left_fen
        ratio_bp = policy.annual.supplementary_above_cap_ratio_bp
        assert result.hifob_pay <= share_floor_fen(result.inscp_scp_amt, ratio_bp)
    # accumulators only grow, never past their band
    after = result.year_to_date_after
    assert after.self_pay_band_consumed_fen >= ytd.self_pay_band_consumed_fen
    assert after.deductible_consumed_fen >= ytd.deductible_consumed_fen
    assert after.pooling_fund_paid_fen >= ytd.pooling_fund_paid_fen
    category = result.benefit_category
    band_fen = policy.outpatient.self_pay_band_fen.of(category)
    deductible_fen = policy.inpatient.deductible_fen.of(category)
    assert after.self_pay_band_consumed_fen <= max(band_fen, ytd.self_pay_band_consumed_fen)
    assert after.deductible_consumed_fen <= max(deductible_fen, ytd.deductible_consumed_fen)
    # out-of-scope money is never paid by the fund or the accounts
    assert result.psn_cash_pay >= result.fulamt_ownpay_amt + result.preselfpay_amt
    # no fund at a pharmacy (shipped policies)
    if visit.visit_type is VisitType.PHARMACY:
        assert result.fund_pay_sumamt == 0
    assert len(result.explanation) == 6


@settings(max_examples=200, deadline=None)
@given(st.lists(lines_st, min_size=2, max_size=6), person_st, visit_st, balances_st)
def test_a_year_of_visits_only_grows_accumulators_and_spends_balances(
    claims: list[list[ClaimLine]],
    person: InsuredPerson,
    visit: Visit,
    balances: AccountBalances,
) -> None:
    ytd = YearToDate()
    policy = book().for_date(visit.visit_date)
    for lines in claims:
        result = _settle(lines, person, visit, ytd, balances)
        assert result.year_to_date_after.pooling_fund_paid_fen <= (
            policy.annual.pooling_fund_cap_fen
        )
        assert result.balances_after.current_year_fen <= balances.current_year_fen
        assert result.balances_after.past_years_fen <= balances.past_years_fen
        ytd, balances = result.year_to_date_after, result.balances_after


@settings(max_examples=200, deadline=None)
@given(lines_st, person_st, visit_st, ytd_st, balances_st, st.integers(1, 1_000_000))
def test_more_in_the_accounts_never_means_more_cash(
    lines: list[ClaimLine],
    person: InsuredPerson,
    visit: Visit,
    ytd: YearToDate,
    balances: AccountBalances,
    extra_fen: int,
) -> None:
    poorer = _settle(lines, person, visit, ytd, balances)
    richer = _settle(
        lines,
        person,
        visit,
        ytd,
        replace(balances, past_years_fen=balances.past_years_fen + extra_fen),
    )
    assert richer.psn_cash_pay <= poorer.psn_cash_pay
    assert richer.fund_pay_sumamt == poorer.fund_pay_sumamt  # accounts never change the fund


@settings(max_examples=300, deadline=None)
@given(lines_st, person_st, visit_st, ytd_st, balances_st)
def test_a_claim_is_refused_exactly_when_empty_or_above_the_counter_limit(
    lines: list[ClaimLine],
    person: InsuredPerson,
    visit: Visit,
    ytd: YearToDate,
    balances: AccountBalances,
) -> None:
    policy = book().for_date(visit.visit_date)  # as shipped: counter limits in force
    limit_fen = policy.visit_types.of(visit.visit_type).max_claim_fen
    total_fen = _total(lines)

    def run() -> SettlementResult:
        return settle(
            lines=lines,
            person=person,
            visit=visit,
            policy=policy,
            catalogue=demo_catalogue(),
            year_to_date=ytd,
            balances=balances,
        )

    if total_fen == 0:
        with pytest.raises(errors.ClaimEmpty):
            run()
    elif total_fen > limit_fen:
        with pytest.raises(errors.ClaimAboveCounterLimit) as info:
            run()
        assert (info.value.total_fen, info.value.limit_fen) == (total_fen, limit_fen)
    else:
        assert run().medfee_sumamt == total_fen


@given(
    st.integers(0, 10**10),
    st.integers(0, 10_000),
    st.integers(0, 10**9),
    st.integers(0, 10_000),
)
def test_ratio_band_split_is_exact_and_capped(
    amount_fen: int, ratio_bp: int, cap_left_fen: int, supplementary_bp: int
) -> None:
    split = _ratio_band(amount_fen, ratio_bp, cap_left_fen, supplementary_bp)
    assert split.pooling_fen + split.supplementary_fen + split.patient_fen == amount_fen
    assert 0 <= split.pooling_fen <= min(cap_left_fen, share_floor_fen(amount_fen, ratio_bp))
    assert split.supplementary_fen >= 0
    assert split.patient_fen >= 0
    if not split.capped:
        assert split.supplementary_fen == 0
        assert split.pooling_fen == share_floor_fen(amount_fen, ratio_bp)


@given(st.integers(0, 10**14), st.integers(0, 10_000))
def test_share_floor_rounds_down_and_never_loses_a_fen(amount_fen: int, ratio_bp: int) -> None:
    share = share_floor_fen(amount_fen, ratio_bp)
    assert share * 10_000 <= amount_fen * ratio_bp < (share + 1) * 10_000
    assert 0 <= amount_fen - share <= amount_fen
