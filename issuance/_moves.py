"""The one way an application or a card changes stage, and how issuance reads an instant back.

Every change of stage goes through :func:`issuance.lifecycle.transition` and appends one
``card_events`` row (time, actor, channel): :func:`move_application` before a card exists,
:func:`move_card` after (it keeps the card's application in step). The use-case modules
(applications, uploads, batches, card_changes) move a stage through these and nothing else.
The city's day is dbkit's Beijing day (``dbkit.beijing_date``, ``dbkit.day_bounds_utc``), as
everywhere. Internal to :mod:`issuance`.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Final

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dbkit import as_utc as dbkit_as_utc
from issuance.access import Agent
from issuance.lifecycle import Event, Stage, transition
from issuance.store import Application, Card, CardEvent

__all__ = [
    "INSERT_EVENT",
    "as_utc",
    "move_application",
    "move_card",
    "record_event",
]


def as_utc(at: dt.datetime) -> dt.datetime:
    """An instant read back from the database, in UTC: SQLite hands it back naive, and an
    aware one is converted, so that views always show UTC whatever the session's zone."""
    return dbkit_as_utc(at).astimezone(dt.UTC)


INSERT_EVENT: Final = insert(CardEvent.__table__)  # type: ignore[arg-type]


def record_event(
    session: Session,
    *,
    holder_id: int,
    application_id: int | None,
    card_sn: str | None,
    event: str,
    from_stage: str | None,
    to_stage: str,
    agent: Agent,
    now: dt.datetime,
    channel: str | None = None,
    note: str | None = None,
) -> None:
    # Core, not the ORM: history rows are append-only and never read back in the same unit, and
    # this is the hottest write of issuance (several rows per application).
    session.execute(
        INSERT_EVENT,
        {
            "holder_id": holder_id,
            "application_id": application_id,
            "card_sn": card_sn,
            "event": event,
            "from_stage": from_stage,
            "to_stage": to_stage,
            "at": now,
            "actor": agent.actor,
            "channel": channel,
            "note": note,
        },
    )


def move_application(
    session: Session, app: Application, event: Event, agent: Agent, now: dt.datetime
) -> Stage:
    """``event`` on an application that has no card yet; its history row appended."""
    current = Stage(app.stage)
    new = transition(current, event)
    app.stage = new.value
    app.updated_at = now
    record_event(
        session,
        holder_id=app.holder_id,
        application_id=app.id,
        card_sn=app.card_sn,
        event=event.value,
        from_stage=current.value,
        to_stage=new.value,
        agent=agent,
        now=now,
        channel=app.channel,
    )
    return new


class _Unknown(enum.Enum):
    TOKEN = 0


_UNKNOWN: Final = _Unknown.TOKEN


def move_card(
    session: Session,
    card: Card,
    event: Event,
    agent: Agent,
    now: dt.datetime,
    *,
    note: str | None = None,
    app: Application | _Unknown | None = _UNKNOWN,
) -> Stage:
    """``event`` on a card, its application kept in step; its history row appended. ``app``:
    the card's application when the caller holds it (saves a lookup per card)."""
    current = Stage(card.state.value)
    new = transition(current, event)
    card.state = new.card_state()
    card.state_changed_at = now
    if isinstance(app, _Unknown):
        app = session.execute(
            select(Application).where(Application.card_sn == card.card_sn)
        ).scalar_one_or_none()
    if app is not None:
        app.stage = new.value
        app.updated_at = now
    record_event(
        session,
        holder_id=card.holder_id,
        application_id=None if app is None else app.id,
        card_sn=card.card_sn,
        event=event.value,
        from_stage=current.value,
        to_stage=new.value,
        agent=agent,
        now=now,
        channel=None if app is None else app.channel,
        note=note,
    )
    return new
