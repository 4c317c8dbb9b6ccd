"""Which institution kind may settle which visit (settlement.counter.visits.visit_at), for every
kind of institution the gateway enrols."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.store import MEDICAL_KINDS, InstitutionKind
from settlement.claim import Visit
from settlement.counter.ports import Counter
from settlement.counter.visits import visit_at
from settlement.errors import VisitTypeNotAllowed

TODAY = dt.date(2026, 11, 27)


def _visit_at(
    kind: str,
    level: int | None,
    visit_type: str,
    visit_date: dt.date,
    today: dt.date,
    *,
    via_admission: bool = False,
) -> Visit:
    counter = Counter("H0000000001", kind, level)
    return visit_at(counter, visit_type, visit_date, today, via_admission=via_admission)


@pytest.mark.parametrize("kind", sorted(set(InstitutionKind) - MEDICAL_KINDS))
def test_an_issuing_institution_settles_no_visit(kind: str) -> None:
    for visit_type in ("outpatient", "emergency", "pharmacy", "inpatient"):
        with pytest.raises(VisitTypeNotAllowed, match="settles no visits"):
            _visit_at(kind, None, visit_type, TODAY, TODAY)


def test_hospitals_and_pharmacies_keep_their_visits() -> None:
    assert _visit_at("hospital", 3, "outpatient", TODAY, TODAY).hospital_level == 3
    assert _visit_at("hospital", 2, "inpatient", TODAY, TODAY, via_admission=True)
    assert _visit_at("pharmacy", None, "pharmacy", TODAY, TODAY)
    with pytest.raises(VisitTypeNotAllowed):
        _visit_at("pharmacy", None, "outpatient", TODAY, TODAY)
    with pytest.raises(VisitTypeNotAllowed):
        _visit_at("hospital", 1, "pharmacy", TODAY, TODAY)
