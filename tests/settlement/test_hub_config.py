"""The hub's data and switches: province files (policy + [hub] table), derived persons, and
the fault plan (header, PUT body, seeded reproducibility)."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Any

import pytest

from settlement.errors import PolicyInvalid
from settlement.hub.faults import (
    FaultPlan,
    FaultSpecInvalid,
    FaultSwitches,
    ForcedFault,
    parse_fault_header,
)
from settlement.hub.persons import derive_person
from settlement.hub.province import load_provinces, parse_province, province_of
from sscard.masking import mask_psn_no

# --- provinces ---------------------------------------------------------------------------------


def _jiangsu_text() -> str:
    path = resources.files("settlement.hub") / "provinces" / "320000.toml"
    return path.read_text(encoding="utf-8")


def test_six_provinces_load_each_with_its_own_figures() -> None:
    provinces = load_provinces()
    assert sorted(p.admdvs for p in provinces.values()) == [
        "110000", "320000", "330000", "340000", "440000", "510000"
    ]  # fmt: skip
    assert set(provinces) == {"11", "32", "33", "34", "44", "51"}
    policies = [p.policy for p in provinces.values()]
    assert len({p.policy_id for p in policies}) == 6
    assert len({p.outpatient.self_pay_band_fen for p in policies}) == 6
    assert len({p.annual.pooling_fund_cap_fen for p in policies}) == 6
    assert len({p.temporary_case_reduction_bp for p in provinces.values()}) > 1
    assert province_of("320500", provinces) is provinces["32"]
    assert province_of("120000", provinces) is None


def test_province_parse_keeps_hub_fields_out_of_the_policy() -> None:
    province = parse_province(_jiangsu_text(), origin="320000.toml")
    assert (province.admdvs, province.temporary_case_reduction_bp) == ("320000", 1000)
    assert province.policy.policy_id == "js-employee-hub"
    assert province.temporary_policy.policy_id == "js-employee-hub-temporary"
    assert province.policy.covers(dt.date(2026, 6, 1))


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('[hub]\nadmdvs = "320000"', '[hub]\nadmdvs = "320100"', "province code"),
        ("temporary_case_reduction_bp = 1000", "temporary_case_reduction_bp = 0.1", "0..10000"),
        ("temporary_case_reduction_bp = 1000", "temporary_case_reduction_bp = 10001", "0..10000"),
        ("temporary_case_reduction_bp = 1000", "", r"\[hub\] must have"),
        ("temporary_case_reduction_bp = 1000\n", "temporary_case_reduction_bp = 1000\nx = 1\n",
         r"\[hub\] must have"),
        ("pooling_fund_cap_fen = 40_000_000", "pooling_fund_cap_fen = 0", "pooling_fund_cap_fen"),
        ("employee_older_band_from_age = 45", "employee_older_band = 45", "extra|missing|Field"),
        ("[annual]", "[annual", "not valid TOML"),
    ],
)  # fmt: skip
def test_bad_province_files_are_refused(old: str, new: str, match: str) -> None:
    text = _jiangsu_text()
    assert old in text
    with pytest.raises(PolicyInvalid, match=match):
        parse_province(text.replace(old, new, 1), origin="320000.toml")


# --- persons -----------------------------------------------------------------------------------


def test_persons_are_derived_and_bounded() -> None:
    seen_retired = set()
    for n in range(1, 400):
        person = derive_person("s", f"32{n:013d}")
        assert person is not None
        assert dt.date(1945, 1, 1) <= person.birth_date <= dt.date(2004, 12, 31)
        assert 0 <= person.opening_current_year_fen <= 300_000
        assert 0 <= person.opening_past_years_fen <= 2_000_000
        if person.birth_date < dt.date(1960, 1, 1):
            assert person.retired
        if person.birth_date >= dt.date(1970, 1, 1):
            assert not person.retired
        seen_retired.add(person.retired)
    assert seen_retired == {True, False}


@pytest.mark.parametrize(
    "bad", ["", "32", "3200000000000001", "020000000000001", "32000000000000x"]
)
def test_malformed_psn_no_names_nobody(bad: str) -> None:
    assert derive_person("s", bad) is None


def test_psn_no_is_masked_for_logs() -> None:
    assert mask_psn_no("320000000012345") == "32***********45"
    assert mask_psn_no("abc") == "***"


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "forced"),
    [
        (None, ForcedFault()),
        ("", ForcedFault()),
        ("drop", ForcedFault(drop=True)),
        ("5XX", ForcedFault(error_5xx=True)),
        ("latency=250", ForcedFault(latency_ms=250)),
        ("latency=10, drop", ForcedFault(drop=True, latency_ms=10)),
    ],
)
def test_fault_header(header: str | None, forced: ForcedFault) -> None:
    assert parse_fault_header(header) == forced


@pytest.mark.parametrize(
    "header", ["explode", "latency=", "latency=-1", "latency=60001", "latency=1e3", "drop;5xx",
               "latency=٣", "x" * 101]
)  # fmt: skip
def test_bad_fault_headers_are_refused(header: str) -> None:
    with pytest.raises(FaultSpecInvalid):
        parse_fault_header(header)


def test_fault_update_replaces_only_the_keys_given() -> None:
    plan = FaultPlan(FaultSwitches(latency_ms=5, error_5xx_ratio=0.25, seed=3))
    assert plan.update({"drop_after_commit_ratio": 1}) == 0.0
    assert plan.as_json() == {
        "latency_ms": 5,
        "drop_after_commit_ratio": 1.0,
        "error_5xx_ratio": 0.25,
        "refuse_connections_s": 0,
        "seed": 3,
    }
    assert plan.update({"refuse_connections_s": 1.5}) == 1.5


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"latency": 1},
        {"latency_ms": -1},
        {"latency_ms": 1.5},
        {"latency_ms": True},
        {"error_5xx_ratio": 1.01},
        {"error_5xx_ratio": "0.5"},
        {"drop_after_commit_ratio": float("nan")},
        {"seed": "7"},
        {"refuse_connections_s": -1},
        {"refuse_connections_s": 301},
        {"refuse_connections_s": float("inf")},
        {"latency_ms": 10, "error_5xx_ratio": 2},  # all or nothing
    ],
)
def test_bad_fault_updates_change_nothing(body: Any) -> None:
    plan = FaultPlan(FaultSwitches(latency_ms=5))
    before = plan.as_json()
    with pytest.raises(FaultSpecInvalid):
        plan.update(body)
    assert plan.as_json() == before


def _outcomes(plan: FaultPlan, n: int) -> list[tuple[bool, bool]]:
    return [(d.error_5xx, d.drop) for d in (plan.decide(ForcedFault()) for _ in range(n))]


def test_faults_are_reproducible_from_the_seed() -> None:
    switches = FaultSwitches(drop_after_commit_ratio=0.3, error_5xx_ratio=0.3, seed=42)
    first = _outcomes(FaultPlan(switches), 200)
    assert first == _outcomes(FaultPlan(switches), 200)
    assert {o[0] for o in first} == {True, False}
    assert {o[1] for o in first} == {True, False}
    # Reseeding through an update replays the same sequence.
    plan = FaultPlan(switches)
    _outcomes(plan, 17)
    plan.update({"seed": 42})
    assert _outcomes(plan, 200) == first
    assert _outcomes(FaultPlan(FaultSwitches(0, 0.3, 0.3, seed=43)), 200) != first


def test_ratio_extremes_and_forced_faults() -> None:
    never = FaultPlan(FaultSwitches())
    assert _outcomes(never, 50) == [(False, False)] * 50
    always = FaultPlan(FaultSwitches(drop_after_commit_ratio=1.0, error_5xx_ratio=1.0))
    assert _outcomes(always, 50) == [(True, True)] * 50
    forced = never.decide(ForcedFault(drop=True, error_5xx=True, latency_ms=7))
    assert (forced.drop, forced.error_5xx, forced.latency_ms) == (True, True, 7)
    assert FaultPlan(FaultSwitches(latency_ms=9)).decide(ForcedFault()).latency_ms == 9


def test_switches_are_checked_at_construction() -> None:
    with pytest.raises(FaultSpecInvalid):
        FaultSwitches(error_5xx_ratio=1.5)
    with pytest.raises(FaultSpecInvalid):
        FaultSwitches(latency_ms=-1)
