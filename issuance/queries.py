"""Reading the registry: who an institution is in issuance, application status, a card's or a
citizen's history (hotline 962222), and the daily statistics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from dbkit import day_bounds_utc
from issuance._moves import as_utc
from issuance.access import Action, Agent, Role, can_see, require
from issuance.errors import ApplicationNotFound
from issuance.lifecycle import Event
from issuance.programme import ONLINE_CHANNELS, Channel
from issuance.store import Application, CardEvent, Cardholder, IssuanceAgent
from issuance.views import (
    ApplicationView,
    application_for,
    application_view,
    card_for,
    holder_visible,
    visibility,
)
from sscard.masking import mask_citizen_id

__all__ = [
    "DailyStats",
    "HistoryEntry",
    "daily_stats",
    "find_agent",
    "history",
    "status",
]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: dt.datetime
    event: str
    from_stage: str | None
    to_stage: str
    card_sn: str | None
    application_id: int | None
    actor: str
    channel: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class DailyStats:
    day: dt.date
    applications: list[tuple[str, str, int]]  # (channel, cohort, count) applied that day
    applications_counter: int  # at bank branches, employers, community centres
    applications_online: int
    cards: dict[str, int]  # produced, mailed, delivered, activated, replaced, lost: that day
    cards_cumulative: dict[str, int] = field(default_factory=dict)  # up to the end of that day


def find_agent(session: Session, institution_code: str, terminal_id: str | None) -> Agent | None:
    row = session.get(IssuanceAgent, institution_code)
    if row is None:
        return None
    return Agent(
        institution_code=row.institution_code,
        role=Role(row.role),
        bank_code=row.bank_code,
        employer_code=row.employer_code,
        area_code=row.area_code,
        terminal_id=terminal_id,
    )


def status(
    session: Session,
    agent: Agent,
    *,
    application_id: int | None = None,
    citizen_id: str | None = None,
) -> list[ApplicationView]:
    """Applications by id, or all of a citizen's, that this institution may see."""
    require(agent, Action.STATUS)
    if application_id is not None:
        return [application_view(session, application_for(session, agent, application_id))]
    assert citizen_id is not None
    holder_id = session.execute(
        select(Cardholder.id).where(Cardholder.citizen_id == citizen_id.upper())
    ).scalar_one_or_none()
    apps: Sequence[Application] = (
        []
        if holder_id is None
        else session.execute(
            select(Application).where(Application.holder_id == holder_id).order_by(Application.id)
        )
        .scalars()
        .all()
    )
    views = [application_view(session, a) for a in apps if can_see(agent, visibility(session, a))]
    if not views:
        raise ApplicationNotFound(
            f"no application of {mask_citizen_id(citizen_id)} visible to this institution"
        )
    return views


def history(
    session: Session,
    agent: Agent,
    *,
    card_sn: str | None = None,
    citizen_id: str | None = None,
) -> list[HistoryEntry]:
    """Every transition of a card, or of all of a citizen's cards and applications (hotline)."""
    require(agent, Action.HISTORY)
    if card_sn is not None:
        card = card_for(session, agent, card_sn)
        app_ids = select(Application.id).where(Application.card_sn == card.card_sn)
        where = or_(CardEvent.card_sn == card.card_sn, CardEvent.application_id.in_(app_ids))
    else:
        assert citizen_id is not None
        holder_id = session.execute(
            select(Cardholder.id).where(Cardholder.citizen_id == citizen_id.upper())
        ).scalar_one_or_none()
        if holder_id is None or not holder_visible(session, agent, holder_id):
            raise ApplicationNotFound(
                f"no cardholder {mask_citizen_id(citizen_id)} visible to this institution"
            )
        where = CardEvent.holder_id == holder_id
    events = session.execute(select(CardEvent).where(where).order_by(CardEvent.id)).scalars()
    return [
        HistoryEntry(
            at=as_utc(e.at),
            event=e.event,
            from_stage=e.from_stage,
            to_stage=e.to_stage,
            card_sn=e.card_sn,
            application_id=e.application_id,
            actor=e.actor,
            channel=e.channel,
            note=e.note,
        )
        for e in events
    ]


_STAT_EVENTS: Final = {
    "produced": Event.PRODUCE,
    "mailed": Event.MAIL,
    "delivered": Event.DELIVER,
    "activated": Event.ACTIVATE,
    "replaced": Event.REPLACE,
    "lost": Event.REPORT_LOSS,
}


def daily_stats(session: Session, agent: Agent, day: dt.date) -> DailyStats:
    """The seed's progress figures for one Shanghai calendar day."""
    require(agent, Action.STATS)
    start, end = day_bounds_utc(day)
    by = session.execute(
        select(Application.channel, Application.cohort, func.count())
        .where(Application.applied_at >= start, Application.applied_at < end)
        .group_by(Application.channel, Application.cohort)
        .order_by(Application.channel, Application.cohort)
    ).all()
    applications = [(str(c), str(k), int(n)) for c, k, n in by]
    online = sum(n for c, _, n in applications if Channel(c) in ONLINE_CHANNELS)

    def counts(*where: object) -> dict[str, int]:
        rows = dict(
            session.execute(
                select(CardEvent.event, func.count())
                .where(
                    CardEvent.event.in_([e.value for e in _STAT_EVENTS.values()]),
                    *where,  # type: ignore[arg-type]
                )
                .group_by(CardEvent.event)
            ).all()
        )
        return {name: int(rows.get(e.value, 0)) for name, e in _STAT_EVENTS.items()}

    return DailyStats(
        day=day,
        applications=applications,
        applications_counter=sum(n for _, _, n in applications) - online,
        applications_online=online,
        cards=counts(and_(CardEvent.at >= start, CardEvent.at < end)),
        cards_cumulative=counts(CardEvent.at < end),
    )
