"""The national-interface door: operators, sign-ins, transport profiles, card presence.

Revision ID: fsi0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fsi0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("fsi",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fsi_operators",
        sa.Column("fixmedins_code", sa.String(32), nullable=False),
        sa.Column("opter", sa.String(30), nullable=False),
        sa.Column("opter_name", sa.String(50), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("fixmedins_code", "opter", name=op.f("pk_fsi_operators")),
    )
    op.create_table(
        "fsi_sign_ins",
        sa.Column("sign_no", sa.String(30), nullable=False),
        sa.Column("fixmedins_code", sa.String(32), nullable=False),
        sa.Column("opter", sa.String(30), nullable=False),
        sa.Column("dev_no", sa.String(64), nullable=False),
        sa.Column("signed_in_at_s", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_s", sa.BigInteger(), nullable=False),
        sa.Column("signed_out_at_s", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("sign_no", name=op.f("pk_fsi_sign_ins")),
    )
    op.create_index(
        op.f("ix_fsi_sign_ins_expires_at_s"), "fsi_sign_ins", ["expires_at_s"], unique=False
    )
    op.create_table(
        "fsi_transport",
        sa.Column("fixmedins_code", sa.String(32), nullable=False),
        sa.Column("profile", sa.String(16), nullable=False),
        sa.Column("sm4_key", sa.LargeBinary(16), nullable=True),
        sa.Column("his_public_key", sa.LargeBinary(65), nullable=True),
        sa.PrimaryKeyConstraint("fixmedins_code", name=op.f("pk_fsi_transport")),
    )
    op.create_table(
        "card_presence",
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("card_sn", sa.String(32), nullable=False),
        sa.Column("holder_id", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.SmallInteger(), nullable=False),
        sa.Column("route", sa.SmallInteger(), nullable=False),
        sa.Column("expires_at_s", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "card_sn", name=op.f("pk_card_presence")),
    )
    op.create_index(
        op.f("ix_card_presence_expires_at_s"), "card_presence", ["expires_at_s"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_card_presence_expires_at_s"), table_name="card_presence")
    op.drop_table("card_presence")
    op.drop_table("fsi_transport")
    op.drop_index(op.f("ix_fsi_sign_ins_expires_at_s"), table_name="fsi_sign_ins")
    op.drop_table("fsi_sign_ins")
    op.drop_table("fsi_operators")
