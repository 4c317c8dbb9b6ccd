"""Policy files: selection by visit date, and strict rejection of bad files (and catalogues)."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

import pytest
from settlement_testkit import EMPLOYEE_30, book, consultation, demo_catalogue

from settlement import errors
from settlement.catalogue import parse_catalogue
from settlement.claim import AccountBalances, Visit, YearToDate
from settlement.engine import settle
from settlement.policy import HospitalLevel, PolicyBook, VisitType, parse_policy

POLICY_2019 = (resources.files("settlement") / "policies" / "sh-employee-2019.toml").read_text(
    encoding="utf-8"
)
CATALOGUE = (resources.files("settlement") / "catalogues" / "demo.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("day", "policy_id"),
    [
        (dt.date(2019, 1, 1), "sh-employee-2019"),
        (dt.date(2022, 12, 31), "sh-employee-2019"),
        (dt.date(2023, 1, 1), "sh-employee-2023"),
        (dt.date(2099, 12, 31), "sh-employee-2023"),
    ],
)
def test_policy_chosen_by_visit_date(day: dt.date, policy_id: str) -> None:
    assert book().for_date(day).policy_id == policy_id


@pytest.mark.parametrize("day", [dt.date(2018, 12, 31), dt.date(2100, 1, 1)])
def test_no_policy_for_the_date(day: dt.date) -> None:
    with pytest.raises(errors.PolicyNotFound) as info:
        book().for_date(day)
    assert info.value.code == "POLICY_NOT_FOUND"


def test_same_claim_different_year_different_split() -> None:
    # 1,000.00 class A, ≤44, level 1, no accounts. 2022-12-31: band 150000 takes it all.
    # 2023-01-01: band 50000, co-pay 50000 × 80 % = 40000 fund.
    from settlement_testkit import run

    before = run([consultation(100000)], person=EMPLOYEE_30, day=dt.date(2022, 12, 31))
    after = run([consultation(100000)], person=EMPLOYEE_30, day=dt.date(2023, 1, 1))
    assert (before.hifp_pay, before.act_pay_dedc) == (0, 100000)
    assert (after.hifp_pay, after.act_pay_dedc) == (40000, 50000)


def test_settle_refuses_a_policy_that_does_not_cover_the_visit() -> None:
    with pytest.raises(errors.PolicyNotApplicable) as info:
        settle(
            lines=[consultation(100)],
            person=EMPLOYEE_30,
            visit=Visit(dt.date(2024, 1, 1), VisitType.OUTPATIENT, HospitalLevel.LEVEL_1),
            policy=book().for_date(dt.date(2020, 1, 1)),
            catalogue=demo_catalogue(),
            year_to_date=YearToDate(),
            balances=AccountBalances(0, 0),
        )
    assert info.value.code == "POLICY_NOT_APPLICABLE"


def test_shipped_files_note_source_and_assumptions() -> None:
    # The source is the project's own docs/domain.md §6, which must exist in the clone.
    domain = (Path(__file__).resolve().parents[2] / "docs" / "domain.md").read_text("utf-8")
    assert "\n## 6. " in domain
    for policy in book().policies:
        assert policy.source.startswith("docs/domain.md §6 ")
        assert "[weak" in policy.source
        assert policy.assumptions


def _mutated(old: str, new: str, text: str = POLICY_2019) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


BAD_POLICIES = {
    "float ratio": _mutated("level_1 = 6500, level_2 = 6000", "level_1 = 65.0, level_2 = 6000"),
    "string amount": _mutated("pooling_fund_cap_fen = 55_000_000", 'pooling_fund_cap_fen = "5"'),
    "negative band": _mutated(
        "retiree = 70_000                              # ASSUMED 700 yuan\n\n[outpatient.copay",
        "retiree = -1\n\n[outpatient.copay",
    ),
    "ratio above 100 %": _mutated("retiree = 9200", "retiree = 10001"),
    "zero inpatient ratio": _mutated("retiree = 9200", "retiree = 0"),
    "zero cap": _mutated("pooling_fund_cap_fen = 55_000_000", "pooling_fund_cap_fen = 0"),
    "missing key": _mutated("employee_older_band_from_age = 45\n", ""),
    "unknown key": _mutated('insutype = "310"', 'insutype = "310"\nceiling_fen = 5'),
    "misspelt category": _mutated("employee_45_and_over = 8500", "employee_45_and_older = 8500"),
    "dates reversed": _mutated("effective_to = 2022-12-31", "effective_to = 2018-12-31"),
    "date as string": _mutated("effective_to = 2022-12-31", 'effective_to = "2022-12-31"'),
    "unknown rules": _mutated('rules = "inpatient_deductible"', 'rules = "inpatient_flat"'),
    "bool as int": _mutated(
        "employee_older_band_from_age = 45", "employee_older_band_from_age = true"
    ),
    "schema version": _mutated("schema_version = 1", "schema_version = 2"),
    "other insurance type": _mutated('insutype = "310"', 'insutype = "390"'),
    "not TOML": "policy_id = ",
    "too large": POLICY_2019 + "#" * 70_000,
}


@pytest.mark.parametrize("text", BAD_POLICIES.values(), ids=BAD_POLICIES.keys())
def test_bad_policy_file_is_refused(text: str) -> None:
    with pytest.raises(errors.PolicyInvalid) as info:
        parse_policy(text, origin="bad.toml")
    assert info.value.code == "POLICY_INVALID"
    assert info.value.message.startswith("bad.toml")


def test_policy_id_must_match_the_file_name() -> None:
    with pytest.raises(errors.PolicyInvalid):
        parse_policy(POLICY_2019, origin="x.toml", expected_id="sh-employee-2020")


def test_overlapping_policies_are_refused() -> None:
    first = parse_policy(POLICY_2019, origin="a")
    second = parse_policy(
        _mutated('policy_id = "sh-employee-2019"', 'policy_id = "sh-employee-2022"').replace(
            "effective_from = 2019-01-01", "effective_from = 2022-12-31"
        ),
        origin="b",
    )
    with pytest.raises(errors.PolicyOverlap) as info:
        PolicyBook([first, second])
    assert info.value.code == "POLICY_OVERLAP"
    with pytest.raises(errors.PolicyOverlap):
        PolicyBook([first, first])


def _catalogue_mutated(old: str, new: str) -> str:
    return _mutated(old, new, CATALOGUE)


BAD_CATALOGUES = {
    "class B without first part": _catalogue_mutated(
        'class = "B"\npreselfpay_bp = 2000       # 20 %', 'class = "B"'
    ),
    "class A with first part": _catalogue_mutated(
        'code = "DEMO-A-001"\nname = "阿莫西林胶囊 amoxicillin capsules"\nclass = "A"',
        'code = "DEMO-A-001"\nname = "x"\nclass = "A"\npreselfpay_bp = 100',
    ),
    "duplicate code": _catalogue_mutated('code = "DEMO-A-002"', 'code = "DEMO-A-001"'),
    "unknown class": _catalogue_mutated(
        'name = "保健品 dietary supplement"\nclass = "C"', 'name = "x"\nclass = "D"'
    ),
    "float first part": _catalogue_mutated(
        "preselfpay_bp = 2000       # 20 %", "preselfpay_bp = 0.2"
    ),
    "first part 100 %": _catalogue_mutated(
        "preselfpay_bp = 2000       # 20 %", "preselfpay_bp = 10000"
    ),
    "bad code": _catalogue_mutated('code = "DEMO-C-002"', 'code = "DEMO C 002"'),
}


@pytest.mark.parametrize("text", BAD_CATALOGUES.values(), ids=BAD_CATALOGUES.keys())
def test_bad_catalogue_file_is_refused(text: str) -> None:
    with pytest.raises(errors.CatalogueInvalid) as info:
        parse_catalogue(text, origin="bad.toml")
    assert info.value.code == "CATALOGUE_INVALID"


def test_demo_catalogue_loads() -> None:
    catalogue = demo_catalogue()
    assert catalogue.item("DEMO-B-003").preselfpay_bp == 2000
    assert catalogue.item("DEMO-A-001").preselfpay_bp == 0


def test_a_policy_change_is_a_new_file_not_new_code() -> None:
    # A made-up 2025 file: the 2023 table with a 1,000-yuan band. The 2023 file is cut back
    # to end on 2024-12-31; the engine is untouched.
    text_2023 = (resources.files("settlement") / "policies" / "sh-employee-2023.toml").read_text(
        encoding="utf-8"
    )
    cut_2023 = parse_policy(
        _mutated("effective_to = 2099-12-31", "effective_to = 2024-12-31", text_2023),
        origin="2023",
    )
    text_2025 = _mutated(
        'policy_id = "sh-employee-2023"', 'policy_id = "sh-employee-2025"', text_2023
    )
    text_2025 = _mutated("effective_from = 2023-01-01", "effective_from = 2025-01-01", text_2025)
    text_2025 = _mutated(
        "employee_44_and_under = 50_000                # 500 yuan",
        "employee_44_and_under = 100_000",
        text_2025,
    )
    new_book = PolicyBook(
        [parse_policy(POLICY_2019, origin="2019"), cut_2023, parse_policy(text_2025, origin="2025")]
    )
    day = dt.date(2025, 3, 1)
    policy = new_book.for_date(day)
    assert policy.policy_id == "sh-employee-2025"
    result = settle(
        lines=[consultation(150000)],
        person=EMPLOYEE_30,
        visit=Visit(day, VisitType.OUTPATIENT, HospitalLevel.LEVEL_1),
        policy=policy,
        catalogue=demo_catalogue(),
        year_to_date=YearToDate(),
        balances=AccountBalances(0, 0),
    )
    # band 100000, co-pay 50000 × 80 % = 40000
    assert (result.act_pay_dedc, result.hifp_pay) == (100000, 40000)
