"""Card authentication: one-time card challenges, seen card certificates, shared secrets.

Revision ID: gw0002
Revises: gw0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gw0002"
down_revision: str | Sequence[str] | None = "gw0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_challenges",
        sa.Column("challenge_id", sa.String(64), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("card_sn", sa.String(32), nullable=False),
        sa.Column("generation", sa.SmallInteger(), nullable=False),
        sa.Column("challenge", sa.LargeBinary(16), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("challenge_id", name=op.f("pk_card_challenges")),
    )
    op.create_index(
        op.f("ix_card_challenges_expires_at_ms"),
        "card_challenges",
        ["expires_at_ms"],
        unique=False,
    )
    op.create_table(
        "card_certificates",
        sa.Column("sm3", sa.String(64), nullable=False),
        sa.Column("der", sa.LargeBinary(16384), nullable=False),
        sa.PrimaryKeyConstraint("sm3", name=op.f("pk_card_certificates")),
    )
    op.create_table(
        "gateway_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(64), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_gateway_secrets")),
    )


def downgrade() -> None:
    op.drop_table("gateway_secrets")
    op.drop_table("card_certificates")
    op.drop_index(op.f("ix_card_challenges_expires_at_ms"), table_name="card_challenges")
    op.drop_table("card_challenges")
