"""What the counter's use cases hand back to a door to render: plain values, no format.

A door (the ``/v1`` JSON API, the national envelope) turns these into its own answer; the
stored answer of a keyed use case is the door's rendering, made inside the unit
(settlement.keyed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from settlement.catalogue import Catalogue, load_catalogue
from settlement.claim import ClaimLine, YearToDate
from settlement.policy import PolicyBook, shipped_policies
from settlement.recording import WrittenSettlement
from settlement.result import SettlementResult
from settlement.store import SettlementRow

__all__ = [
    "CATALOGUE_ID",
    "Eligibility",
    "Estimate",
    "FeeLinesAdded",
    "FeeLinesCancelled",
    "PersonInformation",
    "Registered",
    "Settled",
    "SettlementPage",
    "catalogue",
    "claim_lines",
    "policies",
]

# The demo catalogue until a real one is configured (settlement/catalogues).
CATALOGUE_ID = "demo"


@cache  # one entry: zero arguments
def policies() -> PolicyBook:
    # Parsed once per process (it was ~20 % of a settle's CPU when parsed per request): a
    # policy change is a new file, picked up when the gateway restarts, like the catalogue.
    return shipped_policies()


@cache  # one entry: zero arguments
def catalogue() -> Catalogue:
    return load_catalogue(CATALOGUE_ID)


def claim_lines(lines: Sequence[tuple[str, int, int]]) -> list[ClaimLine]:
    """A request's (code, quantity, unit price in fen) lines as engine lines; an unknown
    catalogue code is refused here, before any unit of work starts (the engine would refuse it
    too, later, inside the transaction)."""
    known = catalogue()
    for code, _quantity, _price in lines:
        known.item(code)
    return [ClaimLine(code, quantity, price_fen) for code, quantity, price_fen in lines]


@dataclass(frozen=True, slots=True)
class Settled:
    """A settlement as written (the settle's own answer, with the engine's ``explanation``)
    or as stored (queries, cancel: ``explanation`` None)."""

    record: SettlementRow | WrittenSettlement
    psn_no: str
    explanation: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """Pre-settle's answer: the split a settle would make now."""

    psn_no: str
    result: SettlementResult


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Person information (1101-like) of a locally insured cardholder, on ``day``."""

    psn_no: str
    age_years: int
    retired: bool
    benefit_category: str
    insutype: str
    insuplc_admdvs: str
    psn_type: str
    current_year_fen: int
    past_years_fen: int
    year_to_date: YearToDate


@dataclass(frozen=True, slots=True)
class FeeLinesAdded:
    admission_id: str
    accepted: int
    line_count: int


@dataclass(frozen=True, slots=True)
class SettlementPage:
    """One page of a day's settlements; ``next_after_id`` continues it (None: the last)."""

    day: dt.date
    items: Sequence[Settled]
    next_after_id: int | None


@dataclass(frozen=True, slots=True)
class FeeLinesCancelled:
    """A batch of fee lines taken off an open visit (2205, 2302)."""

    admission_id: str
    cancelled: int
    line_count: int


@dataclass(frozen=True, slots=True)
class Registered:
    """A registered visit (an outpatient registration, 2201): its id is the visit's
    ``mdtrt_id``, under which its fee lines are uploaded and it is settled."""

    mdtrt_id: str
    psn_no: str
    visit_type: str
    begin_date: dt.date


@dataclass(frozen=True, slots=True)
class PersonInformation:
    """Who the cardholder is (1101's ``baseinfo``) beside what they are insured for: name
    and citizen id are personal data, for the door's answer to the counter only, never a
    log."""

    eligibility: Eligibility
    name: str
    citizen_id: str
    birth_date: dt.date
