"""The cardholder as settlement sees them: one indexed read, judged in one place.

Settle, pre-settle, discharge and eligibility all start from the card session's holder id (the
registry's cardholder row id, issuance's business). :data:`_HOLDER_READ` reads the insured
person linked to it, their employee insurance (310), their personal account and the year's
totals in ONE statement on the driver's cursor (person by the unique holder_id index, the rest
by primary key), instead of four. The judges then apply the same checks, in the same order,
as reading them one by one would:

* :func:`local_holdings`: person, insurance valid on the day, insured locally, account; what
  the engine spends;
* :func:`insured_place`: person and insurance valid on the day; where they are insured (the
  route of a settlement through the hub).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Table
from sqlalchemy.orm import Session

from dbkit import DriverSQL
from settlement.claim import AccountBalances, InsuredPerson, YearToDate
from settlement.crossprov.routing import SHANGHAI_ADMDVS, InsuredPlace, Route, route_for
from settlement.errors import InvalidPerson, PersonNotFound
from settlement.recording import Holdings, load_holdings
from settlement.store import Insurance, InsuredPersonRow, PersonalAccount, YearToDateTotals

__all__ = [
    "INSUTYPE_EMPLOYEE",
    "HolderRow",
    "holdings_to_spend",
    "insured_on",
    "insured_place",
    "insured_route",
    "local_holdings",
    "read_holder",
]

INSUTYPE_EMPLOYEE: Final = "310"  # 职工基本医疗保险, the only 险种 the engine settles

_PERSONS: Final[Table] = InsuredPersonRow.__table__  # type: ignore[assignment]
_INSURANCES: Final[Table] = Insurance.__table__  # type: ignore[assignment]
_ACCOUNTS: Final[Table] = PersonalAccount.__table__  # type: ignore[assignment]
_TOTALS: Final[Table] = YearToDateTotals.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class HolderRow:
    """One row of :data:`_HOLDER_READ`. A NULL ``valid_from``: no employee insurance; a NULL
    ``current_year_fen``: no account; a NULL ``self_pay_band_consumed_fen``: nothing settled
    this year yet."""

    id: int
    psn_no: str
    retired: bool
    birth_date: dt.date
    valid_from: dt.date | None
    valid_to: dt.date | None
    insuplc_admdvs: str | None
    psn_type: str | None
    current_year_fen: int | None
    past_years_fen: int | None
    self_pay_band_consumed_fen: int | None
    deductible_consumed_fen: int | None
    pooling_fund_paid_fen: int | None
    account_year: int | None  # NULL with the account


_HOLDER_READ: Final = DriverSQL(
    "SELECT p.id, p.psn_no, p.retired, p.birth_date, n.valid_from, n.valid_to, "
    "n.insuplc_admdvs, n.psn_type, a.current_year_fen, a.past_years_fen, "
    "y.self_pay_band_consumed_fen, y.deductible_consumed_fen, y.pooling_fund_paid_fen, "
    "a.account_year "
    "FROM insured_persons AS p "
    "LEFT JOIN insurances AS n ON n.person_id = p.id AND n.insutype = '310' "
    "LEFT JOIN personal_accounts AS a ON a.person_id = p.id "
    "LEFT JOIN year_to_date_totals AS y ON y.person_id = p.id AND y.year = ? "
    "WHERE p.holder_id = ?",
    results=(
        _PERSONS.c.id,
        _PERSONS.c.psn_no,
        _PERSONS.c.retired,
        _PERSONS.c.birth_date,
        _INSURANCES.c.valid_from,
        _INSURANCES.c.valid_to,
        _INSURANCES.c.insuplc_admdvs,
        _INSURANCES.c.psn_type,
        _ACCOUNTS.c.current_year_fen,
        _ACCOUNTS.c.past_years_fen,
        _TOTALS.c.self_pay_band_consumed_fen,
        _TOTALS.c.deductible_consumed_fen,
        _TOTALS.c.pooling_fund_paid_fen,
        _ACCOUNTS.c.account_year,
    ),
)
assert INSUTYPE_EMPLOYEE == "310"  # written into the SQL above


def read_holder(session: Session, holder_id: int, year: int) -> HolderRow | None:
    """The holder's row with the totals of ``year``; None if no insured person is linked."""
    row = _HOLDER_READ.fetchone(session.connection(), (year, holder_id))
    return None if row is None else HolderRow(*row)


def insured_on(row: HolderRow | None, day: dt.date) -> HolderRow:
    """The holder's row, if an insured person is linked and their employee insurance is valid
    on ``day``; else PERSON_NOT_FOUND or INVALID_PERSON."""
    if row is None:
        raise PersonNotFound("no insured person is linked to this cardholder")
    if row.valid_from is None or row.valid_from > day:
        raise InvalidPerson("no employee insurance (310) on this date")
    if row.valid_to is not None and row.valid_to < day:
        raise InvalidPerson("the employee insurance (310) ended before this date")
    return row


def _route_of(insuplc_admdvs: str) -> Route:
    return route_for(SHANGHAI_ADMDVS, insuplc_admdvs)


def insured_place(row: HolderRow | None, day: dt.date) -> InsuredPlace:
    """Who settles this person's visit on ``day``, if they are insured then."""
    insured = insured_on(row, day)
    assert insured.insuplc_admdvs is not None  # the column is NOT NULL; valid_from was set
    return InsuredPlace(
        psn_no=insured.psn_no,
        insuplc_admdvs=insured.insuplc_admdvs,
        route=_route_of(insured.insuplc_admdvs),
    )


def insured_route(session: Session, holder_id: int) -> Route | None:
    """The route of the holder's settlements, as card authentication records it in the card
    session (its own transaction, one more indexed read); None when the holder has no
    employee insurance (the local use cases then give the precise refusal)."""
    row = read_holder(session, holder_id, dt.MINYEAR)  # no totals row matches year 1
    if row is None or row.insuplc_admdvs is None:
        return None
    return _route_of(row.insuplc_admdvs)


def local_holdings(row: HolderRow | None, day: dt.date) -> Holdings:
    """What a local settlement on ``day`` may spend. The route was decided before the
    transaction (the card session carries it); if the person's insured place moved away from
    Shanghai since, refuse: the clerk reads the card again and the visit goes to the hub."""
    insured = insured_on(row, day)
    assert insured.insuplc_admdvs is not None
    if _route_of(insured.insuplc_admdvs) is not Route.LOCAL:
        raise InvalidPerson(
            "the cardholder's insured place is no longer Shanghai; read the card again"
        )
    if (
        insured.current_year_fen is None
        or insured.past_years_fen is None
        or insured.account_year is None
    ):
        raise PersonNotFound("the insured person has no personal account")
    totals_exist = insured.self_pay_band_consumed_fen is not None
    return Holdings(
        person_id=insured.id,
        psn_no=insured.psn_no,
        person=InsuredPerson(retired=insured.retired, birth_date=insured.birth_date),
        balances=AccountBalances(insured.current_year_fen, insured.past_years_fen),
        year_to_date=YearToDate(
            self_pay_band_consumed_fen=insured.self_pay_band_consumed_fen or 0,
            deductible_consumed_fen=insured.deductible_consumed_fen or 0,
            pooling_fund_paid_fen=insured.pooling_fund_paid_fen or 0,
        )
        if totals_exist
        else YearToDate(),
        totals_exist=totals_exist,
        account_year=insured.account_year,
    )


def holdings_to_spend(session: Session, holdings: Holdings, year: int) -> Holdings:
    """What the settlement may spend. SQLite runs one write transaction at a time, so what
    was read inside it stands; PostgreSQL re-reads account and totals under row locks
    (settlement.recording.load_holdings), so racing settlements of one person queue on the
    account row instead of spending the same balance twice."""
    if session.get_bind().dialect.name == "postgresql":
        return load_holdings(session, psn_no=holdings.psn_no, year=year)
    return holdings
