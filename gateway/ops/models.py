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
    "HourRow",
    "HubCallCount",
    "InstitutionBreakdown",
    "InstitutionFigures",
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


class MismatchDifference(BaseModel):
    """One settlement of a 3202 mismatch, as the institution was told (no personal data: a
    setl_id and amounts)."""

    setl_id: str
    reason: str = Field(
        description="missing_at_gateway | missing_at_institution | amounts_differ | listed_twice"
    )
    institution_medfee_sumamt: int | None
    gateway_medfee_sumamt: int | None


class MismatchRow(BaseModel):
    fixmedins_code: str
    clr_type: str
    kind: Literal["totals", "details"]
    checked_at: dt.datetime
    difference_count: int | None = Field(description="3202: settlements that differ.")
    differences: list[MismatchDifference] = Field(
        default_factory=list,
        description="3202: the first differences (at most 20 per run; difference_count has "
        "them all).",
    )
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
    """An error code and how often it was answered; what it means comes from the error table
    (gateway/errors.py), so that the page can explain a code without a second request."""

    code: str
    count: int
    status: int | None = Field(default=None, description="The code's HTTP status.")
    title: str | None = Field(default=None, description="The code's short title.")
    message: str | None = Field(default=None, description="What a clerk is told, in English.")
    message_zh: str | None = Field(default=None, description="What a clerk is told, in Chinese.")


class CardAuthOutcomes(BaseModel):
    challenges_issued: int
    authenticated: int
    refused: int = Field(description="Card answers judged and refused: the card's own fault.")
    refusals_by_code: list[CodeCount] = Field(description="The card refusals, by code.")
    not_judged: int = Field(
        description="Card answers refused before the card was judged (malformed, unsigned, "
        "replayed, rate-limited): the terminal's or its software's fault, counted apart."
    )


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


class HourRow(BaseModel):
    """Settlements made in one hour of the day (Beijing time), all routes: the valid ones and
    their total, and how many of them were cancelled since (as ActivityRow, per hour)."""

    hour: int = Field(ge=0, le=23, description="Beijing hour: 9 is 09:00-09:59.")
    count: int
    medfee_sumamt: int | None = Field(description="None when a remote table lacks amounts.")
    cancelled_count: int


class InstitutionFigures(BaseModel):
    """One institution's settlements in the drill-down (valid ones and their total, and those
    cancelled since), or the rest of them summed (``fixmedins_code`` "others")."""

    fixmedins_code: str
    name: str | None = Field(description="The institution's name (None: not in institutions).")
    kind: str | None = Field(description="hospital | pharmacy | …")
    count: int
    medfee_sumamt: int | None
    cancelled_count: int


class InstitutionBreakdown(BaseModel):
    """The institutions behind a figure of the day: settlements of one route, visit type and
    hour (or all of them), the busiest first."""

    date: dt.date
    route: str = Field(description="all | local | in_province_remote | cross_province")
    visit_type: str = Field(description="all, or one visit type")
    hour: int | None = Field(description="A Beijing hour, or None for the whole day.")
    institution_count: int = Field(description="Institutions with any settlement here.")
    institutions: list[InstitutionFigures] = Field(description="The busiest (bounded).")
    others: InstitutionFigures | None = Field(description="The rest, summed; None if none.")
    notes: list[str]


class OpsSummary(BaseModel):
    date: dt.date = Field(description="The day, in Beijing time (UTC+8).")
    generated_at: dt.datetime
    settlements: SettlementActivity
    hourly: list[HourRow] = Field(
        description="The day's 24 Beijing hours, from the database (every route)."
    )
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
