"""How the settlement use cases' outcomes read on the ``/v1`` door: the JSON bodies of
docs/CONTRACTS.md "Settlement API" (national ``setlinfo`` names, int fen, UTC instants).

Also the renderers handed to the keyed use cases (settlement.keyed.Render): they run inside
the unit of work, so what they return is the answer stored under the Idempotency-Key and
replayed byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

from dbkit import as_utc
from gateway.settlement_api.models import (
    AdmissionOut,
    DetailsResult,
    DifferenceOut,
    EligibilityOut,
    FeeLinesOut,
    FiguresOut,
    FundPaymentOut,
    InsuranceOut,
    MismatchOut,
    PreSettleOut,
    SettlementList,
    SettlementOut,
    TotalsResult,
)
from settlement import reconciliation as recon
from settlement.counter.outcomes import (
    Eligibility,
    Estimate,
    FeeLinesAdded,
    Settled,
    SettlementPage,
)
from settlement.counter.reconcile import DetailsOutcome, TotalsOutcome
from settlement.keyed import Answer
from settlement.result import FUND_POOLING, FUND_SUPPLEMENTARY
from settlement.store import AdmissionRow, ReconciliationRun

__all__ = [
    "admission_view",
    "details_view",
    "eligibility_view",
    "estimate_view",
    "fee_lines_answer",
    "fee_lines_view",
    "figures_json",
    "fund_rows",
    "mismatch_view",
    "page_view",
    "settled_answer",
    "settlement_view",
    "totals_view",
]


def fund_rows(hifp_pay: int, hifob_pay: int) -> list[FundPaymentOut]:
    return [
        FundPaymentOut(fund_pay_type=code, fund_name=name, fund_payamt=amount_fen)
        for (code, name), amount_fen in ((FUND_POOLING, hifp_pay), (FUND_SUPPLEMENTARY, hifob_pay))
        if amount_fen > 0
    ]


def settlement_view(settled: Settled) -> SettlementOut:
    row = settled.record
    explanation = settled.explanation
    return SettlementOut(
        setl_id=row.setl_id,
        mdtrt_id=row.mdtrt_id,
        psn_no=settled.psn_no,
        fixmedins_code=row.fixmedins_code,
        status=row.status.value,
        visit_type=row.visit_type,
        visit_date=row.visit_date,
        setl_time=as_utc(row.setl_time),
        policy_id=row.policy_id,
        medfee_sumamt=row.medfee_sumamt,
        fulamt_ownpay_amt=row.fulamt_ownpay_amt,
        preselfpay_amt=row.preselfpay_amt,
        inscp_scp_amt=row.inscp_scp_amt,
        act_pay_dedc=row.act_pay_dedc,
        hifp_pay=row.hifp_pay,
        pool_prop_selfpay=row.pool_prop_selfpay,
        hifob_pay=row.hifob_pay,
        fund_pay_sumamt=row.fund_pay_sumamt,
        psn_part_amt=row.acct_pay + row.psn_cash_pay,
        acct_pay=row.acct_pay,
        acct_pay_current_year_fen=row.acct_pay_current_year_fen,
        acct_pay_past_years_fen=row.acct_pay_past_years_fen,
        psn_cash_pay=row.psn_cash_pay,
        balc=row.balc,
        setldetail=fund_rows(row.hifp_pay, row.hifob_pay),
        cancelled_at=None if row.cancelled_at is None else as_utc(row.cancelled_at),
        cancel_reason=row.cancel_reason,
        explanation=None if explanation is None else list(explanation),
    )


def settled_answer(settled: Settled, *, status: int) -> Answer:
    """A settle's (201) or a cancel's (200) stored answer: ``partial(settled_answer,
    status=201)`` is the renderer the use case gets."""
    return Answer(status, settlement_view(settled).model_dump_json())


def fee_lines_view(added: FeeLinesAdded) -> FeeLinesOut:
    return FeeLinesOut(
        admission_id=added.admission_id, accepted=added.accepted, line_count=added.line_count
    )


def fee_lines_answer(added: FeeLinesAdded) -> Answer:
    return Answer(200, fee_lines_view(added).model_dump_json())


def estimate_view(estimate: Estimate) -> PreSettleOut:
    result = estimate.result
    return PreSettleOut(
        psn_no=estimate.psn_no,
        policy_id=result.policy_id,
        medfee_sumamt=result.medfee_sumamt,
        fulamt_ownpay_amt=result.fulamt_ownpay_amt,
        preselfpay_amt=result.preselfpay_amt,
        inscp_scp_amt=result.inscp_scp_amt,
        act_pay_dedc=result.act_pay_dedc,
        hifp_pay=result.hifp_pay,
        pool_prop_selfpay=result.pool_prop_selfpay,
        hifob_pay=result.hifob_pay,
        fund_pay_sumamt=result.fund_pay_sumamt,
        psn_part_amt=result.psn_part_amt,
        acct_pay=result.acct_pay,
        psn_cash_pay=result.psn_cash_pay,
        balc=result.balc,
        setldetail=fund_rows(result.hifp_pay, result.hifob_pay),
        explanation=list(result.explanation),
    )


def eligibility_view(person: Eligibility) -> EligibilityOut:
    totals = person.year_to_date
    return EligibilityOut(
        psn_no=person.psn_no,
        age_years=person.age_years,
        retired=person.retired,
        benefit_category=person.benefit_category,
        insuinfo=[
            InsuranceOut(
                insutype=person.insutype,
                insuplc_admdvs=person.insuplc_admdvs,
                psn_type=person.psn_type,
                balc=person.current_year_fen + person.past_years_fen,
                current_year_balance_fen=person.current_year_fen,
                past_years_balance_fen=person.past_years_fen,
            )
        ],
        self_pay_band_consumed_fen=totals.self_pay_band_consumed_fen,
        deductible_consumed_fen=totals.deductible_consumed_fen,
        pooling_fund_paid_fen=totals.pooling_fund_paid_fen,
    )


def admission_view(row: AdmissionRow) -> AdmissionOut:
    return AdmissionOut(
        admission_id=row.admission_id,
        admission_date=row.admission_date,
        status=row.status.value,
        line_count=row.line_count,
        setl_id=row.setl_id,
    )


def page_view(page: SettlementPage) -> SettlementList:
    return SettlementList(
        date=page.day,
        items=[settlement_view(settled) for settled in page.items],
        next_cursor=None if page.next_after_id is None else str(page.next_after_id),
    )


def _figures(figures: recon.Figures | None) -> FiguresOut | None:
    return None if figures is None else FiguresOut(**figures.as_dict())


def totals_view(outcome: TotalsOutcome) -> TotalsResult:
    matched = outcome.matched
    return TotalsResult(
        stmt_rslt="0" if matched else "1",
        stmt_rslt_dscr="对账一致 totals match" if matched else "对账不一致 totals differ",
        clr_type=outcome.clr_type,  # type: ignore[arg-type]
        stmt_date=outcome.stmt_date,
        institution=FiguresOut(**outcome.institution.as_dict()),
        gateway=FiguresOut(**outcome.gateway.as_dict()),
    )


def details_view(outcome: DetailsOutcome) -> DetailsResult:
    matched = outcome.matched
    return DetailsResult(
        stmt_rslt="0" if matched else "1",
        stmt_rslt_dscr="明细一致 details match" if matched else "明细不一致 details differ",
        clr_type=outcome.clr_type,  # type: ignore[arg-type]
        stmt_date=outcome.stmt_date,
        difference_count=outcome.difference_count,
        differences=[
            DifferenceOut(
                setl_id=difference.setl_id,
                reason=difference.reason,  # type: ignore[arg-type]
                institution=_figures(difference.institution),
                gateway=_figures(difference.gateway),
            )
            for difference in outcome.differences
        ],
    )


def figures_json(outcome: TotalsOutcome | DetailsOutcome) -> str:
    """What a reconciliation run stores for operations: the answer the institution got."""
    if isinstance(outcome, TotalsOutcome):
        return totals_view(outcome).model_dump_json()
    return details_view(outcome).model_dump_json()


def mismatch_view(run: ReconciliationRun) -> MismatchOut:
    return MismatchOut(
        fixmedins_code=run.fixmedins_code,
        clr_type=run.clr_type,
        kind=run.kind,  # type: ignore[arg-type]
        checked_at=as_utc(run.created_at),
        figures=_stored_answer(run.figures),
    )


def _stored_answer(text: str) -> dict[str, Any] | None:
    """The stored answer as JSON (it was a string inside the JSON answer: issue 17)."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
