"""What the engine settles: claim lines, the insured person, the visit, and the person's
year-to-date totals and account balances. Plain frozen dataclasses; the engine checks them
(:func:`settlement.engine.settle` raises a typed error before any arithmetic).

All amounts are int fen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from settlement.policy import HospitalLevel, VisitType

__all__ = [
    "MAX_CLAIM_LINES",
    "MAX_QUANTITY",
    "MAX_UNIT_PRICE_FEN",
    "MAX_YEAR_TO_DATE_FEN",
    "AccountBalances",
    "ClaimLine",
    "InsuredPerson",
    "Visit",
    "YearToDate",
]

# Bounds (a claim above them is refused with a clear error, never settled): 1,000 lines of at
# most 100,000 units at most 1,000,000 yuan each keep every total far inside the national
# interface's numeric(16,2).
MAX_CLAIM_LINES: Final = 1_000
MAX_QUANTITY: Final = 100_000
MAX_UNIT_PRICE_FEN: Final = 100_000_000
MAX_YEAR_TO_DATE_FEN: Final = 10**15


@dataclass(frozen=True, slots=True)
class ClaimLine:
    """One fee line (费用明细): a catalogue code, a whole quantity and a unit price in fen."""

    catalogue_code: str
    quantity: int
    unit_price_fen: int


@dataclass(frozen=True, slots=True)
class InsuredPerson:
    """The insured person as the tables see them. Give ``birth_date`` or ``age_years``
    (exactly one): the age band is the age in whole years on the visit date."""

    retired: bool  # 退休
    birth_date: dt.date | None = None
    age_years: int | None = None
    insutype: str = "310"  # 险种: 310 职工基本医疗保险


@dataclass(frozen=True, slots=True)
class Visit:
    visit_date: dt.date
    visit_type: VisitType
    hospital_level: HospitalLevel


@dataclass(frozen=True, slots=True)
class YearToDate:
    """The person's totals for the calendar year before this settlement (年度累计)."""

    self_pay_band_consumed_fen: int = 0  # 自负段 paid so far (outpatient, emergency, pharmacy)
    deductible_consumed_fen: int = 0  # 住院起付线 paid so far
    pooling_fund_paid_fen: int = 0  # 统筹基金 paid so far, toward the annual cap


@dataclass(frozen=True, slots=True)
class AccountBalances:
    """Personal account balances (个人账户)."""

    current_year_fen: int  # 当年账户
    past_years_fen: int  # 历年账户

    @property
    def total_fen(self) -> int:
        return self.current_year_fen + self.past_years_fen
