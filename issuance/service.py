"""Issuance services: applications, production batches, delivery, activation, loss, replacement,
expiry, card history and daily statistics.

Every function takes a SQLAlchemy ``Session`` already inside a transaction (the caller's unit of
work: gateway.db's ``Database.write``, or ``with Session(...) as s, s.begin()``) and never
commits: what one call changes commits or rolls back as a whole. That is how activation voids
the holder's legacy card in the same transaction, and how an employer upload applies each row
whole or not at all (one SAVEPOINT per row).

Every change of stage goes through :func:`issuance.lifecycle.transition` and appends one
``card_events`` row (time, actor, channel). Messages and errors never carry personal data:
citizen ids and names leave this module masked (:func:`mask_citizen_id`, :func:`mask_name`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import enum
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Row, Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from issuance.access import Action, Agent, Role, Visible, can_see, require
from issuance.errors import (
    ApplicationNotFound,
    ApplicationOpen,
    BankChoiceInvalid,
    BatchNotFound,
    ChannelNotAllowed,
    HolderMismatch,
    IllegalTransition,
    IssuanceError,
    IssuedCardNotFound,
    UploadInvalid,
)
from issuance.lifecycle import Event, Stage, allowed_events, transition
from issuance.production import IssuingCa, PersonalisedCard, Personaliser, personalise
from issuance.programme import ONLINE_CHANNELS, Channel, PhotoSource, Programme, choose_bank
from issuance.store import (
    Application,
    Card,
    CardEvent,
    Cardholder,
    CardState,
    IssuanceAgent,
    ProductionBatch,
)
from sscard.layout import citizen_id_check_digit

__all__ = [
    "MAX_UPLOAD_ROWS",
    "UPLOAD_COLUMNS",
    "Applicant",
    "ApplicationRequest",
    "ApplicationView",
    "BatchReport",
    "DailyStats",
    "HistoryEntry",
    "RowResult",
    "activate",
    "apply",
    "cards_to_make",
    "create_batches",
    "daily_stats",
    "expire_cards",
    "fill_batches",
    "find_agent",
    "history",
    "mask_citizen_id",
    "mask_name",
    "personalise_cards",
    "produce_batch",
    "record_delivery",
    "record_made_cards",
    "replace",
    "report_loss",
    "status",
    "upload_employees",
    "valid_citizen_id",
]

SHANGHAI: Final = dt.timezone(dt.timedelta(hours=8))
MAX_UPLOAD_ROWS: Final = 5_000
MAX_BATCH_SIZE: Final = 10_000
UPLOAD_COLUMNS: Final = (
    "citizen_id",
    "name",
    "birth_date",
    "gender",
    "area_code",
    "hukou_shanghai",
    "insured_in_shanghai",
    "salary_banks",
    "bank",
    "photo_source",
    "backup_centre",
)
# The channels each role takes applications through (the centre: any).
ROLE_CHANNELS: Final = {
    Role.BANK: frozenset({Channel.BANK_BRANCH}),
    Role.EMPLOYER: frozenset({Channel.EMPLOYER_BATCH}),
    Role.COMMUNITY: frozenset({Channel.COMMUNITY_CENTRE}),
    Role.ONLINE: ONLINE_CHANNELS,
    Role.HOTLINE: frozenset[Channel](),
    Role.CENTRE: frozenset(Channel),
}


def mask_citizen_id(citizen_id: str) -> str:
    return citizen_id[:4] + "*" * max(0, len(citizen_id) - 6) + citizen_id[-2:]


def valid_citizen_id(citizen_id: str) -> bool:
    """18 characters: 17 digits and the GB 11643 check digit."""
    return (
        len(citizen_id) == 18
        and citizen_id[:17].isdigit()
        and citizen_id_check_digit(citizen_id[:17]) == citizen_id[17].upper()
    )


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(1, len(name) - 1)


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A Shanghai calendar day as a UTC range [start, end)."""
    start = dt.datetime.combine(day, dt.time(), SHANGHAI).astimezone(dt.UTC)
    return start, start + dt.timedelta(days=1)


def _local_date(at: dt.datetime) -> dt.date:
    return at.astimezone(SHANGHAI).date()


def _utc(at: dt.datetime) -> dt.datetime:
    """Times are stored in UTC; SQLite hands them back naive."""
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


# --- inputs and views ----------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class ApplicationView:
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
class RowResult:
    row: int  # 1 = the first data row (line 2 of the file)
    accepted: bool
    application_id: int | None = None
    code: str | None = None
    reason: str | None = None


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


@dataclass(frozen=True, slots=True)
class DailyStats:
    day: dt.date
    applications: list[tuple[str, str, int]]  # (channel, cohort, count) applied that day
    applications_counter: int  # at bank branches, employers, community centres
    applications_online: int
    cards: dict[str, int]  # produced, mailed, delivered, activated, replaced, lost: that day
    cards_cumulative: dict[str, int] = field(default_factory=dict)  # up to the end of that day


# --- agents ------------------------------------------------------------------------------------


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


# --- the one way a stage changes -----------------------------------------------------------------


_INSERT_EVENT: Final = insert(CardEvent.__table__)  # type: ignore[arg-type]


def _record(
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
        _INSERT_EVENT,
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


def _move_application(
    session: Session, app: Application, event: Event, agent: Agent, now: dt.datetime
) -> Stage:
    current = Stage(app.stage)
    new = transition(current, event)
    app.stage = new.value
    app.updated_at = now
    _record(
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


def _move_card(
    session: Session,
    card: Card,
    event: Event,
    agent: Agent,
    now: dt.datetime,
    *,
    note: str | None = None,
    app: Application | _Unknown | None = _UNKNOWN,
) -> Stage:
    """``app``: the card's application when the caller holds it (saves a lookup per card)."""
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
    _record(
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


# --- visibility ----------------------------------------------------------------------------------


def _visible(session: Session, app: Application) -> Visible:
    area = session.execute(
        select(Cardholder.area_code).where(Cardholder.id == app.holder_id)
    ).scalar_one()
    return Visible(app.bank_code, app.employer_code, app.agent_code, area, app.backup_centre)


def _holder_visible(session: Session, agent: Agent, holder_id: int) -> bool:
    if agent.role in (Role.HOTLINE, Role.CENTRE):
        return True
    apps = session.execute(select(Application).where(Application.holder_id == holder_id)).scalars()
    if any(can_see(agent, _visible(session, app)) for app in apps):
        return True
    area = session.execute(
        select(Cardholder.area_code).where(Cardholder.id == holder_id)
    ).scalar_one_or_none()
    return can_see(agent, Visible("", None, "", area or "", ""))


def _card_for(session: Session, agent: Agent, card_sn: str) -> Card:
    card = session.get(Card, card_sn.upper(), with_for_update=True)
    if card is None or not _holder_visible(session, agent, card.holder_id):
        raise IssuedCardNotFound(f"no card {card_sn[-6:]} visible to this institution")
    return card


def _application_for(session: Session, agent: Agent, application_id: int) -> Application:
    app = session.get(Application, application_id, with_for_update=True)
    if app is None or not can_see(agent, _visible(session, app)):
        raise ApplicationNotFound(f"no application {application_id} visible to this institution")
    return app


def _view(session: Session, app: Application) -> ApplicationView:
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
        applied_at=_utc(app.applied_at),
    )


# --- applying ------------------------------------------------------------------------------------


def _holder(session: Session, applicant: Applicant) -> Cardholder:
    holder = session.execute(
        select(Cardholder).where(Cardholder.citizen_id == applicant.citizen_id)
    ).scalar_one_or_none()
    if holder is None:
        holder = Cardholder(
            citizen_id=applicant.citizen_id,
            name=applicant.name,
            birth_date=applicant.birth_date,
            gender=applicant.gender,
            area_code=applicant.area_code,
        )
        session.add(holder)
        session.flush()
        return holder
    if holder.name != applicant.name or holder.birth_date != applicant.birth_date:
        raise HolderMismatch(
            f"name or birth date differ from the registered holder "
            f"{mask_citizen_id(applicant.citizen_id)}; check the ID card"
        )
    return holder


def _new_application(
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
    _record(
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
    _move_application(session, app, Event.COLLECT_INFO, agent, now)
    app.collected_on = _local_date(now)
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
        on=_local_date(now),
    )
    bank = choose_bank(
        programme,
        cohort.bank_rule,
        pension_bank=request.pension_bank,
        salary_banks=request.salary_banks,
        chosen_bank=request.chosen_bank,
    )
    holder = _holder(session, request.applicant)
    app = _new_application(
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
    return _view(session, app)


# --- employer batch upload -----------------------------------------------------------------------


def _bool(value: str, column: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "y", "是"):
        return True
    if text in ("0", "false", "no", "n", "否", ""):
        return False
    raise ValueError(f"{column}: expected 1/0 or true/false")


def _upload_row(raw: dict[str, str], employer_bank: str | None) -> ApplicationRequest:
    def need(column: str) -> str:
        value = (raw.get(column) or "").strip()
        if not value:
            raise ValueError(f"{column}: required")
        return value

    citizen_id = need("citizen_id").upper()
    if not valid_citizen_id(citizen_id):
        raise ValueError("citizen_id: expected 17 digits and the check digit (0-9 or X)")
    try:
        birth = dt.date.fromisoformat(need("birth_date"))
    except ValueError:
        raise ValueError("birth_date: expected YYYY-MM-DD") from None
    gender = need("gender")
    if gender not in ("1", "2"):
        raise ValueError("gender: expected 1 (male) or 2 (female)")
    area = need("area_code")
    if len(area) != 6 or not area.isdigit():
        raise ValueError("area_code: expected 6 digits")
    name = need("name")
    if len(name) > 30:
        raise ValueError("name: at most 30 characters")
    try:
        photo = PhotoSource(need("photo_source"))
    except ValueError:
        raise ValueError(
            "photo_source: expected on_site, id_card_shared or e_student_card"
        ) from None
    salary = tuple(b.strip() for b in (raw.get("salary_banks") or "").split(";") if b.strip())
    chosen = (raw.get("bank") or "").strip() or employer_bank
    return ApplicationRequest(
        applicant=Applicant(
            citizen_id=citizen_id,
            name=name,
            birth_date=birth,
            gender=gender,
            area_code=area,
            hukou_shanghai=_bool(raw.get("hukou_shanghai") or "", "hukou_shanghai"),
            insured_in_shanghai=_bool(raw.get("insured_in_shanghai") or "", "insured_in_shanghai"),
        ),
        cohort="employee",
        channel=Channel.EMPLOYER_BATCH,
        photo_source=photo,
        backup_centre=need("backup_centre")[:32],
        salary_banks=salary,
        chosen_bank=chosen,
    )


def parse_upload(text: str, max_rows: int = MAX_UPLOAD_ROWS) -> list[dict[str, str]]:
    """The rows of an employer's CSV, or UploadInvalid if the file as a whole is unusable."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = tuple(h.strip() for h in (reader.fieldnames or ()))
    missing = [c for c in UPLOAD_COLUMNS if c not in header]
    unknown = [c for c in header if c not in UPLOAD_COLUMNS]
    if missing or unknown:
        raise UploadInvalid(
            f"CSV header: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}; "
            f"expected {','.join(UPLOAD_COLUMNS)}"
        )
    reader.fieldnames = list(header)
    rows: list[dict[str, str]] = []
    try:
        for raw in reader:
            if len(rows) == max_rows:
                raise UploadInvalid(f"more than {max_rows} rows; split the file")
            rows.append({k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)})
            if None in raw:
                rows[-1]["__extra__"] = "1"
    except csv.Error as exc:
        raise UploadInvalid(f"CSV unreadable at line {reader.line_num}: {exc}") from None
    if not rows:
        raise UploadInvalid("the file has a header but no rows")
    return rows


def upload_employees(
    session: Session,
    programme: Programme,
    agent: Agent,
    text: str,
    now: dt.datetime,
) -> list[RowResult]:
    """An employer's batch: one result per row; each row is applied whole or not at all."""
    require_uploader(agent)
    return upload_rows(session, programme, agent, parse_upload(text), now)


def require_uploader(agent: Agent) -> None:
    require(agent, Action.BATCH_UPLOAD)
    if agent.role is not Role.CENTRE and agent.employer_code is None:
        raise ChannelNotAllowed("only an employer uploads employee batches")


def upload_rows(
    session: Session,
    programme: Programme,
    agent: Agent,
    rows: Sequence[dict[str, str]],
    now: dt.datetime,
    *,
    first_row: int = 1,
) -> list[RowResult]:
    """Rows of a parsed upload (:func:`parse_upload`), numbered from ``first_row``: one result
    per row, each row applied whole or not at all (its own SAVEPOINT). A caller may split a
    file into several calls, each its own transaction, so that a large file does not hold the
    database's writer for its whole length; a row is never split."""
    require_uploader(agent)
    results: list[RowResult] = []
    for number, raw in enumerate(rows, start=first_row):
        try:
            if "__extra__" in raw:
                raise ValueError("row has more fields than the header")
            if any(raw.get(c) is None for c in UPLOAD_COLUMNS):
                raise ValueError("row has fewer fields than the header")
            request = _upload_row(raw, agent.bank_code)
            with session.begin_nested():
                view = apply(session, programme, agent, request, now)
        except IssuanceError as exc:
            results.append(RowResult(number, False, code=exc.code, reason=exc.message))
        except ValueError as exc:
            results.append(RowResult(number, False, code="ROW_INVALID", reason=str(exc)))
        else:
            results.append(RowResult(number, True, application_id=view.application_id))
    return results


# --- production ----------------------------------------------------------------------------------


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
        assert collected_on is not None  # set with info_collected (_new_application)
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


def _record_card(
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
        issued_on=_local_date(now),
        expires_on=made.expires_on,
        cert_sm3=made.cert_sm3,
        superseded_by=None,
        state_changed_at=now,
    )
    session.add(card)
    session.flush()
    app.card_sn = card.card_sn
    app.open_holder_id = None
    _move_application(session, app, Event.PRODUCE, agent, now)
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
    of _record_card and _move_card costs ~1 ms a card of writer time): the card rows, each
    application's stage and card, and the produce (and mail) history rows, with the SAME
    stages and events the state machine gives one card at a time."""
    produced = transition(Stage.IN_BATCH, Event.PRODUCE)
    final = transition(produced, Event.MAIL) if mail else produced
    issued_on = _local_date(now)
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
        _INSERT_EVENT,
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
        produced_at=None if batch.produced_at is None else _utc(batch.produced_at),
    )


# --- after production ----------------------------------------------------------------------------

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
    card = _card_for(session, agent, card_sn)
    _move_card(session, card, event, agent, now)
    return _view_of_card(session, card)


def _view_of_card(session: Session, card: Card) -> ApplicationView:
    app = session.execute(
        select(Application).where(Application.card_sn == card.card_sn)
    ).scalar_one_or_none()
    if app is None:
        raise ApplicationNotFound(f"card …{card.card_sn[-6:]} was not issued by an application")
    return _view(session, app)


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
    card = _card_for(session, agent, card_sn)
    _move_card(session, card, Event.ACTIVATE, agent, now)
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
        _move_card(session, other, Event.SUPERSEDE, agent, now, note=f"by …{card.card_sn[-6:]}")
        other.superseded_by = card.card_sn
        superseded.append(other.card_sn)
    return _change(card, superseded=tuple(superseded))


def report_loss(session: Session, agent: Agent, card_sn: str, now: dt.datetime) -> CardChange:
    """挂失: blocked at once; card authentication reads the registry on every attempt."""
    require(agent, Action.REPORT_LOSS)
    card = _card_for(session, agent, card_sn)
    _move_card(session, card, Event.REPORT_LOSS, agent, now)
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
    old = _card_for(session, agent, card_sn)
    _move_card(session, old, Event.REPLACE, agent, now)
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
    app = _new_application(
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
        _move_application(session, app, Event.ADD_TO_BATCH, agent, now)
        app.batch_id = batch.id
        # One card made at the desk: its ~2 ms of key and certificate stay in this unit (the
        # application id, which the card_sn derives from, is only known here).
        made = personalise(app.id, ca, now)
        card = _record_card(session, app, agent, made, personaliser=personaliser, now=now)
        _move_card(session, card, Event.HAND_OVER, agent, now, note="instant replacement")
        new_sn = card.card_sn
    return _change(old, revoked=old.card_sn, new_application_id=app.id, new_card_sn=new_sn)


def _instant_batch(session: Session, app: Application, now: dt.datetime) -> ProductionBatch:
    collected_on = _local_date(now)
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
        _move_card(session, card, Event.EXPIRE, agent, now)
        count += 1
    return count


# --- reading -------------------------------------------------------------------------------------


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
        return [_view(session, _application_for(session, agent, application_id))]
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
    views = [_view(session, a) for a in apps if can_see(agent, _visible(session, a))]
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
        card = _card_for(session, agent, card_sn)
        app_ids = select(Application.id).where(Application.card_sn == card.card_sn)
        where = or_(CardEvent.card_sn == card.card_sn, CardEvent.application_id.in_(app_ids))
    else:
        assert citizen_id is not None
        holder_id = session.execute(
            select(Cardholder.id).where(Cardholder.citizen_id == citizen_id.upper())
        ).scalar_one_or_none()
        if holder_id is None or not _holder_visible(session, agent, holder_id):
            raise ApplicationNotFound(
                f"no cardholder {mask_citizen_id(citizen_id)} visible to this institution"
            )
        where = CardEvent.holder_id == holder_id
    events = session.execute(select(CardEvent).where(where).order_by(CardEvent.id)).scalars()
    return [
        HistoryEntry(
            at=_utc(e.at),
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
    start, end = _day_bounds(day)
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


def illegal_transition_fields(exc: IllegalTransition) -> dict[str, object]:
    """The problem+json extension fields of a 409."""
    return {
        "current_state": exc.current,
        "event": exc.event,
        "allowed_transitions": list(exc.allowed),
    }
