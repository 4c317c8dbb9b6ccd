"""Taking an application (申领): the holder, the programme's checks, the new application.

Every function takes a SQLAlchemy ``Session`` already inside a transaction (the caller's unit of
work: gateway.db's ``Database.write``, or ``with Session(...) as s, s.begin()``) and never
commits: what one call changes commits or rolls back as a whole.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dbkit import beijing_date
from issuance._moves import move_application, record_event
from issuance.access import Action, Agent, Role, require
from issuance.errors import ApplicationOpen, ChannelNotAllowed, HolderMismatch
from issuance.lifecycle import Event, Stage
from issuance.programme import ONLINE_CHANNELS, Channel, PhotoSource, Programme, choose_bank
from issuance.store import Application, Cardholder
from issuance.views import ApplicationView, application_view
from sscard.layout import citizen_id_check_digit
from sscard.masking import mask_citizen_id

__all__ = [
    "ROLE_CHANNELS",
    "Applicant",
    "ApplicationRequest",
    "apply",
    "new_application",
    "valid_citizen_id",
]

# The channels each role takes applications through (the centre: any).
ROLE_CHANNELS: Final = {
    Role.BANK: frozenset({Channel.BANK_BRANCH}),
    Role.EMPLOYER: frozenset({Channel.EMPLOYER_BATCH}),
    Role.COMMUNITY: frozenset({Channel.COMMUNITY_CENTRE}),
    Role.ONLINE: ONLINE_CHANNELS,
    Role.HOTLINE: frozenset[Channel](),
    Role.CENTRE: frozenset(Channel),
}


def valid_citizen_id(citizen_id: str) -> bool:
    """18 characters: 17 digits and the GB 11643 check digit."""
    return (
        len(citizen_id) == 18
        and citizen_id[:17].isascii()
        and citizen_id[:17].isdigit()
        and citizen_id_check_digit(citizen_id[:17]) == citizen_id[17].upper()
    )


@dataclass(frozen=True, slots=True)
class Applicant:
    citizen_id: str
    name: str
    birth_date: dt.date
    gender: str
    area_code: str
    hukou_shanghai: bool
    insured_in_shanghai: bool

    def __repr__(self) -> str:
        return f"Applicant({mask_citizen_id(self.citizen_id)})"


@dataclass(frozen=True, slots=True)
class ApplicationRequest:
    applicant: Applicant
    cohort: str
    channel: Channel
    photo_source: PhotoSource
    backup_centre: str
    pension_bank: str | None = None
    salary_banks: tuple[str, ...] = ()
    chosen_bank: str | None = None


def _find_holder(session: Session, citizen_id: str) -> Cardholder | None:
    return session.execute(
        select(Cardholder).where(Cardholder.citizen_id == citizen_id)
    ).scalar_one_or_none()


def _holder(session: Session, applicant: Applicant) -> Cardholder:
    holder = _find_holder(session, applicant.citizen_id)
    if holder is None:
        holder = Cardholder(
            citizen_id=applicant.citizen_id,
            name=applicant.name,
            birth_date=applicant.birth_date,
            gender=applicant.gender,
            area_code=applicant.area_code,
        )
        # Two first applications for one person at once: both found no holder, and the
        # unique citizen_id lets one insert win. The loser's insert runs in a savepoint (on
        # PostgreSQL a failed statement would otherwise abort the whole transaction), and it
        # goes on with the winner's holder: its application is then refused APPLICATION_OPEN
        # (409) by the open-application check, never a 500.
        try:
            with session.begin_nested():
                session.add(holder)
        except IntegrityError:
            holder = _find_holder(session, applicant.citizen_id)
            if holder is None:  # the winner rolled back since: nothing to compare with
                raise ApplicationOpen(
                    f"another application for {mask_citizen_id(applicant.citizen_id)} is being "
                    "taken at this moment; try again"
                ) from None
        else:
            return holder
    if holder.name != applicant.name or holder.birth_date != applicant.birth_date:
        raise HolderMismatch(
            f"name or birth date differ from the registered holder "
            f"{mask_citizen_id(applicant.citizen_id)}; check the ID card"
        )
    return holder


def new_application(
    session: Session,
    agent: Agent,
    *,
    holder: Cardholder,
    cohort: str,
    channel: Channel,
    photo_source: PhotoSource,
    bank_code: str,
    backup_centre: str,
    now: dt.datetime,
    replaces_card_sn: str | None = None,
    instant: bool = False,
) -> Application:
    if session.execute(
        select(Application.id).where(Application.open_holder_id == holder.id)
    ).first():
        raise ApplicationOpen(
            f"holder {mask_citizen_id(holder.citizen_id)} already has an application in progress"
        )
    app = Application(
        holder_id=holder.id,
        open_holder_id=holder.id,
        cohort=cohort,
        channel=channel.value,
        photo_source=photo_source.value,
        bank_code=bank_code,
        employer_code=agent.employer_code if channel is Channel.EMPLOYER_BATCH else None,
        agent_code=agent.institution_code,
        backup_centre=backup_centre,
        stage=Stage.APPLIED.value,
        replaces_card_sn=replaces_card_sn,
        instant=instant,
        applied_at=now,
        updated_at=now,
    )
    session.add(app)
    try:
        session.flush()
    except IntegrityError:  # a concurrent application of the same holder won the unique key
        raise ApplicationOpen(
            f"holder {mask_citizen_id(holder.citizen_id)} already has an application in progress"
        ) from None
    record_event(
        session,
        holder_id=holder.id,
        application_id=app.id,
        card_sn=None,
        event="apply",
        from_stage=None,
        to_stage=Stage.APPLIED.value,
        agent=agent,
        now=now,
        channel=channel.value,
        note=replaces_card_sn and f"replaces …{replaces_card_sn[-6:]}",
    )
    # Information (with the photo) is collected when the application is taken: at the counter,
    # from the shared ID-card photo, or from the electronic student card.
    move_application(session, app, Event.COLLECT_INFO, agent, now)
    app.collected_on = beijing_date(now)
    return app


def apply(
    session: Session,
    programme: Programme,
    agent: Agent,
    request: ApplicationRequest,
    now: dt.datetime,
) -> ApplicationView:
    """Take one application: eligibility, cohort window, channel, photo source, bank rule."""
    require(
        agent, Action.BATCH_UPLOAD if request.channel is Channel.EMPLOYER_BATCH else Action.APPLY
    )
    if request.channel not in ROLE_CHANNELS[agent.role]:
        raise ChannelNotAllowed(f"a {agent.role} does not take applications via {request.channel}")
    cohort = programme.check_application(
        cohort=request.cohort,
        channel=request.channel,
        photo_source=request.photo_source,
        hukou_shanghai=request.applicant.hukou_shanghai,
        insured_in_shanghai=request.applicant.insured_in_shanghai,
        on=beijing_date(now),
    )
    bank = choose_bank(
        programme,
        cohort.bank_rule,
        pension_bank=request.pension_bank,
        salary_banks=request.salary_banks,
        chosen_bank=request.chosen_bank,
    )
    holder = _holder(session, request.applicant)
    app = new_application(
        session,
        agent,
        holder=holder,
        cohort=cohort.code,
        channel=request.channel,
        photo_source=request.photo_source,
        bank_code=bank,
        backup_centre=request.backup_centre,
        now=now,
    )
    return application_view(session, app)
