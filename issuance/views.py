"""What an institution may see of the card registry, and how an application is shown to it.

A record outside the caller's scope is answered exactly like a record that does not exist
(404; see :mod:`issuance.access`). Views and messages never carry personal data: citizen ids
and names leave issuance masked by the project's one rule (:mod:`sscard.masking`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from issuance._moves import as_utc
from issuance.access import Agent, Role, Visible, can_see
from issuance.errors import ApplicationNotFound, IssuedCardNotFound
from issuance.lifecycle import Stage, allowed_events
from issuance.store import Application, Card, Cardholder
from sscard.masking import mask_citizen_id, mask_name

__all__ = [
    "ApplicationView",
    "application_for",
    "application_view",
    "card_for",
    "holder_visible",
    "visibility",
]


@dataclass(frozen=True, slots=True)
class ApplicationView:
    """An application as an institution sees it: the holder's citizen id and name masked."""

    application_id: int
    citizen_id_masked: str
    name_masked: str
    cohort: str
    channel: str
    bank_code: str
    stage: str
    allowed_events: tuple[str, ...]
    card_sn: str | None
    batch_id: int | None
    replaces_card_sn: str | None
    applied_at: dt.datetime


def visibility(session: Session, app: Application) -> Visible:
    """What decides who may see ``app`` (its bank, employer, agent, district, backup centre)."""
    area = session.execute(
        select(Cardholder.area_code).where(Cardholder.id == app.holder_id)
    ).scalar_one()
    return Visible(app.bank_code, app.employer_code, app.agent_code, area, app.backup_centre)


def holder_visible(session: Session, agent: Agent, holder_id: int) -> bool:
    """May ``agent`` see this holder: through one of the holder's applications, or the
    district the holder is registered in."""
    if agent.role in (Role.HOTLINE, Role.CENTRE):
        return True
    apps = session.execute(select(Application).where(Application.holder_id == holder_id)).scalars()
    if any(can_see(agent, visibility(session, app)) for app in apps):
        return True
    area = session.execute(
        select(Cardholder.area_code).where(Cardholder.id == holder_id)
    ).scalar_one_or_none()
    return can_see(agent, Visible("", None, "", area or "", ""))


def card_for(session: Session, agent: Agent, card_sn: str) -> Card:
    """The card, locked for the change to come; 404 when missing or not visible alike."""
    card = session.get(Card, card_sn.upper(), with_for_update=True)
    if card is None or not holder_visible(session, agent, card.holder_id):
        raise IssuedCardNotFound(f"no card {card_sn[-6:]} visible to this institution")
    return card


def application_for(session: Session, agent: Agent, application_id: int) -> Application:
    """The application, locked; 404 when missing or not visible alike."""
    app = session.get(Application, application_id, with_for_update=True)
    if app is None or not can_see(agent, visibility(session, app)):
        raise ApplicationNotFound(f"no application {application_id} visible to this institution")
    return app


def application_view(session: Session, app: Application) -> ApplicationView:
    """How ``app`` is shown: its holder masked, the events its stage allows next."""
    holder = session.get(Cardholder, app.holder_id)
    assert holder is not None
    stage = Stage(app.stage)
    return ApplicationView(
        application_id=app.id,
        citizen_id_masked=mask_citizen_id(holder.citizen_id),
        name_masked=mask_name(holder.name),
        cohort=app.cohort,
        channel=app.channel,
        bank_code=app.bank_code,
        stage=stage.value,
        allowed_events=tuple(e.value for e in allowed_events(stage)),
        card_sn=app.card_sn,
        batch_id=app.batch_id,
        replaces_card_sn=app.replaces_card_sn,
        applied_at=as_utc(app.applied_at),
    )
