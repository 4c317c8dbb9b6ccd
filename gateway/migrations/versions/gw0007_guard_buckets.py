"""Shared limits: the token buckets every worker and replica spend from (gateway.limits.store),
when no redis_url is set.

Revision ID: gw0007
Revises: gw0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gw0007"
down_revision: str | Sequence[str] | None = "gw0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guard_buckets",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_guard_buckets")),
    )
    op.create_index(
        op.f("ix_guard_buckets_updated_ms"), "guard_buckets", ["updated_ms"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_guard_buckets_updated_ms"), table_name="guard_buckets")
    op.drop_table("guard_buckets")
