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

from sqlalchemy import Date, DateTime, Enum, ForeignKey, Index, MetaData, SmallInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
    state_changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
