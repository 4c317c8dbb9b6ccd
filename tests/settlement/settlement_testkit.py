"""Shared fixtures-as-functions for the settlement tests: people, visits and a one-call
``run`` that settles against the shipped policy for the visit date and demo catalogue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cache

from settlement.catalogue import Catalogue, load_catalogue
from settlement.claim import AccountBalances, ClaimLine, InsuredPerson, Visit, YearToDate
from settlement.engine import settle
from settlement.policy import HospitalLevel, PolicyBook, VisitType, shipped_policies
from settlement.result import SettlementResult

PRE_REFORM_DAY = dt.date(2020, 6, 1)  # sh-employee-2019
LATER_DAY = dt.date(2024, 6, 1)  # sh-employee-2023

EMPLOYEE_30 = InsuredPerson(retired=False, birth_date=dt.date(1990, 5, 1))  # 30 in 2020
EMPLOYEE_50 = InsuredPerson(retired=False, birth_date=dt.date(1970, 1, 1))  # 50 in 2020
RETIREE_65 = InsuredPerson(retired=True, age_years=65)


@cache
def book() -> PolicyBook:
    return shipped_policies()


@cache
def demo_catalogue() -> Catalogue:
    return load_catalogue("demo")


def run(
    lines: Sequence[ClaimLine],
    *,
    person: InsuredPerson,
    day: dt.date,
    visit_type: VisitType = VisitType.OUTPATIENT,
    level: HospitalLevel = HospitalLevel.LEVEL_1,
    year_to_date: YearToDate | None = None,
    current_year_fen: int = 0,
    past_years_fen: int = 0,
) -> SettlementResult:
    return settle(
        lines=lines,
        person=person,
        visit=Visit(visit_date=day, visit_type=visit_type, hospital_level=level),
        policy=book().for_date(day),
        catalogue=demo_catalogue(),
        year_to_date=year_to_date or YearToDate(),
        balances=AccountBalances(current_year_fen=current_year_fen, past_years_fen=past_years_fen),
    )


def consultation(amount_fen: int) -> ClaimLine:
    """One 甲 (class A, fully in scope) line of ``amount_fen``."""
    return ClaimLine(catalogue_code="DEMO-A-002", quantity=1, unit_price_fen=amount_fen)
