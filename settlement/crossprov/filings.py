"""Filings (备案): who may settle across provinces, and which filing a visit settles under.

Long-term cases (resettled retirees, long-term residents) and temporary ones (referrals with
their own validity and target institution; emergencies, which count as filed without any
record) (DOMAIN §5). :func:`filing_for_visit` is pure: the records in, the filing type the
hub is told (``filing_type`` in the settle input) out, or :class:`FilingRequired` naming the
filing types that would do.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from settlement.crossprov.routing import SHANGHAI_ADMDVS, Route, is_admdvs, route_for
from settlement.crossprov.store import FilingRow, FilingType
from settlement.errors import InvalidClaim, SettlementError

__all__ = [
    "Filing",
    "FilingInvalid",
    "FilingNotCrossProvince",
    "FilingNotFound",
    "FilingRequired",
    "cancel_filing",
    "filing_for_visit",
    "filings_of",
    "register_filing",
]

# Filings one person may hold at a time (a bound on the list read before every settle).
MAX_FILINGS_PER_PERSON: Final = 50
# A long-term filing without an end runs until revoked; a referral at most a year [weak].
MAX_REFERRAL_DAYS: Final = 366
# Preference when several filings are valid: long-term before temporary, because the insured
# place may pay less for temporary cases.
_PREFERENCE: Final = (
    FilingType.RESETTLED_RETIREE,
    FilingType.LONG_TERM_RESIDENT,
    FilingType.REFERRAL,
    FilingType.EMERGENCY,
)


class FilingRequired(SettlementError):
    """No valid filing for this cross-province visit (→ 422 FILING_REQUIRED)."""

    code = "FILING_REQUIRED"


class FilingInvalid(InvalidClaim):
    """A filing registration that cannot be accepted as sent (→ 422 VALIDATION_FAILED)."""

    code = "VALIDATION_FAILED"


class FilingNotCrossProvince(FilingInvalid):
    """A filing for a person not insured in another province (→ 422 VALIDATION_FAILED): only
    a cross-province settlement needs one (DOMAIN §5; an in-province remote one goes through
    the hub without). ``field`` is the input at fault, for the door to name in its own form
    (/v1's field errors, the national door's err_msg)."""

    field = "insuplc_admdvs"


class FilingNotFound(InvalidClaim):
    """No filing with this id, of this person, registered by this institution (→ 404)."""

    code = "FILING_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Filing:
    filing_type: FilingType
    valid_from: dt.date
    valid_to: dt.date | None
    target_fixmedins_code: str | None

    def covers(self, day: dt.date, fixmedins_code: str) -> bool:
        if day < self.valid_from or (self.valid_to is not None and day > self.valid_to):
            return False
        if self.filing_type is FilingType.REFERRAL:
            return self.target_fixmedins_code in (None, fixmedins_code)
        return True


def filing_for_visit(
    filings: Sequence[Filing], *, visit_type: str, visit_date: dt.date, fixmedins_code: str
) -> FilingType:
    """The filing a cross-province visit settles under, or raise FilingRequired."""
    valid = {f.filing_type for f in filings if f.covers(visit_date, fixmedins_code)}
    for filing_type in _PREFERENCE:
        if filing_type in valid:
            return filing_type
    if visit_type == "emergency":
        return FilingType.EMERGENCY  # 急诊抢救 counts as filed, no record needed
    held = sorted({f.filing_type.value for f in filings})
    raise FilingRequired(
        "a cross-province settlement needs a valid filing (备案) on the visit date: "
        "resettled_retiree, long_term_resident, or a referral to this institution "
        "(emergencies count as filed)"
        + (f"; the person's filings ({', '.join(held)}) do not cover it" if held else "")
    )


def filings_of(session: Session, psn_no: str) -> list[Filing]:
    rows = session.scalars(
        select(FilingRow)
        .where(FilingRow.psn_no == psn_no)
        .order_by(FilingRow.id)
        .limit(MAX_FILINGS_PER_PERSON)
    )
    return [
        Filing(row.filing_type, row.valid_from, row.valid_to, row.target_fixmedins_code)
        for row in rows
    ]


def register_filing(
    session: Session,
    *,
    psn_no: str,
    insuplc_admdvs: str,
    filing_type: FilingType,
    valid_from: dt.date,
    valid_to: dt.date | None,
    target_fixmedins_code: str | None,
    registered_by: str,
    now: dt.datetime,
) -> FilingRow:
    """Register a filing (as 2501) in the caller's transaction: only for a person insured in
    another province (:class:`FilingNotCrossProvince`, checked first, whichever door asks)."""
    if not is_admdvs(insuplc_admdvs):
        raise FilingNotCrossProvince("insuplc_admdvs is not a 6-digit admdvs code")
    if route_for(SHANGHAI_ADMDVS, insuplc_admdvs) is not Route.CROSS_PROVINCE:
        raise FilingNotCrossProvince("a filing is for a person insured in another province")
    if valid_to is not None and valid_to < valid_from:
        raise FilingInvalid("valid_to is before valid_from")
    if filing_type is FilingType.REFERRAL:
        if valid_to is None:
            raise FilingInvalid("a referral needs valid_to (its own validity)")
        if (valid_to - valid_from).days > MAX_REFERRAL_DAYS:
            raise FilingInvalid(f"a referral is valid at most {MAX_REFERRAL_DAYS} days")
        if target_fixmedins_code is None:
            target_fixmedins_code = registered_by
    held = len(filings_of(session, psn_no))
    if held >= MAX_FILINGS_PER_PERSON:
        raise FilingInvalid(f"a person holds at most {MAX_FILINGS_PER_PERSON} filings")
    row = FilingRow(
        filing_id=f"F{now:%Y%m%d}{secrets.token_hex(8)}",
        psn_no=psn_no,
        insuplc_admdvs=insuplc_admdvs,
        filing_type=filing_type,
        valid_from=valid_from,
        valid_to=valid_to,
        target_fixmedins_code=target_fixmedins_code,
        registered_by=registered_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def cancel_filing(session: Session, *, filing_id: str, psn_no: str, registered_by: str) -> str:
    """Cancel a filing (撤销备案, 2502/2506): only the institution that registered it, for its
    person. It is deleted, so it covers no later visit; a settlement already made under it
    keeps its filing type (``remote_settlements.filing_type``). Returns the filing id."""
    row = session.scalar(
        select(FilingRow).where(FilingRow.filing_id == filing_id).with_for_update()
    )
    if row is None or row.registered_by != registered_by or (psn_no and row.psn_no != psn_no):
        raise FilingNotFound("this institution registered no such filing for this person")
    session.delete(row)
    session.flush()
    return filing_id
