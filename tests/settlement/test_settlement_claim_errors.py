"""Bad claim input raises a typed error with a stable code, before any arithmetic."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from settlement_testkit import EMPLOYEE_30, LATER_DAY, book, consultation, demo_catalogue, run

from settlement import errors
from settlement.claim import (
    MAX_CLAIM_LINES,
    MAX_QUANTITY,
    AccountBalances,
    ClaimLine,
    InsuredPerson,
    Visit,
    YearToDate,
)
from settlement.engine import settle
from settlement.policy import VisitType


@pytest.mark.parametrize(
    ("quantity", "unit_price_fen"),
    [
        (1, -1),  # negative
        (1, 1.5),  # not whole fen
        (1, 100.0),  # a float even when whole
        (1, "100"),  # a string
        (1, Decimal("1.00")),  # Decimal yuan where fen are expected
        (1, True),  # bool is an int in Python, never an amount
        (1, 10**12),  # above the unit price bound
        (0, 100),  # zero quantity
        (-1, 100),
        (0.5, 100),
        (MAX_QUANTITY + 1, 100),
        (None, 100),
    ],
)
def test_invalid_amount(quantity: Any, unit_price_fen: Any) -> None:
    with pytest.raises(errors.InvalidAmount) as info:
        run([ClaimLine("DEMO-A-001", quantity, unit_price_fen)], person=EMPLOYEE_30, day=LATER_DAY)
    assert info.value.code == "INVALID_AMOUNT"
    assert "line 1" in info.value.message


def test_unknown_catalogue_code() -> None:
    with pytest.raises(errors.UnknownCatalogueCode) as info:
        run(
            [consultation(100), ClaimLine("NOPE-001", 1, 100)],
            person=EMPLOYEE_30,
            day=LATER_DAY,
        )
    assert info.value.code == "UNKNOWN_CATALOGUE_CODE"
    assert "NOPE-001" in info.value.message


def test_line_count_bound() -> None:
    with pytest.raises(errors.TooManyLines) as info:
        run([consultation(1)] * (MAX_CLAIM_LINES + 1), person=EMPLOYEE_30, day=LATER_DAY)
    assert info.value.code == "TOO_MANY_LINES"


@pytest.mark.parametrize(
    "lines",
    [[], [consultation(0)], [consultation(0), consultation(0)]],
    ids=["no lines", "one line of 0", "every line 0"],
)
def test_an_empty_or_zero_claim_is_not_a_settlement(lines: list[ClaimLine]) -> None:
    with pytest.raises(errors.ClaimEmpty) as info:
        run(lines, person=EMPLOYEE_30, day=LATER_DAY)
    assert info.value.code == "CLAIM_EMPTY"
    assert isinstance(info.value, errors.InvalidClaim)


def test_a_zero_priced_line_beside_a_priced_one_settles() -> None:
    result = run([consultation(0), consultation(1_000)], person=EMPLOYEE_30, day=LATER_DAY)
    assert result.medfee_sumamt == 1_000


@pytest.mark.parametrize(
    ("visit_type", "limit_fen"),
    [
        (VisitType.OUTPATIENT, 5_000_000),
        (VisitType.EMERGENCY, 10_000_000),
        (VisitType.PHARMACY, 2_000_000),
        (VisitType.INPATIENT, 300_000_000),
    ],
)
def test_a_claim_above_the_counter_limit_goes_to_manual_review(
    visit_type: VisitType, limit_fen: int
) -> None:
    policy = book().for_date(LATER_DAY)
    assert policy.visit_types.of(visit_type).max_claim_fen == limit_fen  # the shipped data
    # 100 units at a hundredth of the limit: every price stays within MAX_UNIT_PRICE_FEN.
    at_limit = [ClaimLine("DEMO-A-002", 100, limit_fen // 100)]
    settled = run(at_limit, person=EMPLOYEE_30, day=LATER_DAY, visit_type=visit_type)
    assert settled.medfee_sumamt == limit_fen
    above = [*at_limit, consultation(1)]
    with pytest.raises(errors.ClaimAboveCounterLimit) as info:
        run(above, person=EMPLOYEE_30, day=LATER_DAY, visit_type=visit_type)
    assert info.value.code == "CLAIM_ABOVE_COUNTER_LIMIT"
    assert (info.value.total_fen, info.value.limit_fen) == (limit_fen + 1, limit_fen)
    assert "manual review" in info.value.message


@pytest.mark.parametrize(
    "year_to_date",
    [
        YearToDate(self_pay_band_consumed_fen=-1),
        YearToDate(deductible_consumed_fen=1.0),  # type: ignore[arg-type]
        YearToDate(pooling_fund_paid_fen="0"),  # type: ignore[arg-type]
    ],
)
def test_invalid_year_to_date(year_to_date: YearToDate) -> None:
    with pytest.raises(errors.InvalidAccumulators) as info:
        run([consultation(100)], person=EMPLOYEE_30, day=LATER_DAY, year_to_date=year_to_date)
    assert info.value.code == "INVALID_ACCUMULATORS"


@pytest.mark.parametrize(("current", "past"), [(-1, 0), (0, -5), (0.5, 0), (0, False)])
def test_invalid_balances(current: Any, past: Any) -> None:
    with pytest.raises(errors.InvalidAccumulators):
        run(
            [consultation(100)],
            person=EMPLOYEE_30,
            day=LATER_DAY,
            current_year_fen=current,
            past_years_fen=past,
        )


@pytest.mark.parametrize(
    "person",
    [
        InsuredPerson(retired=False),  # neither
        InsuredPerson(retired=False, birth_date=dt.date(1990, 1, 1), age_years=34),  # both
        InsuredPerson(retired=False, birth_date=dt.date(2030, 1, 1)),  # born after the visit
        InsuredPerson(retired=False, age_years=-1),
        InsuredPerson(retired=False, age_years=151),
        InsuredPerson(retired=False, age_years=30, insutype="390"),  # 居民医保: not these tables
    ],
)
def test_invalid_person(person: InsuredPerson) -> None:
    with pytest.raises(errors.InvalidPerson) as info:
        run([consultation(100)], person=person, day=LATER_DAY)
    assert info.value.code == "INVALID_PERSON"


@pytest.mark.parametrize(
    ("visit_type", "level"), [("dental", 1), ("outpatient", 4), ("outpatient", 0)]
)
def test_invalid_visit(visit_type: Any, level: Any) -> None:
    with pytest.raises(errors.InvalidVisit) as info:
        settle(
            lines=[consultation(100)],
            person=EMPLOYEE_30,
            visit=Visit(LATER_DAY, visit_type, level),
            policy=book().for_date(LATER_DAY),
            catalogue=demo_catalogue(),
            year_to_date=YearToDate(),
            balances=AccountBalances(0, 0),
        )
    assert info.value.code == "INVALID_VISIT"


def test_every_error_code_is_unique_and_drawn_in_the_docstring() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.SettlementError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    doc = errors.__doc__ or ""
    for cls in classes:
        if cls is errors.SettlementError:
            continue
        assert re.search(rf"{cls.__name__}\s+{cls.code}", doc), cls.__name__
