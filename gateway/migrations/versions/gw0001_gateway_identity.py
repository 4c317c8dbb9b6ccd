"""Gateway identity: institutions, terminals, request nonces.

Revision ID: gw0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gw0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("gateway",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "institutions",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=True),
        sa.CheckConstraint(
            "(kind = 'hospital' AND level IN (1, 2, 3)) OR (kind = 'pharmacy' AND level IS NULL)",
            name=op.f("ck_institutions_kind_level"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_institutions")),
    )
    op.create_table(
        "terminals",
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("institution_code", sa.String(32), nullable=False),
        sa.Column("secret", sa.LargeBinary(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "length(secret) BETWEEN 16 AND 64", name=op.f("ck_terminals_secret_length")
        ),
        sa.ForeignKeyConstraint(
            ["institution_code"],
            ["institutions.code"],
            name=op.f("fk_terminals_institution_code_institutions"),
        ),
        sa.PrimaryKeyConstraint("terminal_id", name=op.f("pk_terminals")),
    )
    op.create_index(
        op.f("ix_terminals_institution_code"), "terminals", ["institution_code"], unique=False
    )
    op.create_table(
        "request_nonces",
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("expires_at_s", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "nonce", name=op.f("pk_request_nonces")),
    )
    op.create_index(
        op.f("ix_request_nonces_expires_at_s"), "request_nonces", ["expires_at_s"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_request_nonces_expires_at_s"), table_name="request_nonces")
    op.drop_table("request_nonces")
    op.drop_index(op.f("ix_terminals_institution_code"), table_name="terminals")
    op.drop_table("terminals")
    op.drop_table("institutions")
