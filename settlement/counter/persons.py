"""Person information with the holder's identity (1101 ``baseinfo``): a read unit."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from settlement.counter.outcomes import PersonInformation
from settlement.counter.ports import AtCounter
from settlement.counter.settle import eligibility
from settlement.errors import PersonNotFound
from settlement.store import InsuredPersonRow

__all__ = ["person_information"]


def person_information(session: Session, *, at: AtCounter, now: dt.datetime) -> PersonInformation:
    """:func:`settlement.counter.settle.eligibility` (the same checks, in the same order) and
    who the holder is: name, citizen id, birth date."""
    person = eligibility(session, at=at, now=now)
    found = session.execute(
        select(
            InsuredPersonRow.name, InsuredPersonRow.citizen_id, InsuredPersonRow.birth_date
        ).where(InsuredPersonRow.holder_id == at.holder_id)
    ).one_or_none()
    if found is None:  # eligibility read the same row a moment ago, in this transaction
        raise PersonNotFound("no insured person is linked to this cardholder")
    name, citizen_id, birth_date = found
    return PersonInformation(person, name, citizen_id, birth_date)
