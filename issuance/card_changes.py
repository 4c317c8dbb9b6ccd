"""What happens to a card after production: delivery (发放), activation (开通), loss (挂失),
replacement (补换) and expiry.

Activation voids the holder's other active cards (the legacy card, an older new card) in the
SAME transaction; replacement revokes the card and starts a new application, made at the desk
at once when ``instant`` (即到即补).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbkit import beijing_date
from issuance._moves import move_application, move_card
from issuance.access import Action, Agent, Role, require
from issuance.applications import new_application
from issuance.batches import record_card
from issuance.errors import ApplicationNotFound, BankChoiceInvalid
from issuance.lifecycle import Event, Stage, allowed_events
from issuance.production import IssuingCa, Personaliser, personalise
from issuance.programme import Channel, PhotoSource, Programme
from issuance.store import Application, Card, Cardholder, CardState, ProductionBatch
from issuance.views import ApplicationView, application_view, card_for

__all__ = [
    "DELIVERY_EVENTS",
    "CardChange",
    "activate",
    "expire_cards",
    "record_delivery",
    "replace",
    "report_loss",
]

DELIVERY_EVENTS: Final = {
    "delivered": Event.DELIVER,
    "failed": Event.DELIVERY_FAIL,
    "at_backup_centre": Event.SEND_TO_BACKUP,
    "picked_up": Event.PICK_UP,
}


def record_delivery(
    session: Session, agent: Agent, card_sn: str, outcome: str, now: dt.datetime
) -> ApplicationView:
    """The post's outcome (delivered / failed / at_backup_centre) or the pick-up at the backup
    community centre (picked_up)."""
    require(agent, Action.DELIVERY)
    event = DELIVERY_EVENTS[outcome]
    card = card_for(session, agent, card_sn)
    move_card(session, card, event, agent, now)
    return _view_of_card(session, card)


def _view_of_card(session: Session, card: Card) -> ApplicationView:
    app = session.execute(
        select(Application).where(Application.card_sn == card.card_sn)
    ).scalar_one_or_none()
    if app is None:
        raise ApplicationNotFound(f"card …{card.card_sn[-6:]} was not issued by an application")
    return application_view(session, app)


@dataclass(frozen=True, slots=True)
class CardChange:
    card_sn: str
    state: str
    allowed_events: tuple[str, ...]
    superseded: tuple[str, ...] = ()
    revoked: str | None = None
    new_application_id: int | None = None
    new_card_sn: str | None = None


def _change(card: Card, **extra: object) -> CardChange:
    stage = Stage(card.state.value)
    return CardChange(
        card_sn=card.card_sn,
        state=stage.value,
        allowed_events=tuple(e.value for e in allowed_events(stage)),
        **extra,  # type: ignore[arg-type]
    )


def activate(session: Session, agent: Agent, card_sn: str, now: dt.datetime) -> CardChange:
    """开通: the card becomes active and, in the SAME transaction, every other active card of
    the holder (the legacy card, an older new card) is superseded by it."""
    require(agent, Action.ACTIVATE)
    card = card_for(session, agent, card_sn)
    move_card(session, card, Event.ACTIVATE, agent, now)
    others = session.execute(
        select(Card)
        .where(
            Card.holder_id == card.holder_id,
            Card.card_sn != card.card_sn,
            Card.state == CardState.ACTIVE,
        )
        .with_for_update()
    ).scalars()
    superseded: list[str] = []
    for other in others:
        move_card(session, other, Event.SUPERSEDE, agent, now, note=f"by …{card.card_sn[-6:]}")
        other.superseded_by = card.card_sn
        superseded.append(other.card_sn)
    return _change(card, superseded=tuple(superseded))


def report_loss(session: Session, agent: Agent, card_sn: str, now: dt.datetime) -> CardChange:
    """挂失: blocked at once; card authentication reads the registry on every attempt."""
    require(agent, Action.REPORT_LOSS)
    card = card_for(session, agent, card_sn)
    move_card(session, card, Event.REPORT_LOSS, agent, now)
    return _change(card)


def replace(
    session: Session,
    agent: Agent,
    card_sn: str,
    now: dt.datetime,
    *,
    instant: bool,
    backup_centre: str | None = None,
    chosen_bank: str | None = None,
    programme: Programme | None = None,
    ca: IssuingCa | None = None,
    personaliser: Personaliser | None = None,
) -> CardChange:
    """补换: revoke the card and start a new one for the holder. ``instant`` (即到即补): the new
    card is made at the desk now (new key pair and certificate) and handed over; otherwise it
    joins the next production batch."""
    require(agent, Action.REPLACE)
    old = card_for(session, agent, card_sn)
    move_card(session, old, Event.REPLACE, agent, now)
    previous = session.execute(
        select(Application).where(Application.card_sn == old.card_sn)
    ).scalar_one_or_none()
    bank = previous.bank_code if previous is not None else chosen_bank
    if bank is None or (programme is not None and bank not in programme.banks):
        raise BankChoiceInvalid("the old card has no bank on record: choose one of the 11")
    backup = backup_centre or (previous.backup_centre if previous is not None else None)
    holder = session.get(Cardholder, old.holder_id)
    assert holder is not None
    channel = Channel.BANK_BRANCH if agent.role is Role.BANK else Channel.COMMUNITY_CENTRE
    app = new_application(
        session,
        agent,
        holder=holder,
        cohort="first_card",
        channel=channel,
        photo_source=PhotoSource.ON_SITE,
        bank_code=bank,
        backup_centre=backup or agent.institution_code,
        now=now,
        replaces_card_sn=old.card_sn,
        instant=instant,
    )
    new_sn = None
    if instant:
        assert ca is not None
        assert personaliser is not None
        batch = _instant_batch(session, app, now)
        move_application(session, app, Event.ADD_TO_BATCH, agent, now)
        app.batch_id = batch.id
        # One card made at the desk: its ~2 ms of key and certificate stay in this unit (the
        # application id, which the card_sn derives from, is only known here).
        made = personalise(app.id, ca, now)
        card = record_card(session, app, agent, made, personaliser=personaliser, now=now)
        move_card(session, card, Event.HAND_OVER, agent, now, note="instant replacement")
        new_sn = card.card_sn
    return _change(old, revoked=old.card_sn, new_application_id=app.id, new_card_sn=new_sn)


def _instant_batch(session: Session, app: Application, now: dt.datetime) -> ProductionBatch:
    collected_on = beijing_date(now)
    seq = session.execute(
        select(func.coalesce(func.max(ProductionBatch.seq), 0)).where(
            ProductionBatch.channel == app.channel, ProductionBatch.collected_on == collected_on
        )
    ).scalar_one()
    batch = ProductionBatch(
        channel=app.channel,
        collected_on=collected_on,
        seq=seq + 1,
        size=1,
        created_at=now,
        produced_at=now,
    )
    session.add(batch)
    session.flush()
    return batch


def expire_cards(session: Session, agent: Agent, today: dt.date, now: dt.datetime) -> int:
    """Move cards past their expiry date to ``expired`` (housekeeping); return how many."""
    require(agent, Action.PRODUCE)
    held = [s.card_state() for s in (Stage.DELIVERED, Stage.COLLECTED, Stage.ACTIVE)]
    cards = session.execute(
        select(Card).where(Card.expires_on < today, Card.state.in_(held)).with_for_update()
    ).scalars()
    count = 0
    for card in cards:
        move_card(session, card, Event.EXPIRE, agent, now)
        count += 1
    return count
