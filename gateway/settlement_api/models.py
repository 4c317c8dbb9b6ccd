"""Request and response bodies of the settlement API (docs/CONTRACTS.md "Settlement API").

Amounts are int fen under the national ``setlinfo`` names. Every bound a request can hit is
here, so that bad input stops at the schema (422 VALIDATION_FAILED) before anything runs:
strict ints (``1.0`` and ``"1"`` are refused), no negative prices, quantities and prices no
larger than the engine's own bounds, and at most :data:`MAX_REQUEST_LINES` lines a request.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field

from gateway.routing import RequestModel, Text
from settlement.catalogue import CODE_PATTERN
from settlement.claim import MAX_CLAIM_LINES, MAX_QUANTITY, MAX_UNIT_PRICE_FEN

__all__ = [
    "MAX_DETAIL_ROWS",
    "MAX_REQUEST_LINES",
    "AdmissionOut",
    "AdmitRequest",
    "CancelRequest",
    "DetailRow",
    "DetailsRequest",
    "DetailsResult",
    "DischargeRequest",
    "EligibilityOut",
    "EligibilityRequest",
    "FeeLinesOut",
    "FeeLinesRequest",
    "LineIn",
    "MismatchesOut",
    "PreSettleOut",
    "SettleRequest",
    "SettlementList",
    "SettlementOut",
    "TotalsRequest",
    "TotalsResult",
]

# Lines in one request (and so in one outpatient or pharmacy claim). A 64 KiB body holds about
# 800 lines; 500 leaves room. An inpatient stay gathers up to MAX_CLAIM_LINES over uploads.
MAX_REQUEST_LINES: Final = 500
MAX_STAY_LINES: Final = MAX_CLAIM_LINES
# Settlements an institution may list in one 3202 request (the body bound caps it lower).
MAX_DETAIL_ROWS: Final = 2_000

ClrType = Literal["11", "21", "41"]  # 11 outpatient, 21 inpatient, 41 pharmacy
Fen = Annotated[int, Field(ge=0, le=10**15)]


class LineIn(RequestModel):
    """One fee line: a catalogue code, a whole quantity and a unit price in fen."""

    code: Text = Field(pattern=CODE_PATTERN, description="Catalogue code (settlement/catalogues).")
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    unit_price_fen: int = Field(ge=0, le=MAX_UNIT_PRICE_FEN)


class EligibilityRequest(RequestModel):
    pass


class SettleRequest(RequestModel):
    visit_type: Literal["outpatient", "emergency", "inpatient", "pharmacy"]
    visit_date: dt.date
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_REQUEST_LINES)


class CancelRequest(RequestModel):
    reason: Text = Field(min_length=1, max_length=200, description="Why (kept with the record).")


class AdmitRequest(RequestModel):
    admission_date: dt.date


class FeeLinesRequest(RequestModel):
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_REQUEST_LINES)


class DischargeRequest(RequestModel):
    discharge_date: dt.date


class InsuranceOut(BaseModel):
    insutype: str
    insuplc_admdvs: str
    psn_type: str
    balc: int = Field(description="Both personal accounts, fen.")
    current_year_balance_fen: int
    past_years_balance_fen: int


class EligibilityOut(BaseModel):
    """1101-like person information (no citizen id or name: the terminal read them off the
    card, and the gateway sends back no personal data it does not need to)."""

    psn_no: str
    age_years: int
    retired: bool
    benefit_category: str
    insuinfo: list[InsuranceOut]
    self_pay_band_consumed_fen: int
    deductible_consumed_fen: int
    pooling_fund_paid_fen: int


class FundPaymentOut(BaseModel):
    fund_pay_type: str
    fund_name: str
    fund_payamt: int


class SettlementOut(BaseModel):
    """One settlement (setlinfo, int fen)."""

    setl_id: str
    mdtrt_id: str
    psn_no: str
    fixmedins_code: str
    status: Literal["settled", "cancelled"]
    visit_type: str
    visit_date: dt.date
    setl_time: dt.datetime
    policy_id: str
    medfee_sumamt: int
    fulamt_ownpay_amt: int
    preselfpay_amt: int
    inscp_scp_amt: int
    act_pay_dedc: int
    hifp_pay: int
    pool_prop_selfpay: int
    hifob_pay: int
    fund_pay_sumamt: int
    psn_part_amt: int
    acct_pay: int
    acct_pay_current_year_fen: int
    acct_pay_past_years_fen: int
    psn_cash_pay: int
    balc: int
    setldetail: list[FundPaymentOut]
    cancelled_at: dt.datetime | None = None
    cancel_reason: str | None = None
    explanation: list[str] | None = Field(
        None, description="The engine's steps; only in the answer to the settle itself."
    )


class PreSettleOut(BaseModel):
    """An estimate: the same figures a settle would give now, nothing written."""

    psn_no: str
    policy_id: str
    medfee_sumamt: int
    fulamt_ownpay_amt: int
    preselfpay_amt: int
    inscp_scp_amt: int
    act_pay_dedc: int
    hifp_pay: int
    pool_prop_selfpay: int
    hifob_pay: int
    fund_pay_sumamt: int
    psn_part_amt: int
    acct_pay: int
    psn_cash_pay: int
    balc: int
    setldetail: list[FundPaymentOut]
    explanation: list[str]


class SettlementList(BaseModel):
    date: dt.date
    items: list[SettlementOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page.")


class AdmissionOut(BaseModel):
    admission_id: str
    admission_date: dt.date
    status: Literal["open", "discharged"]
    line_count: int
    setl_id: str | None = None


class FeeLinesOut(BaseModel):
    admission_id: str
    accepted: int
    line_count: int


class TotalsRequest(RequestModel):
    """3201: the institution's totals for one day and clearing type."""

    clr_type: ClrType
    stmt_date: dt.date
    insutype: Literal["310"] = "310"
    fixmedins_setl_cnt: int = Field(ge=0, le=10_000_000)
    medfee_sumamt: Fen
    fund_pay_sumamt: Fen
    acct_pay: Fen
    psn_cash_pay: Fen


class FiguresOut(BaseModel):
    count: int
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int


class TotalsResult(BaseModel):
    stmt_rslt: Literal["0", "1"] = Field(description="0 match, 1 mismatch.")
    stmt_rslt_dscr: str
    clr_type: ClrType
    stmt_date: dt.date
    institution: FiguresOut
    gateway: FiguresOut


class DetailRow(RequestModel):
    setl_id: Text = Field(min_length=1, max_length=40)
    medfee_sumamt: Fen
    fund_pay_sumamt: Fen
    acct_pay: Fen
    psn_cash_pay: Fen


class DetailsRequest(RequestModel):
    """3202: the institution's valid settlements of one day and clearing type."""

    clr_type: ClrType
    stmt_date: dt.date
    details: list[DetailRow] = Field(max_length=MAX_DETAIL_ROWS)


class DifferenceOut(BaseModel):
    setl_id: str
    reason: Literal[
        "missing_at_gateway", "missing_at_institution", "amounts_differ", "listed_twice"
    ]
    institution: FiguresOut | None
    gateway: FiguresOut | None


class DetailsResult(BaseModel):
    stmt_rslt: Literal["0", "1"]
    stmt_rslt_dscr: str
    clr_type: ClrType
    stmt_date: dt.date
    difference_count: int
    differences: list[DifferenceOut] = Field(description="At most 1,000; see difference_count.")


class MismatchOut(BaseModel):
    fixmedins_code: str
    clr_type: str
    kind: Literal["totals", "details"]
    checked_at: dt.datetime
    figures: dict[str, Any] | None = Field(
        description="The reconciliation answer as it was given (a 3201 TotalsResult or a 3202 "
        "DetailsResult, by kind); null only if the stored answer is not a JSON object."
    )


class MismatchesOut(BaseModel):
    date: dt.date
    scope: Literal["institution", "all"]
    items: list[MismatchOut]
