"""THE task mix of the Locust suite: every weight, in one table. Edit the weights here.

A user is one demo terminal. Its row of :data:`MIX` says how often each kind of visit happens
at it, relative to the other kinds of the same row (Locust-style integer weights: 60 against a
row total of 100 means 60 % of that terminal's visits). A hospital terminal's level (一级 /
二级 / 三级, i.e. community, district, tertiary) is drawn once per user from
:data:`HOSPITAL_LEVEL_WEIGHTS`; :data:`USER_CLASS_WEIGHTS` splits users between hospitals and
pharmacies. Figures are made up to look like a Shanghai day [weak]: tertiary hospitals carry
most outpatient visits and most inpatient stays, pharmacies settle purchases only, and a few
percent of cards presented are lost or voided by a newer card.

The kinds (columns), what each sends, and how the books check counts it:

================  =========================================================================
outpatient        challenge, response, eligibility, pre-settle, settle (local outpatient)
pharmacy          the same five at a pharmacy (visit type ``pharmacy``)
inpatient         admission (card read), fee lines twice, card read, discharge (settles)
cancel            cancels one of this terminal's earlier settlements (a full cancel), or
                  settles a visit first when it has none
cross_province    a person insured in another province (filed, or an emergency): challenge,
                  response, eligibility, settle through the hub (no pre-settle: the hub has
                  none)
legacy_card       a second-generation card: challenge, cryptogram, eligibility, pre-settle,
                  settle
card_refused      a lost or superseded card (:data:`REFUSALS`): challenge, response refused
                  with the expected code; counted as an expected outcome, not a failure
settle_replayed   an ordinary visit whose settle is sent again with the same
                  Idempotency-Key: the same settlement must come back,
                  ``Idempotent-Replayed: true``, and the books must hold it once
================  =========================================================================

This module is data and checks only: it imports neither locust nor the network, so tests and
tools read it freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "HOSPITAL_LEVEL_WEIGHTS",
    "KINDS",
    "MIX",
    "REFUSALS",
    "USER_CLASS_WEIGHTS",
    "check_mix",
    "row_for",
    "shares",
]

KINDS: Final = (
    "outpatient",
    "pharmacy",
    "inpatient",
    "cancel",
    "cross_province",
    "legacy_card",
    "card_refused",
    "settle_replayed",
)

# fmt: off
#: Columns in the order of KINDS: outpatient, pharmacy, inpatient, cancel, cross_province,
#: legacy_card, card_refused, settle_replayed.
MIX: Final[Mapping[str, tuple[int, ...]]] = {
    #              outpt pharm inpat cancel xprov legacy refused replay
    "hospital-3": (  56,    0,   12,    3,     8,     9,      6,      6),
    "hospital-2": (  62,    0,    8,    3,     6,     9,      6,      6),
    "hospital-1": (  70,    0,    2,    3,     4,    10,      6,      5),
    "pharmacy":   (   0,   74,    0,    3,     6,     6,      6,      5),
}
# fmt: on

#: Share of users per Locust user class (Locust's ``weight``).
USER_CLASS_WEIGHTS: Final[Mapping[str, int]] = {"HospitalTerminal": 3, "PharmacyTerminal": 2}

#: Share of hospital users per hospital level (the demo world has 240 level-1, 120 level-2 and
#: 40 level-3 hospitals; the big ones see most of the patients).
HOSPITAL_LEVEL_WEIGHTS: Final[Mapping[int, int]] = {3: 45, 2: 35, 1: 20}

#: Which card a ``card_refused`` visit presents, and the refusal the gateway must answer.
#: (generation, registry state of the demo card) → (weight, expected code).
REFUSALS: Final[Mapping[tuple[int, str], tuple[int, str]]] = {
    (3, "lost"): (2, "CARD_LOST"),
    (2, "superseded"): (3, "CARD_SUPERSEDED"),
    (2, "lost"): (1, "CARD_LOST"),
}


def row_for(kind: str, level: int | None = None) -> Mapping[str, int]:
    """The weights of one terminal: ``kind`` "hospital" (with its ``level``) or "pharmacy".

    >>> row_for("hospital", 3)["inpatient"], row_for("pharmacy")["outpatient"]
    (12, 0)
    """
    key = f"hospital-{level}" if kind == "hospital" else kind
    if key not in MIX:
        raise KeyError(f"no row for {kind!r} (level {level})")
    return dict(zip(KINDS, MIX[key], strict=True))


def shares(row: Mapping[str, int]) -> dict[str, float]:
    """Each kind's share of a row's visits, 0..1 (what the weights mean).

    >>> round(shares(row_for("hospital", 1))["outpatient"], 2)
    0.7
    """
    total = sum(row.values())
    return {kind: weight / total for kind, weight in row.items()}


def check_mix() -> None:
    """Raise ValueError if the table cannot mean what the docstring says (run at import)."""
    for key, weights in MIX.items():
        if len(weights) != len(KINDS):
            raise ValueError(f"MIX[{key!r}]: {len(weights)} weights for {len(KINDS)} kinds")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"MIX[{key!r}]: weights must be >= 0 with a positive total")
        row = dict(zip(KINDS, weights, strict=True))
        if key == "pharmacy" and (row["outpatient"] or row["inpatient"]):
            raise ValueError("a pharmacy settles purchases only (no outpatient, no inpatient)")
        if key != "pharmacy" and row["pharmacy"]:
            raise ValueError(f"MIX[{key!r}]: a hospital does not settle pharmacy purchases")
    for level in HOSPITAL_LEVEL_WEIGHTS:
        if f"hospital-{level}" not in MIX:
            raise ValueError(f"hospital level {level} has no row in MIX")
    if any(w <= 0 for w in (*USER_CLASS_WEIGHTS.values(), *HOSPITAL_LEVEL_WEIGHTS.values())):
        raise ValueError("user class and level weights must be positive")
    if any(weight <= 0 for weight, _ in REFUSALS.values()):
        raise ValueError("refusal weights must be positive")


check_mix()
