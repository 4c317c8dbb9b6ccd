"""Card registry: cardholders and cards (issuance.store).

Revision ID: is0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "is0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("issuance",)
depends_on: str | Sequence[str] | None = None

# The enum NAMES, as SQLAlchemy's non-native Enum stores them (issuance.store.CardState).
_CARD_STATES = (
    "PRODUCED",
    "MAILED",
    "DELIVERED",
    "DELIVERY_FAILED",
    "AT_BACKUP_CENTRE",
    "COLLECTED",
    "ACTIVE",
    "LOST",
    "REVOKED",
    "SUPERSEDED",
    "EXPIRED",
)


def upgrade() -> None:
    op.create_table(
        "cardholders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("citizen_id", sa.String(length=18), nullable=False),
        sa.Column("name", sa.String(length=30), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("gender", sa.String(length=1), nullable=False),
        sa.Column("area_code", sa.String(length=6), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cardholders")),
        sa.UniqueConstraint("citizen_id", name=op.f("uq_cardholders_citizen_id")),
    )
    op.create_table(
        "cards",
        sa.Column("card_sn", sa.String(length=32), nullable=False),
        sa.Column("card_no", sa.String(length=9), nullable=False),
        sa.Column("holder_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.SmallInteger(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(*_CARD_STATES, name="cardstate", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("cert_sm3", sa.String(length=64), nullable=True),
        sa.Column("superseded_by", sa.String(length=32), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["holder_id"], ["cardholders.id"], name=op.f("fk_cards_holder_id_cardholders")
        ),
        sa.PrimaryKeyConstraint("card_sn", name=op.f("pk_cards")),
    )
    op.create_index("ix_cards_holder_generation", "cards", ["holder_id", "generation"])


def downgrade() -> None:
    op.drop_index("ix_cards_holder_generation", table_name="cards")
    op.drop_table("cards")
    op.drop_table("cardholders")
