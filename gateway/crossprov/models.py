"""Request and response bodies of the cross-province routes (docs/CONTRACTS.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.routing import RequestModel
from gateway.settlement_api.models import EligibilityOut, SettlementOut

__all__ = [
    "ClearingOut",
    "FilingIn",
    "FilingList",
    "FilingOut",
    "RemoteEligibilityOut",
    "RemoteSettlementList",
    "RemoteSettlementOut",
    "RemoteSettlementRowOut",
    "ReversalList",
    "ReversalOut",
]

FilingTypeIn = Literal["resettled_retiree", "long_term_resident", "referral", "emergency"]


class RemoteSettlementOut(SettlementOut):
    """A settlement through the hub: the usual fields (int fen, parsed from the hub's answer,
    never recomputed), plus the route, the message id and the hub's ``setlinfo`` verbatim."""

    route: Literal["cross_province", "in_province_remote"]
    msgid: str
    insuplc_admdvs: str
    filing_type: str
    setlinfo: dict[str, Any] = Field(description="The hub's setlinfo, verbatim (yuan strings).")


class RemoteEligibilityOut(EligibilityOut):
    route: Literal["cross_province", "in_province_remote"]
    filing_types: list[str] = Field(description="Filings valid today at this institution.")


class FilingIn(RequestModel):
    psn_no: str = Field(pattern=r"^[0-9]{15,30}$")
    insuplc_admdvs: str = Field(pattern=r"^[1-9][0-9]{5}$")
    filing_type: FilingTypeIn
    valid_from: dt.date
    valid_to: dt.date | None = None
    target_fixmedins_code: str | None = Field(None, pattern=r"^[A-Z0-9]{12}$")


class FilingOut(BaseModel):
    filing_id: str
    psn_no: str
    insuplc_admdvs: str
    filing_type: str
    valid_from: dt.date
    valid_to: dt.date | None
    target_fixmedins_code: str | None
    registered_by: str


class FilingList(BaseModel):
    psn_no: str
    items: list[FilingOut]


class RemoteSettlementRowOut(BaseModel):
    msgid: str
    infno: str
    route: str
    status: str
    insuplc_admdvs: str
    fixmedins_code: str
    visit_type: str
    visit_date: dt.date
    filing_type: str
    setl_id: str | None
    medfee_sumamt: int | None
    fund_pay_sumamt: int | None
    acct_pay: int | None
    psn_cash_pay: int | None
    err_code: str | None
    err_msg: str | None
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class RemoteSettlementList(BaseModel):
    date: dt.date
    scope: Literal["institution", "all"]
    items: list[RemoteSettlementRowOut]
    next_cursor: str | None


class ReversalOut(BaseModel):
    omsgid: str = Field(description="The settle message (of a cancel check too).")
    oinfno: str
    kind: Literal["reversal", "cancel_check"] = Field(
        description="reversal: 2601 of the settle omsgid; cancel_check: the outcome of that "
        "settlement's cancel (its cancel msgid), oinfno being the cancel's infno."
    )
    insuplc_admdvs: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    leased: bool
    last_error: str | None
    hub_reversed: bool | None
    created_at: dt.datetime
    done_at: dt.datetime | None


class ReversalList(BaseModel):
    status: Literal["pending", "done"]
    depth: int = Field(description="Pending reversals in the whole queue.")
    items: list[ReversalOut]


class FiguresOut(BaseModel):
    count: int
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int
    fronted_fen: int


class MismatchOut(BaseModel):
    msgid: str
    reason: str
    gateway_status: str | None
    hub_status: str | None
    gateway: FiguresOut | None
    hub: FiguresOut | None


class ClearingOut(BaseModel):
    """清算单: one province, one period (Beijing dates, inclusive)."""

    insuplc_admdvs: str
    begin: dt.date
    end: dt.date
    matched: bool
    settled: FiguresOut = Field(description="Confirmed, still standing: what Shanghai fronted.")
    cancelled: FiguresOut
    reversed_count: int
    unresolved_count: int = Field(description="Intent or unknown: the reversal queue decides.")
    hub_settled: FiguresOut | None
    hub_reversed: dict[str, Any] | None = Field(description="The hub's 3201 reversed figures.")
    mismatch_count: int
    mismatches: list[MismatchOut]
