"""The ops summary's JSON shape (pydantic, so it is in /openapi.json). Amounts are int fen, as
everywhere in the API; the page renders them as yuan with integer arithmetic."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "ActivityRow",
    "CancellationRow",
    "CardAuthOutcomes",
    "CodeCount",
    "CrossProvince",
    "HubCallCount",
    "MismatchRow",
    "OpsSummary",
    "ProvinceReceivable",
    "ReconciliationSummary",
    "RemoteStatusCount",
    "ReversalQueue",
    "SettlementActivity",
]


class ActivityRow(BaseModel):
    """Settlements of the day for one (route, visit type). ``count`` and the amounts cover the
    VALID ones (not cancelled: what reconciliation compares); ``cancelled_count`` those of the
    day cancelled since. Remote amounts are None when the remote table does not carry them."""

    route: str = Field(description="local | in_province_remote | cross_province")
    visit_type: str
    count: int
    medfee_sumamt: int | None
    fund_pay_sumamt: int | None
    acct_pay: int | None
    psn_cash_pay: int | None
    cancelled_count: int


class CancellationRow(BaseModel):
    """Cancels made on the day (by cancel time), whatever day the settlement was."""

    route: str
    visit_type: str
    count: int
    medfee_sumamt: int


class SettlementActivity(BaseModel):
    rows: list[ActivityRow]
    total: ActivityRow = Field(description="Sum over rows (amounts over rows that have them).")
    cancellations: list[CancellationRow]


class MismatchRow(BaseModel):
    fixmedins_code: str
    clr_type: str
    kind: Literal["totals", "details"]
    checked_at: dt.datetime
    difference_count: int | None = Field(description="3202: settlements that differ.")
    institution_medfee_sumamt: int | None = Field(description="3201: the institution's total.")
    gateway_medfee_sumamt: int | None = Field(description="3201: the gateway's total.")


class ReconciliationSummary(BaseModel):
    """Reconciliation runs (3201/3202) whose statement day is the day."""

    runs: int
    matched: int
    mismatched: int
    mismatches: list[MismatchRow] = Field(description="The first mismatching runs (bounded).")
    mismatches_truncated: bool


class CodeCount(BaseModel):
    code: str
    count: int


class CardAuthOutcomes(BaseModel):
    challenges_issued: int
    authenticated: int
    refused: int
    refusals_by_code: list[CodeCount]


class RemoteStatusCount(BaseModel):
    status: str
    count: int


class ReversalQueue(BaseModel):
    depth: int = Field(description="Reversals (2601) not yet confirmed by the hub.")
    oldest_at: dt.datetime | None


class ProvinceReceivable(BaseModel):
    """What Shanghai fronted for one insured province (ledger account
    ``receivable:province:<admdvs>``): debits minus credits."""

    insuplc_admdvs: str
    outstanding_fen: int = Field(description="All time, up to now.")
    day_net_fen: int = Field(description="Movement on the day.")


class HubCallCount(BaseModel):
    infno: str
    outcome: str = Field(description="ok | refused | not_sent | unknown")
    count: int


class CrossProvince(BaseModel):
    remote_available: bool = Field(description="remote_settlements table present.")
    remote_by_status: list[RemoteStatusCount]
    reversal_queue: ReversalQueue | None = Field(description="None: hub_reversals absent.")
    receivables: list[ProvinceReceivable]
    hub_calls: list[HubCallCount] = Field(description="Counters since start-up.")
    breaker_open_workers: int = Field(description="Workers whose hub circuit is open now.")
    notes: list[str]


class OpsSummary(BaseModel):
    date: dt.date = Field(description="The day, in Beijing time (UTC+8).")
    generated_at: dt.datetime
    settlements: SettlementActivity
    reconciliation: ReconciliationSummary
    counters_note: str = Field(
        description="Says that rejections, card_auth and cross_province.hub_calls count since "
        "counters_since, not on the day."
    )
    counters_since: dt.datetime | None = Field(
        description="When the gateway's counters began (its first worker's start, UTC). "
        "None only when unknown."
    )
    rejections: list[CodeCount] = Field(description="Error answers by code, since start-up.")
    card_auth: CardAuthOutcomes = Field(description="Counters since start-up.")
    cross_province: CrossProvince
