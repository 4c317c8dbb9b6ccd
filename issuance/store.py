"""Tables the issuance package owns (SQLAlchemy 2.0 typed models on their own MetaData).

The gateway's Alembic environment migrates this MetaData beside the other packages'; nothing
here knows about HTTP or the gateway.

A ``cards`` row exists from production on: before that, an application has no card_sn. Second-
generation cards (issued before 2019) are in the same table with ``generation = 2`` so that
activating a new card can supersede the holder's legacy card in one transaction.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbkit import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata


class CardState(enum.StrEnum):
    """Where a card is in its life. Only ``ACTIVE`` cards authenticate."""

    PRODUCED = "produced"
    MAILED = "mailed"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    AT_BACKUP_CENTRE = "at_backup_centre"
    COLLECTED = "collected"
    ACTIVE = "active"  # 开通
    LOST = "lost"  # 挂失
    REVOKED = "revoked"  # replaced by a new card (补换)
    SUPERSEDED = "superseded"  # legacy card voided when the new card was activated
    EXPIRED = "expired"


class Cardholder(Base):
    __tablename__ = "cardholders"

    id: Mapped[int] = mapped_column(primary_key=True)
    # 社会保障号码: personal data, never logged unmasked.
    citizen_id: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(30))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(String(1))
    area_code: Mapped[str] = mapped_column(String(6))  # community / district of registration


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (Index("ix_cards_holder_generation", "holder_id", "generation"),)

    card_sn: Mapped[str] = mapped_column(String(32), primary_key=True)  # 卡识别码, 32 hex digits
    card_no: Mapped[str] = mapped_column(String(9))  # 卡号
    holder_id: Mapped[int] = mapped_column(ForeignKey("cardholders.id"))
    generation: Mapped[int] = mapped_column(SmallInteger)  # 3 = SM2 + certificate; 2 = legacy
    state: Mapped[CardState] = mapped_column(
        Enum(CardState, native_enum=False, length=20, validate_strings=True)
    )
    issued_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date] = mapped_column(Date)
    # SM3 fingerprint of the card certificate issued with the card (third generation only), so
    # a certificate of a revoked card cannot pass for the current one.
    cert_sm3: Mapped[str | None] = mapped_column(String(64))
    superseded_by: Mapped[str | None] = mapped_column(String(32))
    state_changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


# --- issuance services (migration is0002) ------------------------------------------------------
# Stages, roles, channels and cohorts are stored as their string VALUES (issuance.lifecycle.Stage,
# issuance.access.Role, issuance.programme.Channel); the Python side converts.


class IssuanceAgent(Base):
    """The issuance role of an institution: the calling terminal's institution acts as this role
    (issuance.access). An institution with no row here has no issuance rights at all."""

    __tablename__ = "issuance_agents"

    institution_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # bank|employer|community|online|hotline|centre
    name: Mapped[str] = mapped_column(String(128))
    bank_code: Mapped[str | None] = mapped_column(String(8))  # bank; employer's partner bank
    employer_code: Mapped[str | None] = mapped_column(String(32))  # employer
    area_code: Mapped[str | None] = mapped_column(String(6))  # community centre's district


class ProductionBatch(Base):
    """Cards made together: collected applications of one channel and one collection date."""

    __tablename__ = "production_batches"
    __table_args__ = (UniqueConstraint("channel", "collected_on", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    collected_on: Mapped[dt.date] = mapped_column(Date)
    seq: Mapped[int] = mapped_column(Integer)  # several batches of one (channel, day) if large
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    produced_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class Application(Base):
    """One application for a new card (申领), from applied to the card it produced."""

    __tablename__ = "applications"
    __table_args__ = (
        Index("ix_applications_stage_channel", "stage", "channel"),
        Index("ix_applications_bank_code", "bank_code"),
        Index("ix_applications_employer_code", "employer_code"),
        Index("ix_applications_holder_id", "holder_id"),
        Index("ix_applications_batch_id", "batch_id"),
        Index("ix_applications_card_sn", "card_sn"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    holder_id: Mapped[int] = mapped_column(ForeignKey("cardholders.id"))
    # = holder_id while the application is open (before production), NULL after: the unique
    # constraint lets a holder have at most one application in progress, enforced by the DB.
    open_holder_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    cohort: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(20))
    photo_source: Mapped[str] = mapped_column(String(16))
    bank_code: Mapped[str] = mapped_column(String(8))
    employer_code: Mapped[str | None] = mapped_column(String(32))
    agent_code: Mapped[str] = mapped_column(String(32))  # institution that took it
    backup_centre: Mapped[str] = mapped_column(String(32))  # 备用社区受理网点
    stage: Mapped[str] = mapped_column(String(20))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("production_batches.id"))
    card_sn: Mapped[str | None] = mapped_column(ForeignKey("cards.card_sn"))
    replaces_card_sn: Mapped[str | None] = mapped_column(String(32))
    instant: Mapped[bool] = mapped_column(Boolean, default=False)
    applied_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    collected_on: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CardEvent(Base):
    """Every lifecycle transition, append-only: the hotline's (962222) history of a card."""

    __tablename__ = "card_events"
    __table_args__ = (
        Index("ix_card_events_card_sn", "card_sn"),
        Index("ix_card_events_application_id", "application_id"),
        Index("ix_card_events_holder_id", "holder_id"),
        Index("ix_card_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    holder_id: Mapped[int] = mapped_column(Integer)
    application_id: Mapped[int | None] = mapped_column(Integer)
    card_sn: Mapped[str | None] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(20))
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(64))  # institution code (and terminal id)
    channel: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(200))
