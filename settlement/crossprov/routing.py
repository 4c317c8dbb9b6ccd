"""Which way a settlement goes: decided by the insured place alone (DOMAIN §5).

>>> route_for("310000", "310115")
<Route.LOCAL: 'local'>
>>> route_for("320100", "320500")
<Route.IN_PROVINCE_REMOTE: 'in_province_remote'>
>>> route_for("310000", "320000")
<Route.CROSS_PROVINCE: 'cross_province'>
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "SHANGHAI_ADMDVS",
    "SINGLE_POOLING_AREA_PROVINCES",
    "InsuredPlace",
    "Route",
    "is_admdvs",
    "route_for",
]

_ADMDVS: Final = re.compile(r"[1-9][0-9]{5}")
# Provinces that are one pooling area as a whole: the four municipalities (Beijing, Tianjin,
# Shanghai, Chongqing pool city-wide) [weak: as data, extend when a province unifies].
SINGLE_POOLING_AREA_PROVINCES: Final = frozenset({"11", "12", "31", "50"})


class Route(enum.StrEnum):
    LOCAL = "local"  # 本地: settled by the gateway's own engine
    IN_PROVINCE_REMOTE = "in_province_remote"  # 省内异地: through the hub, no filing
    CROSS_PROVINCE = "cross_province"  # 跨省异地: through the hub, needs a filing (备案)

    @property
    def via_hub(self) -> bool:
        return self is not Route.LOCAL


def is_admdvs(code: str) -> bool:
    """A six-digit GB/T 2260 administrative division code."""
    return bool(_ADMDVS.fullmatch(code))


def _pooling_area(admdvs: str) -> str:
    # A prefecture-level city is the usual pooling area (统筹区): the first four digits; a
    # municipality pools as one, so its two province digits are the area.
    province = admdvs[:2]
    return province if province in SINGLE_POOLING_AREA_PROVINCES else admdvs[:4]


def route_for(treatment_admdvs: str, insured_admdvs: str) -> Route:
    """The route of a settlement at ``treatment_admdvs`` for a person insured at
    ``insured_admdvs``. Pure; raises ValueError on a malformed code (a bug upstream: both
    come from the gateway's own records)."""
    for code in (treatment_admdvs, insured_admdvs):
        if not is_admdvs(code):
            raise ValueError(f"not an admdvs code: {code!r}")
    if treatment_admdvs[:2] != insured_admdvs[:2]:
        return Route.CROSS_PROVINCE
    if _pooling_area(treatment_admdvs) == _pooling_area(insured_admdvs):
        return Route.LOCAL
    return Route.IN_PROVINCE_REMOTE


SHANGHAI_ADMDVS: Final = "310000"  # the treatment place of every institution here (就医地)


@dataclass(frozen=True, slots=True)
class InsuredPlace:
    """Where a person is insured, and so which way their settlements go. A value, decided
    before any write transaction begins (docs/architecture.md, "How a visit flows"): the
    handler matches on ``route``."""

    psn_no: str
    insuplc_admdvs: str
    route: Route
