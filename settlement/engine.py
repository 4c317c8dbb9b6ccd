"""The policy engine (结算): split one claim between the funds, the personal accounts and cash.

A pure function of its inputs: no clock, no database. :func:`settle` checks its input and
raises a typed :mod:`settlement.errors` error before any arithmetic (a claim with no lines or
a total of 0 is ``ClaimEmpty``; one above its visit type's counter limit, the policy's
``max_claim_fen``, is ``ClaimAboveCounterLimit`` and goes to manual review), then runs the
steps below in this order, each adding one line to ``explanation``:

1. Price the lines (费用): quantity × unit price. By catalogue class, 丙 items are wholly
   self-paid (``fulamt_ownpay_amt``), the first ``preselfpay_bp`` of 乙 items is self-paid
   (``preselfpay_amt``), the rest is in scope (``inscp_scp_amt``). Out-of-scope amounts are
   paid in cash: the accounts pay in-scope costs only (our choice; DOMAIN is silent).
2. Current-year account (当年账户), where the visit type's rules allow it: pays the in-scope
   amount first, up to its balance.
3. The patient's band, in the person's calendar year: for outpatient rules the self-pay band
   (自负段, shared by outpatient, emergency and pharmacy visits), for inpatient rules the
   deductible (起付线). Reported as ``act_pay_dedc``.
4. The ratio band: the pooling fund (统筹基金) pays the ratio for the category (and, for
   outpatient rules, the hospital level) — nothing at a pharmacy — but never beyond the annual
   cap (最高支付限额) counted over all visit types. In-scope cost above the cap is shared by
   the supplementary fund (附加基金, ``hifob_pay``) at the policy's ratio; the rest is the
   patient's (our choice of "supplementary fund or cash": the ratio is data, 0 means cash).
5. Past-years account (历年账户), where allowed: pays the patient's in-scope share (steps 3
   and 4), up to its balance.
6. Cash (现金): everything else.

Rounding happens only in :func:`settlement.money.share_floor_fen` (fund shares down to the
fen, the remainder to the patient).

The result is checked against its postconditions before it is returned
(:meth:`settlement.result.SettlementResult.check_invariants`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from settlement.catalogue import Catalogue, CatalogueClass
from settlement.claim import (
    MAX_CLAIM_LINES,
    MAX_QUANTITY,
    MAX_UNIT_PRICE_FEN,
    MAX_YEAR_TO_DATE_FEN,
    AccountBalances,
    ClaimLine,
    InsuredPerson,
    Visit,
    YearToDate,
)
from settlement.errors import (
    ClaimAboveCounterLimit,
    ClaimEmpty,
    InvalidAccumulators,
    InvalidAmount,
    InvalidPerson,
    InvalidVisit,
    PolicyNotApplicable,
    TooManyLines,
    UnknownCatalogueCode,
)
from settlement.money import BP_PER_UNIT, format_yuan, is_fen, share_floor_fen
from settlement.policy import (
    BenefitCategory,
    HospitalLevel,
    InpatientDeductibleRules,
    OutpatientBandsRules,
    Policy,
    VisitType,
)
from settlement.result import (
    FUND_POOLING,
    FUND_SUPPLEMENTARY,
    AccountPayment,
    FundPayment,
    SettlementResult,
)

__all__ = ["PricedClaim", "RatioBandSplit", "age_on", "benefit_category", "price_claim", "settle"]

_CLASS_TERMS = {
    CatalogueClass.A: "甲类 class A",
    CatalogueClass.B: "乙类 class B",
    CatalogueClass.C: "丙类 class C",
}


def _yuan(amount_fen: int) -> str:
    return format_yuan(amount_fen)


def _pct(ratio_bp: int) -> str:
    whole, rest = divmod(ratio_bp, 100)
    return f"{whole}.{rest:02d} %" if rest else f"{whole} %"


# --- input checks ---------------------------------------------------------------------------


def _check_lines(lines: Sequence[ClaimLine]) -> None:
    if not lines:
        raise ClaimEmpty("the claim has no lines: nothing to settle")
    if len(lines) > MAX_CLAIM_LINES:
        raise TooManyLines(f"a claim has 1 to {MAX_CLAIM_LINES} lines, this one has {len(lines)}")
    for number, line in enumerate(lines, start=1):
        if not isinstance(line.catalogue_code, str) or not line.catalogue_code:
            raise UnknownCatalogueCode(f"line {number}: no item code")
        if not is_fen(line.quantity) or not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidAmount(
                f"line {number}: quantity must be a whole number from 1 to {MAX_QUANTITY}, "
                f"got {line.quantity!r}"
            )
        if not is_fen(line.unit_price_fen) or not 0 <= line.unit_price_fen <= MAX_UNIT_PRICE_FEN:
            raise InvalidAmount(
                f"line {number}: unit price must be whole fen from 0 to {MAX_UNIT_PRICE_FEN}, "
                f"got {line.unit_price_fen!r}"
            )


def _check_total(lines: Sequence[ClaimLine], limit_fen: int, visit_type: VisitType) -> None:
    """After _check_lines (every quantity and price a bounded int): a claim of 0 is not a
    settlement, and one above the visit type's counter limit goes to manual review."""
    total_fen = sum(line.quantity * line.unit_price_fen for line in lines)
    if total_fen == 0:
        raise ClaimEmpty("every line of the claim is priced 0: nothing to settle")
    if total_fen > limit_fen:
        raise ClaimAboveCounterLimit(
            f"the claim totals {_yuan(total_fen)}, above the {_yuan(limit_fen)} a counter may "
            f"settle for a {visit_type.value} visit: send it to manual review",
            total_fen=total_fen,
            limit_fen=limit_fen,
        )


def _check_amounts_fen(what: str, **amounts_fen: object) -> None:
    for name, value in amounts_fen.items():
        if not is_fen(value) or not 0 <= value <= MAX_YEAR_TO_DATE_FEN:  # type: ignore[operator]
            raise InvalidAccumulators(f"{what}.{name} must be whole fen ≥ 0, got {value!r}")


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Age in whole years on ``day`` (someone born on 29 February turns a year older on
    1 March in common years)."""
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - int(before_birthday)


def benefit_category(person: InsuredPerson, visit_date: dt.date, policy: Policy) -> BenefitCategory:
    """Retirees are one category; employees split by age on the visit date."""
    if person.insutype != policy.insutype:
        raise InvalidPerson(
            f"insurance type {person.insutype!r} is not covered by policy {policy.policy_id} "
            f"(covers {policy.insutype})"
        )
    if (person.birth_date is None) == (person.age_years is None):
        raise InvalidPerson("give exactly one of birth_date and age_years")
    if person.birth_date is not None:
        if person.birth_date > visit_date:
            raise InvalidPerson("birth date is after the visit date")
        age_years = age_on(person.birth_date, visit_date)
    else:
        age_years = person.age_years  # type: ignore[assignment]
        if not is_fen(age_years) or not 0 <= age_years <= 150:
            raise InvalidPerson(f"age must be whole years from 0 to 150, got {age_years!r}")
    if person.retired:
        return BenefitCategory.RETIREE
    if age_years >= policy.employee_older_band_from_age:
        return BenefitCategory.EMPLOYEE_45_AND_OVER
    return BenefitCategory.EMPLOYEE_44_AND_UNDER


# --- step 1: pricing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PricedClaim:
    medfee_sumamt: int
    fulamt_ownpay_amt: int
    preselfpay_amt: int
    inscp_scp_amt: int


def price_claim(lines: Sequence[ClaimLine], catalogue: Catalogue) -> PricedClaim:
    """Total the lines and split them by catalogue class (lines must be checked first)."""
    total_fen = ownpay_fen = preselfpay_fen = in_scope_fen = 0
    for line in lines:
        item = catalogue.item(line.catalogue_code)
        line_fen = line.quantity * line.unit_price_fen
        total_fen += line_fen
        if item.item_class is CatalogueClass.C:
            ownpay_fen += line_fen
        else:
            # The in-scope part is the insurance side's share: rounded down (money.py).
            covered_fen = share_floor_fen(line_fen, BP_PER_UNIT - item.preselfpay_bp)
            preselfpay_fen += line_fen - covered_fen
            in_scope_fen += covered_fen
    return PricedClaim(total_fen, ownpay_fen, preselfpay_fen, in_scope_fen)


# --- step 3: the patient's band (自负段 or 起付线) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class _PatientBand:
    dedc_fen: int  # what this claim puts into the band
    self_pay_band_consumed_fen: int  # after this claim
    deductible_consumed_fen: int  # after this claim
    ratio_bp: int  # the fund's ratio in the band that follows
    ratio_band_name: str
    explanation: str


def _patient_band(
    *,
    rules: OutpatientBandsRules | InpatientDeductibleRules,
    policy: Policy,
    category: BenefitCategory,
    level: HospitalLevel,
    in_scope_left_fen: int,
    year_to_date: YearToDate,
) -> _PatientBand:
    band_used_fen = year_to_date.self_pay_band_consumed_fen
    deductible_used_fen = year_to_date.deductible_consumed_fen
    if isinstance(rules, OutpatientBandsRules):
        band_fen = policy.outpatient.self_pay_band_fen.of(category)
        dedc_fen = min(in_scope_left_fen, max(0, band_fen - band_used_fen))
        return _PatientBand(
            dedc_fen=dedc_fen,
            self_pay_band_consumed_fen=band_used_fen + dedc_fen,
            deductible_consumed_fen=deductible_used_fen,
            ratio_bp=(
                policy.outpatient.copay_fund_ratio_bp.of(category, level)
                if rules.fund_pays_copay_band
                else 0
            ),
            ratio_band_name="共付段 co-pay band",
            explanation=(
                f"自负段 self-pay band: patient pays {_yuan(dedc_fen)} (band {_yuan(band_fen)} a "
                f"year, used {_yuan(band_used_fen)} → {_yuan(band_used_fen + dedc_fen)})"
            ),
        )
    band_fen = policy.inpatient.deductible_fen.of(category)
    dedc_fen = min(in_scope_left_fen, max(0, band_fen - deductible_used_fen))
    return _PatientBand(
        dedc_fen=dedc_fen,
        self_pay_band_consumed_fen=band_used_fen,
        deductible_consumed_fen=deductible_used_fen + dedc_fen,
        ratio_bp=policy.inpatient.fund_ratio_bp.of(category),
        ratio_band_name="统筹段 fund band",
        explanation=(
            f"起付线 deductible: patient pays {_yuan(dedc_fen)} (deductible {_yuan(band_fen)} a "
            f"year, used {_yuan(deductible_used_fen)} → {_yuan(deductible_used_fen + dedc_fen)})"
        ),
    )


# --- step 4: the ratio band under the annual cap --------------------------------------------


@dataclass(frozen=True, slots=True)
class RatioBandSplit:
    pooling_fen: int  # 统筹基金
    supplementary_fen: int  # 附加基金, above the cap
    patient_fen: int  # the patient's share of the band
    capped: bool


def _ratio_band(
    amount_fen: int, ratio_bp: int, cap_left_fen: int, supplementary_bp: int
) -> RatioBandSplit:
    """Split ``amount_fen`` in the ratio band: the fund pays ``ratio_bp`` until it has paid
    ``cap_left_fen``; above that the supplementary fund pays ``supplementary_bp``."""
    uncapped_fen = share_floor_fen(amount_fen, ratio_bp)
    if uncapped_fen <= cap_left_fen:
        return RatioBandSplit(uncapped_fen, 0, amount_fen - uncapped_fen, capped=False)
    # The cap binds (so ratio_bp > 0). The smallest amount whose fund share reaches the cap,
    # ceil(cap_left × 10000 / ratio), is "below the cap"; the rest is above it.
    below_cap_fen = -(-cap_left_fen * BP_PER_UNIT // ratio_bp)
    assert cap_left_fen <= below_cap_fen <= amount_fen
    above_cap_fen = amount_fen - below_cap_fen
    supplementary_fen = share_floor_fen(above_cap_fen, supplementary_bp)
    patient_fen = amount_fen - cap_left_fen - supplementary_fen
    return RatioBandSplit(cap_left_fen, supplementary_fen, patient_fen, capped=True)


# --- the whole settlement -------------------------------------------------------------------


def settle(
    *,
    lines: Sequence[ClaimLine],
    person: InsuredPerson,
    visit: Visit,
    policy: Policy,
    catalogue: Catalogue,
    year_to_date: YearToDate,
    balances: AccountBalances,
) -> SettlementResult:
    """Split one claim (see the module docstring for the steps). Raises a SettlementError
    subclass on bad input; never changes anything (it has nothing to change)."""
    _check_lines(lines)
    _check_amounts_fen(
        "year_to_date",
        self_pay_band_consumed_fen=year_to_date.self_pay_band_consumed_fen,
        deductible_consumed_fen=year_to_date.deductible_consumed_fen,
        pooling_fund_paid_fen=year_to_date.pooling_fund_paid_fen,
    )
    _check_amounts_fen(
        "balances",
        current_year_fen=balances.current_year_fen,
        past_years_fen=balances.past_years_fen,
    )
    try:
        visit_type = VisitType(visit.visit_type)
        level = HospitalLevel(visit.hospital_level)
    except ValueError:
        raise InvalidVisit(
            f"visit type {visit.visit_type!r} / hospital level {visit.hospital_level!r} unknown"
        ) from None
    if not policy.covers(visit.visit_date):
        raise PolicyNotApplicable(
            f"policy {policy.policy_id} covers {policy.effective_from.isoformat()} to "
            f"{policy.effective_to.isoformat()}, not the visit date "
            f"{visit.visit_date.isoformat()}"
        )
    rules = policy.visit_types.of(visit_type)
    _check_total(lines, rules.max_claim_fen, visit_type)
    category = benefit_category(person, visit.visit_date, policy)
    explanation: list[str] = []

    # 1. Pricing.
    priced = price_claim(lines, catalogue)
    explanation.append(
        f"费用 fees: total {_yuan(priced.medfee_sumamt)}; 全自费 wholly self-paid "
        f"{_yuan(priced.fulamt_ownpay_amt)}, 先行自付 self-paid first part "
        f"{_yuan(priced.preselfpay_amt)}, 政策范围内 in scope {_yuan(priced.inscp_scp_amt)} "
        f"({len(lines)} lines; {category.value}, {visit_type.value}, level {int(level)}, "
        f"policy {policy.policy_id})"
    )
    remaining_fen = priced.inscp_scp_amt

    # 2. Current-year account first.
    current_fen = min(remaining_fen, balances.current_year_fen) if rules.current_year_account else 0
    remaining_fen -= current_fen
    explanation.append(
        f"当年账户 current-year account pays {_yuan(current_fen)} "
        f"(balance {_yuan(balances.current_year_fen)} → "
        f"{_yuan(balances.current_year_fen - current_fen)})"
        if rules.current_year_account
        else f"当年账户 current-year account: not used for {visit_type.value} visits"
    )

    # 3. The patient's band for the year, then 4. the ratio band.
    band = _patient_band(
        rules=rules,
        policy=policy,
        category=category,
        level=level,
        in_scope_left_fen=remaining_fen,
        year_to_date=year_to_date,
    )
    explanation.append(band.explanation)
    dedc_fen = band.dedc_fen
    remaining_fen -= dedc_fen

    cap_fen = policy.annual.pooling_fund_cap_fen
    cap_left_fen = max(0, cap_fen - year_to_date.pooling_fund_paid_fen)
    split = _ratio_band(
        remaining_fen, band.ratio_bp, cap_left_fen, policy.annual.supplementary_above_cap_ratio_bp
    )
    explanation.append(
        f"{band.ratio_band_name}: {_yuan(remaining_fen)} at fund ratio {_pct(band.ratio_bp)} "
        f"→ 统筹基金 pooling fund {_yuan(split.pooling_fen)}, patient {_yuan(split.patient_fen)}"
        + (
            f"; 最高支付限额 annual cap {_yuan(cap_fen)} reached, 附加基金 supplementary fund "
            f"pays {_yuan(split.supplementary_fen)} at "
            f"{_pct(policy.annual.supplementary_above_cap_ratio_bp)} above it"
            if split.capped
            else f" (annual cap {_yuan(cap_fen)}, fund paid this year "
            f"{_yuan(year_to_date.pooling_fund_paid_fen)} → "
            f"{_yuan(year_to_date.pooling_fund_paid_fen + split.pooling_fen)})"
        )
    )

    # 5. Past-years account for the patient's in-scope share.
    patient_in_scope_fen = dedc_fen + split.patient_fen
    past_fen = min(patient_in_scope_fen, balances.past_years_fen) if rules.past_years_account else 0
    explanation.append(
        f"历年账户 past-years account pays {_yuan(past_fen)} of the patient's in-scope share "
        f"{_yuan(patient_in_scope_fen)} (balance {_yuan(balances.past_years_fen)} → "
        f"{_yuan(balances.past_years_fen - past_fen)})"
        if rules.past_years_account
        else f"历年账户 past-years account: not used for {visit_type.value} visits"
    )

    # 6. Cash.
    out_of_scope_fen = priced.fulamt_ownpay_amt + priced.preselfpay_amt
    cash_fen = out_of_scope_fen + patient_in_scope_fen - past_fen
    explanation.append(
        f"现金 cash: {_yuan(cash_fen)} (out of scope {_yuan(out_of_scope_fen)} + in-scope share "
        f"not paid by an account {_yuan(patient_in_scope_fen - past_fen)})"
    )

    fund_fen = split.pooling_fen + split.supplementary_fen
    setldetail = tuple(
        FundPayment(fund_pay_type=code, fund_name=name, amount_fen=amount_fen)
        for (code, name), amount_fen in (
            (FUND_POOLING, split.pooling_fen),
            (FUND_SUPPLEMENTARY, split.supplementary_fen),
        )
        if amount_fen > 0
    )
    balances_after = AccountBalances(
        current_year_fen=balances.current_year_fen - current_fen,
        past_years_fen=balances.past_years_fen - past_fen,
    )
    result = SettlementResult(
        policy_id=policy.policy_id,
        benefit_category=category,
        medfee_sumamt=priced.medfee_sumamt,
        fulamt_ownpay_amt=priced.fulamt_ownpay_amt,
        preselfpay_amt=priced.preselfpay_amt,
        inscp_scp_amt=priced.inscp_scp_amt,
        act_pay_dedc=dedc_fen,
        hifp_pay=split.pooling_fen,
        pool_prop_selfpay=split.patient_fen,
        hifob_pay=split.supplementary_fen,
        fund_pay_sumamt=fund_fen,
        psn_part_amt=current_fen + past_fen + cash_fen,
        acct_pay=current_fen + past_fen,
        acct_detail=AccountPayment(current_year_fen=current_fen, past_years_fen=past_fen),
        psn_cash_pay=cash_fen,
        balc=balances_after.total_fen,
        setldetail=setldetail,
        explanation=tuple(explanation),
        year_to_date_after=YearToDate(
            self_pay_band_consumed_fen=band.self_pay_band_consumed_fen,
            deductible_consumed_fen=band.deductible_consumed_fen,
            pooling_fund_paid_fen=year_to_date.pooling_fund_paid_fen + split.pooling_fen,
        ),
        balances_after=balances_after,
    )
    result.check_invariants(year_to_date=year_to_date, balances=balances)
    assert result.year_to_date_after.pooling_fund_paid_fen <= max(
        cap_fen, year_to_date.pooling_fund_paid_fen
    )
    return result
