"""Benefit policy as data: one TOML file per policy year, validated strictly on load.

A policy change is a new file under ``settlement/policies/``, never new code. Each file names
its source and lists the figures it had to assume, and covers the visit dates
``effective_from`` .. ``effective_to`` (both inclusive; TOML has no null, so "until replaced"
is written as a far date such as 2099-12-31).
:class:`PolicyBook` holds the files and picks one by visit date; two files covering one date
are refused (``POLICY_OVERLAP``) rather than resolved by a guess.

The tables follow Shanghai's employee insurance (职工基本医疗保险, 险种 ``insutype`` 310):

* 门诊 outpatient (also 急诊 emergency and 药店 pharmacy, by each visit type's ``rules``): the
  current-year account (当年账户) pays first, then the patient pays through the self-pay band
  (自负段), then in the co-pay band (共付段) the pooling fund (统筹基金) pays a ratio by hospital
  level and benefit category;
* 住院 inpatient: the patient pays the deductible (起付线), then the fund pays a ratio, up to
  the annual cap (最高支付限额); above it the supplementary fund (附加基金) pays a ratio.

All amounts are int fen, all ratios int basis points (10000 = 100 %). Floats, strings for
numbers, unknown keys and missing keys are errors (``POLICY_INVALID``).
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import tomllib
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Annotated, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from settlement.errors import PolicyInvalid, PolicyNotFound, PolicyOverlap
from settlement.money import BP_PER_UNIT

__all__ = [
    "BenefitCategory",
    "HospitalLevel",
    "InpatientDeductibleRules",
    "OutpatientBandsRules",
    "Policy",
    "PolicyBook",
    "VisitType",
    "load_policy",
    "parse_policy",
    "shipped_policies",
]

MAX_POLICY_FILE_BYTES: Final = 64 * 1024
MAX_POLICY_FEN: Final = 10**12  # 10 billion yuan: far above any real band, deductible or cap


class VisitType(enum.StrEnum):
    OUTPATIENT = "outpatient"  # 门诊
    EMERGENCY = "emergency"  # 急诊
    INPATIENT = "inpatient"  # 住院
    PHARMACY = "pharmacy"  # 定点药店


class HospitalLevel(enum.IntEnum):
    """Hospital grade (医院等级): 1 community / primary, 2 secondary, 3 tertiary."""

    LEVEL_1 = 1
    LEVEL_2 = 2
    LEVEL_3 = 3


class BenefitCategory(enum.StrEnum):
    """Who the tables distinguish: in-service employees by age band at the visit, retirees."""

    EMPLOYEE_44_AND_UNDER = "employee_44_and_under"  # 在职 ≤ 44
    EMPLOYEE_45_AND_OVER = "employee_45_and_over"  # 在职 ≥ 45
    RETIREE = "retiree"  # 退休


Fen = Annotated[int, Field(ge=0, le=MAX_POLICY_FEN)]
RatioBp = Annotated[int, Field(ge=0, le=BP_PER_UNIT)]
PositiveRatioBp = Annotated[int, Field(ge=1, le=BP_PER_UNIT)]


class _Strict(BaseModel):
    # strict: no "1500" → 1500, no 0.65 → 0; extra=forbid: a misspelt key is an error, not a
    # silently ignored figure.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FenByCategory(_Strict):
    employee_44_and_under: Fen
    employee_45_and_over: Fen
    retiree: Fen

    def of(self, category: BenefitCategory) -> int:
        value: int = getattr(self, category.value)
        return value


class RatioByCategory(_Strict):
    employee_44_and_under: PositiveRatioBp
    employee_45_and_over: PositiveRatioBp
    retiree: PositiveRatioBp

    def of(self, category: BenefitCategory) -> int:
        value: int = getattr(self, category.value)
        return value


class RatioByLevel(_Strict):
    level_1: RatioBp
    level_2: RatioBp
    level_3: RatioBp

    def of(self, level: HospitalLevel) -> int:
        value: int = getattr(self, f"level_{int(level)}")
        return value


class RatioByCategoryAndLevel(_Strict):
    employee_44_and_under: RatioByLevel
    employee_45_and_over: RatioByLevel
    retiree: RatioByLevel

    def of(self, category: BenefitCategory, level: HospitalLevel) -> int:
        by_level: RatioByLevel = getattr(self, category.value)
        return by_level.of(level)


class OutpatientTable(_Strict):
    self_pay_band_fen: FenByCategory  # 自负段, per calendar year
    copay_fund_ratio_bp: RatioByCategoryAndLevel  # 共付段: the fund's share


class InpatientTable(_Strict):
    deductible_fen: FenByCategory  # 起付线, per calendar year
    fund_ratio_bp: RatioByCategory  # the fund's share above the deductible


class AnnualTable(_Strict):
    pooling_fund_cap_fen: Annotated[int, Field(ge=1, le=MAX_POLICY_FEN)]  # 统筹基金最高支付限额
    supplementary_above_cap_ratio_bp: RatioBp  # 附加基金 share of in-scope cost above the cap


# The most one claim of a visit type may total and still be settled at the counter (fen). A
# claim above it is refused (CLAIM_ABOVE_COUNTER_LIMIT) and goes to the insurance office's
# manual review (人工审核): a bound on what one mistyped quantity or price can cost the fund,
# set per policy file because the sensible figure differs by visit type.
CounterLimitFen = Annotated[int, Field(ge=1, le=MAX_POLICY_FEN)]


class OutpatientBandsRules(_Strict):
    """Current-year account → self-pay band → co-pay band (DOMAIN §6, outpatient)."""

    rules: Literal["outpatient_bands"]
    current_year_account: bool
    past_years_account: bool
    max_claim_fen: CounterLimitFen
    # False at a pharmacy: the band still fills, but the fund pays nothing in the co-pay band.
    fund_pays_copay_band: bool


class InpatientDeductibleRules(_Strict):
    """Deductible → fund ratio up to the annual cap → supplementary fund (DOMAIN §6)."""

    rules: Literal["inpatient_deductible"]
    current_year_account: bool
    past_years_account: bool
    max_claim_fen: CounterLimitFen


VisitRules = Annotated[
    OutpatientBandsRules | InpatientDeductibleRules, Field(discriminator="rules")
]


class VisitTypeRules(_Strict):
    outpatient: VisitRules
    emergency: VisitRules
    inpatient: VisitRules
    pharmacy: VisitRules

    def of(self, visit_type: VisitType) -> OutpatientBandsRules | InpatientDeductibleRules:
        rules: OutpatientBandsRules | InpatientDeductibleRules = getattr(self, visit_type.value)
        return rules


class Policy(_Strict):
    """One policy year's figures; see the module docstring and the shipped files."""

    schema_version: Literal[1]
    policy_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    insutype: Literal["310"]  # 职工基本医疗保险: the only insurance type the tables describe
    effective_from: dt.date
    effective_to: dt.date
    source: Annotated[str, Field(min_length=1, max_length=2000)]
    assumptions: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=50)]
    employee_older_band_from_age: Annotated[int, Field(ge=1, le=120)]
    annual: AnnualTable
    outpatient: OutpatientTable
    inpatient: InpatientTable
    visit_types: VisitTypeRules

    @pydantic.model_validator(mode="after")
    def _dates_in_order(self) -> Policy:
        if self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self

    def covers(self, visit_date: dt.date) -> bool:
        return self.effective_from <= visit_date <= self.effective_to


def parse_policy(text: str, *, origin: str, expected_id: str | None = None) -> Policy:
    """Parse and validate one policy file's text; raise PolicyInvalid naming ``origin``."""
    if len(text.encode()) > MAX_POLICY_FILE_BYTES:
        raise PolicyInvalid(f"{origin}: larger than {MAX_POLICY_FILE_BYTES} bytes")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyInvalid(f"{origin}: not valid TOML: {exc}") from exc
    try:
        policy = Policy.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()[:10]
        )
        raise PolicyInvalid(f"{origin}: {problems}") from exc
    if expected_id is not None and policy.policy_id != expected_id:
        raise PolicyInvalid(
            f"{origin}: policy_id {policy.policy_id!r} differs from the file name {expected_id!r}"
        )
    return policy


def load_policy(path: resources.abc.Traversable) -> Policy:
    """Load one policy file; its name (without .toml) must be its policy_id."""
    name = path.name
    if not name.endswith(".toml"):
        raise PolicyInvalid(f"{name}: policy files are TOML (*.toml)")
    return parse_policy(path.read_text(encoding="utf-8"), origin=name, expected_id=name[:-5])


def shipped_policies() -> PolicyBook:
    """The policy files shipped as package data in ``settlement/policies/``."""
    folder = resources.files("settlement") / "policies"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".toml")),
        key=lambda entry: entry.name,
    )
    return PolicyBook(load_policy(entry) for entry in files)


class PolicyBook:
    """A set of policies with no two covering the same date; picks one by visit date."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        ordered = sorted(policies, key=lambda policy: policy.effective_from)
        ids = [policy.policy_id for policy in ordered]
        if len(set(ids)) != len(ids):
            raise PolicyOverlap(f"policy ids are not unique: {ids}")
        for earlier, later in itertools.pairwise(ordered):
            if earlier.effective_to >= later.effective_from:
                raise PolicyOverlap(
                    f"{earlier.policy_id} and {later.policy_id} both cover "
                    f"{later.effective_from.isoformat()}"
                )
        self._policies: Sequence[Policy] = tuple(ordered)

    @property
    def policies(self) -> Sequence[Policy]:
        return self._policies

    def for_date(self, visit_date: dt.date) -> Policy:
        """The policy covering ``visit_date``; PolicyNotFound when none does."""
        for policy in self._policies:
            if policy.covers(visit_date):
                return policy
        raise PolicyNotFound(f"no benefit policy covers the visit date {visit_date.isoformat()}")
