"""Which visits an institution may settle, and the ids a settlement is given.

>>> import datetime as dt
>>> from settlement.counter.ports import Counter
>>> day = dt.date(2026, 3, 2)
>>> visit_at(Counter("H1", "hospital", 3), "outpatient", day, day).hospital_level
<HospitalLevel.LEVEL_3: 3>
>>> visit_at(Counter("P1", "pharmacy", None), "outpatient", day, day)
Traceback (most recent call last):
...
settlement.errors.VisitTypeNotAllowed: a pharmacy settles pharmacy here, not outpatient
"""

from __future__ import annotations

import datetime as dt
import secrets

from dbkit import beijing_date
from settlement.claim import Visit
from settlement.counter.ports import Counter
from settlement.errors import InvalidVisit, VisitTypeNotAllowed
from settlement.policy import HospitalLevel, VisitType

__all__ = ["new_id", "visit_at"]


def visit_at(
    counter: Counter,
    visit_type: str,
    visit_date: dt.date,
    today: dt.date,
    *,
    via_admission: bool = False,
) -> Visit:
    """The visit, if an institution of this kind may settle it: pharmacy purchases at
    pharmacies only, outpatient and emergency at hospitals, inpatient only through an
    admission; never a visit in the future."""
    kind = counter.kind
    if kind == "pharmacy":
        allowed = {"pharmacy"}
    elif kind == "hospital":
        allowed = {"inpatient"} if via_admission else {"outpatient", "emergency"}
    else:
        # Issuing institutions (banks, employers, ...) settle nothing. The gateway's route guard
        # refuses them first; the rule stays true here as well rather than reading every
        # non-pharmacy as a hospital.
        raise VisitTypeNotAllowed(f"a {kind} settles no visits")
    if visit_type not in allowed:
        raise VisitTypeNotAllowed(
            f"a {kind} settles {', '.join(sorted(allowed))} here, not {visit_type}"
        )
    if visit_date > today:
        raise InvalidVisit("the visit date is in the future")
    # A pharmacy has no hospital grade; the pharmacy rules pay no fund share, so the level
    # only fills the record's required column.
    return Visit(
        visit_date=visit_date,
        visit_type=VisitType(visit_type),
        hospital_level=HospitalLevel(counter.level or 1),
    )


def new_id(prefix: str, now: dt.datetime) -> str:
    """A settlement (``S``), visit (``M``) or admission (``A``) id: the Beijing day and 64
    random bits, so ids from every worker and replica never collide and sort by day."""
    return f"{prefix}{beijing_date(now):%Y%m%d}{secrets.token_hex(8)}"
