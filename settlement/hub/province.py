"""The insured provinces the hub serves: each one's benefit policy, as data.

One TOML per province in ``settlement/hub/provinces/<admdvs>.toml``, in the schema of
``settlement/policies/*.toml`` (validated by :class:`settlement.policy.Policy`) plus a
``[hub]`` table the policy schema cannot carry (it forbids unknown keys, and
``settlement/policy.py`` is not ours to extend)::

    [hub]
    admdvs = "320000"
    name = "江苏 Jiangsu"
    temporary_case_reduction_bp = 1000   # referral / emergency filings: every fund ratio lower

The temporary-case policy is derived once at load: the same file with every fund ratio
(outpatient co-pay band, inpatient) lowered by ``temporary_case_reduction_bp``, never below
zero (inpatient: never below 1 bp, which the schema requires). The engine is unchanged; it is
simply given the other policy.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import pydantic

from settlement.errors import PolicyInvalid
from settlement.money import BP_PER_UNIT
from settlement.policy import Policy

__all__ = ["Province", "load_provinces", "parse_province", "province_of"]

_ADMDVS_PROVINCE: Final = re.compile(r"[1-9][0-9]0000")
_HUB_KEYS: Final = frozenset({"admdvs", "name", "temporary_case_reduction_bp"})


@dataclass(frozen=True, slots=True)
class Province:
    admdvs: str  # "320000"
    name: str
    temporary_case_reduction_bp: int
    policy: Policy  # long-term filings (resettled retirees, long-term residents)
    temporary_policy: Policy  # referral and emergency filings

    @property
    def prefix(self) -> str:
        return self.admdvs[:2]

    def policy_for(self, *, temporary: bool) -> Policy:
        return self.temporary_policy if temporary else self.policy


def _lowered(ratio_bp: int, reduction_bp: int, floor_bp: int) -> int:
    return max(floor_bp, ratio_bp - reduction_bp)


def _temporary_policy(policy: Policy, reduction_bp: int) -> Policy:
    data: dict[str, Any] = policy.model_dump()
    data["policy_id"] = f"{policy.policy_id}-temporary"[:64]
    data["title"] = f"{policy.title} (temporary case: fund ratios -{reduction_bp} bp)"[:200]
    copay = data["outpatient"]["copay_fund_ratio_bp"]
    for by_level in copay.values():
        for level in by_level:
            by_level[level] = _lowered(by_level[level], reduction_bp, 0)
    inpatient = data["inpatient"]["fund_ratio_bp"]
    for category in inpatient:
        inpatient[category] = _lowered(inpatient[category], reduction_bp, 1)
    return Policy.model_validate(data)


def parse_province(text: str, *, origin: str) -> Province:
    """One province file; PolicyInvalid naming ``origin`` on anything wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyInvalid(f"{origin}: not valid TOML: {exc}") from exc
    hub = data.pop("hub", None)
    if not isinstance(hub, dict) or set(hub) != _HUB_KEYS:
        raise PolicyInvalid(f"{origin}: [hub] must have exactly {sorted(_HUB_KEYS)}")
    admdvs, name, reduction_bp = hub["admdvs"], hub["name"], hub["temporary_case_reduction_bp"]
    if not isinstance(admdvs, str) or not _ADMDVS_PROVINCE.fullmatch(admdvs):
        raise PolicyInvalid(f"{origin}: hub.admdvs must be a province code like '320000'")
    if not isinstance(name, str) or not name:
        raise PolicyInvalid(f"{origin}: hub.name must be a non-empty string")
    if type(reduction_bp) is not int or not 0 <= reduction_bp <= BP_PER_UNIT:
        raise PolicyInvalid(f"{origin}: hub.temporary_case_reduction_bp must be 0..10000 (int)")
    try:
        policy = Policy.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()[:10]
        )
        raise PolicyInvalid(f"{origin}: {problems}") from exc
    return Province(
        admdvs=admdvs,
        name=name,
        temporary_case_reduction_bp=reduction_bp,
        policy=policy,
        temporary_policy=_temporary_policy(policy, reduction_bp),
    )


def load_provinces() -> Mapping[str, Province]:
    """The shipped province files by two-digit province prefix ("32" → Jiangsu). A file
    must be named after its own ``hub.admdvs``."""
    folder = resources.files("settlement.hub") / "provinces"
    provinces: dict[str, Province] = {}
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".toml"):
            continue
        province = parse_province(entry.read_text(encoding="utf-8"), origin=entry.name)
        if entry.name != f"{province.admdvs}.toml":
            raise PolicyInvalid(f"{entry.name}: hub.admdvs is {province.admdvs}")
        provinces[province.prefix] = province
    return provinces


def province_of(admdvs: str, provinces: Mapping[str, Province]) -> Province | None:
    """The province an area code belongs to (its first two digits), if the hub serves it."""
    return provinces.get(admdvs[:2])
