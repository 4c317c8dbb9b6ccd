"""Production (制卡): collected applications grouped into batches, their cards made and posted.

A batch groups applications by (channel, collection date). Making its cards is three steps
that a caller may run apart, so that the CPU work of a card's key pair and certificate never
holds the database's one writer: :func:`cards_to_make` (a read), :func:`personalise_cards` (no
session; :mod:`issuance.production` is the pure part), :func:`record_made_cards` (the rows).
:func:`produce_batch` runs the three in one transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from dbkit import beijing_date
from issuance._moves import INSERT_EVENT, as_utc, move_application
from issuance.access import Action, Agent, require
from issuance.errors import BatchNotFound
from issuance.lifecycle import Event, Stage, transition
from issuance.production import IssuingCa, PersonalisedCard, Personaliser, personalise
from issuance.store import Application, Card, CardEvent, CardState, ProductionBatch

__all__ = [
    "MAX_BATCH_SIZE",
    "BatchReport",
    "batch_report",
    "cards_to_make",
    "create_batches",
    "fill_batches",
    "personalise_cards",
    "produce_batch",
    "record_card",
    "record_made_cards",
]

MAX_BATCH_SIZE: Final = 10_000


@dataclass(frozen=True, slots=True)
class BatchReport:
    batch_id: int
    channel: str
    collected_on: dt.date
    size: int
    by_stage: dict[str, int]
    by_cohort: dict[str, int]
    by_bank: dict[str, int]
    produced_at: dt.datetime | None


def create_batches(
    session: Session, agent: Agent, now: dt.datetime, max_size: int = MAX_BATCH_SIZE
) -> list[int]:
    """Group every collected application into batches by (channel, collection date), in this
    one transaction; return the batches filled. See :func:`fill_batches`."""
    touched, _ = fill_batches(session, agent, now, max_size=max_size)
    return touched


def _fillable_batch(
    session: Session, channel: str, collected_on: dt.date, max_size: int
) -> ProductionBatch | None:
    """The (channel, day)'s batch that still takes applications: not full, and none of its
    cards made yet (a batch is filled until its production starts)."""
    started = (
        select(Application.id)
        .where(
            Application.batch_id == ProductionBatch.id,
            Application.stage != Stage.IN_BATCH.value,
        )
        .exists()
    )
    return session.execute(
        select(ProductionBatch)
        .where(
            ProductionBatch.channel == channel,
            ProductionBatch.collected_on == collected_on,
            ProductionBatch.produced_at.is_(None),
            ProductionBatch.size < max_size,
            ~started,
        )
        .order_by(ProductionBatch.seq.desc())
        .limit(1)
        .with_for_update()
    ).scalar_one_or_none()


def fill_batches(
    session: Session,
    agent: Agent,
    now: dt.datetime,
    *,
    max_size: int = MAX_BATCH_SIZE,
    limit: int | None = None,
) -> tuple[list[int], int]:
    """Move collected applications into production batches by (channel, collection date), at
    most ``max_size`` a batch, filling the day's unstarted batch before opening another.
    ``limit``: move at most that many in this call (this transaction), so that grouping a
    large day does not hold the database's writer for seconds; call again until fewer than
    ``limit`` moved. Returns (the batches filled, how many applications moved)."""
    require(agent, Action.PRODUCE)
    assert limit is None or limit >= 1
    new_stage = transition(Stage.INFO_COLLECTED, Event.ADD_TO_BATCH)
    groups = session.execute(
        select(Application.channel, Application.collected_on)
        .where(Application.stage == Stage.INFO_COLLECTED.value, Application.instant.is_(False))
        .group_by(Application.channel, Application.collected_on)
        .order_by(Application.collected_on, Application.channel)
    ).all()
    touched: list[int] = []
    moved = 0
    for channel, collected_on in groups:
        assert collected_on is not None  # set with info_collected (new_application)
        while limit is None or moved < limit:
            batch = _fillable_batch(session, channel, collected_on, max_size)
            room = max_size - (0 if batch is None else batch.size)
            take = room if limit is None else min(room, limit - moved)
            rows = session.execute(
                select(Application.id, Application.holder_id)
                .where(
                    Application.stage == Stage.INFO_COLLECTED.value,
                    Application.instant.is_(False),
                    Application.channel == channel,
                    Application.collected_on == collected_on,
                )
                .order_by(Application.id)
                .limit(take)
            ).all()
            if not rows:
                break
            if batch is None:
                seq = session.execute(
                    select(func.coalesce(func.max(ProductionBatch.seq), 0)).where(
                        ProductionBatch.channel == channel,
                        ProductionBatch.collected_on == collected_on,
                    )
                ).scalar_one()
                batch = ProductionBatch(
                    channel=channel,
                    collected_on=collected_on,
                    seq=seq + 1,
                    size=0,
                    created_at=now,
                )
                session.add(batch)
                session.flush()
            batch.size += len(rows)
            if batch.id not in touched:
                touched.append(batch.id)
            moved += len(rows)
            ids = [r.id for r in rows]
            for chunk in range(0, len(ids), 500):
                session.execute(
                    update(Application)
                    .where(Application.id.in_(ids[chunk : chunk + 500]))
                    .values(stage=new_stage.value, batch_id=batch.id, updated_at=now)
                )
            session.execute(
                insert(CardEvent),
                [
                    {
                        "holder_id": r.holder_id,
                        "application_id": r.id,
                        "card_sn": None,
                        "event": Event.ADD_TO_BATCH.value,
                        "from_stage": Stage.INFO_COLLECTED.value,
                        "to_stage": new_stage.value,
                        "at": now,
                        "actor": agent.actor,
                        "channel": channel,
                        "note": f"batch {batch.id}",
                    }
                    for r in rows
                ],
            )
    return touched, moved


def record_card(
    session: Session,
    app: Application,
    agent: Agent,
    made: PersonalisedCard,
    *,
    personaliser: Personaliser,
    now: dt.datetime,
) -> Card:
    """The registry's side of a card personalised for ``app``: its row, the application's
    ``produce`` step, and the key handed to the personaliser (inside the unit, so a unit that
    rolls back leaves at worst a key for a card_sn the retry personalises again)."""
    card = Card(
        card_sn=made.card_sn,
        card_no=made.card_no,
        holder_id=app.holder_id,
        generation=3,
        state=CardState.PRODUCED,
        issued_on=beijing_date(now),
        expires_on=made.expires_on,
        cert_sm3=made.cert_sm3,
        superseded_by=None,
        state_changed_at=now,
    )
    session.add(card)
    session.flush()
    app.card_sn = card.card_sn
    app.open_holder_id = None
    move_application(session, app, Event.PRODUCE, agent, now)
    personaliser.write(made)
    return card


def cards_to_make(
    session: Session, agent: Agent, batch_id: int, *, limit: int | None = None
) -> list[int]:
    """The applications of a batch whose cards are still to be made (``in_batch``), oldest
    first, at most ``limit`` (None: all): a read, the first step of :func:`produce_batch`."""
    require(agent, Action.PRODUCE)
    assert limit is None or limit >= 1
    if session.get(ProductionBatch, batch_id) is None:
        raise BatchNotFound(f"no production batch {batch_id}")
    return list(
        session.execute(
            select(Application.id)
            .where(Application.batch_id == batch_id, Application.stage == Stage.IN_BATCH.value)
            .order_by(Application.id)
            .limit(limit)
        ).scalars()
    )


def personalise_cards(
    application_ids: Sequence[int], ca: IssuingCa, now: dt.datetime
) -> dict[int, PersonalisedCard]:
    """A new key pair and certificate for each application's card: CPU only (~2 ms a card),
    no session. Run it OUTSIDE the write transaction (a worker thread), then hand the result
    to :func:`record_made_cards`: the database's one writer is then held for the rows only."""
    return {app_id: personalise(app_id, ca, now) for app_id in application_ids}


def _record_batch_cards(
    session: Session,
    agent: Agent,
    batch_id: int,
    apps: Sequence[Row[int, int, str]],
    made: Mapping[int, PersonalisedCard],
    *,
    now: dt.datetime,
    mail: bool,
) -> None:
    """The rows of a production unit in a few statements instead of ~5 per card (the ORM path
    of record_card and move_card costs ~1 ms a card of writer time): the card rows, each
    application's stage and card, and the produce (and mail) history rows, with the SAME
    stages and events the state machine gives one card at a time."""
    produced = transition(Stage.IN_BATCH, Event.PRODUCE)
    final = transition(produced, Event.MAIL) if mail else produced
    issued_on = beijing_date(now)
    session.execute(
        insert(Card),
        [
            {
                "card_sn": made[app.id].card_sn,
                "card_no": made[app.id].card_no,
                "holder_id": app.holder_id,
                "generation": 3,
                "state": final.card_state(),
                "issued_on": issued_on,
                "expires_on": made[app.id].expires_on,
                "cert_sm3": made[app.id].cert_sm3,
                "superseded_by": None,
                "state_changed_at": now,
            }
            for app in apps
        ],
    )
    applications = Application.__table__
    assert isinstance(applications, Table)
    # Core, not ORM: one executemany by key (the ORM's bulk update would want ORM objects).
    session.execute(
        update(applications)
        .where(applications.c.id == bindparam("app_id"))
        .values(
            card_sn=bindparam("new_card_sn"),
            open_holder_id=None,
            stage=final.value,
            updated_at=now,
        ),
        [{"app_id": app.id, "new_card_sn": made[app.id].card_sn} for app in apps],
    )
    steps: list[tuple[Event, Stage, Stage, str | None]] = [
        (Event.PRODUCE, Stage.IN_BATCH, produced, None)
    ]
    if mail:
        steps.append((Event.MAIL, produced, final, f"batch {batch_id}"))
    session.execute(
        INSERT_EVENT,
        [
            {
                "holder_id": app.holder_id,
                "application_id": app.id,
                "card_sn": made[app.id].card_sn,
                "event": event.value,
                "from_stage": before.value,
                "to_stage": after.value,
                "at": now,
                "actor": agent.actor,
                "channel": app.channel,
                "note": note,
            }
            for app in apps
            for event, before, after, note in steps
        ],
    )


def record_made_cards(
    session: Session,
    agent: Agent,
    batch_id: int,
    made: Mapping[int, PersonalisedCard],
    *,
    personaliser: Personaliser,
    now: dt.datetime,
    mail: bool = True,
) -> BatchReport:
    """Record cards personalised by :func:`personalise_cards` (application id -> card), post
    them, and answer the batch report; ``produced_at`` is set once no card is left to make.

    Idempotent and safe to retry: only applications of this batch still ``in_batch`` are
    made (under row locks), so a card some other run made meanwhile is skipped, and its
    personalisation from this run is thrown away unused. A call that fails writes nothing;
    what is left ``in_batch`` is made by the next :func:`cards_to_make` round."""
    require(agent, Action.PRODUCE)
    batch = session.get(ProductionBatch, batch_id, with_for_update=True)
    if batch is None:
        raise BatchNotFound(f"no production batch {batch_id}")
    apps = (
        session.execute(
            select(Application.id, Application.holder_id, Application.channel)
            .where(
                Application.id.in_(list(made)),
                Application.batch_id == batch_id,
                Application.stage == Stage.IN_BATCH.value,
            )
            .order_by(Application.id)
            .with_for_update()
        ).all()
        if made
        else []
    )
    if apps:
        _record_batch_cards(session, agent, batch_id, apps, made, now=now, mail=mail)
        for app in apps:  # once the rows are in: a unit that fails before leaves no key out
            personaliser.write(made[app.id])
    report = batch_report(session, agent, batch_id)
    if batch.produced_at is None and report.by_stage.get(Stage.IN_BATCH.value, 0) == 0:
        batch.produced_at = now
        report = dataclasses.replace(report, produced_at=now)
    return report


def produce_batch(
    session: Session,
    agent: Agent,
    batch_id: int,
    *,
    ca: IssuingCa,
    personaliser: Personaliser,
    now: dt.datetime,
    mail: bool = True,
    limit: int | None = None,
) -> BatchReport:
    """Make the cards of a batch still to be made (new key pair and certificate each), then
    post them, all in the caller's ONE transaction: :func:`cards_to_make`,
    :func:`personalise_cards`, :func:`record_made_cards`. ``limit``: at most that many in this
    call; call again until the report has no ``in_batch`` left. Resumable: what a failed call
    left in ``in_batch`` is made by the next. ``produced_at`` is set once the last card is made.

    The personalisation is CPU work inside the transaction here; where one database writer is
    shared (the gateway), run the three steps apart instead, as gateway.issuance_api does."""
    ids = cards_to_make(session, agent, batch_id, limit=limit)
    made = personalise_cards(ids, ca, now)
    return record_made_cards(
        session, agent, batch_id, made, personaliser=personaliser, now=now, mail=mail
    )


def batch_report(session: Session, agent: Agent, batch_id: int) -> BatchReport:
    require(agent, Action.PRODUCE)
    batch = session.get(ProductionBatch, batch_id)
    if batch is None:
        raise BatchNotFound(f"no production batch {batch_id}")
    rows = session.execute(
        select(Application.stage, Application.cohort, Application.bank_code).where(
            Application.batch_id == batch_id
        )
    ).all()
    return BatchReport(
        batch_id=batch.id,
        channel=batch.channel,
        collected_on=batch.collected_on,
        size=batch.size,
        by_stage=dict(Counter(r.stage for r in rows)),
        by_cohort=dict(Counter(r.cohort for r in rows)),
        by_bank=dict(Counter(r.bank_code for r in rows)),
        produced_at=None if batch.produced_at is None else as_utc(batch.produced_at),
    )
