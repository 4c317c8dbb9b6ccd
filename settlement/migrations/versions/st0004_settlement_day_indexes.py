"""settlements: indexes on setl_time and (cancelled rows only) cancelled_at

The operations dashboard reads one day's settlements by ``setl_time`` and one day's
cancellations by ``cancelled_at`` across every institution; without these it scans the table
(94 ms at 300k rows, 24 ms with). The cancelled_at index holds cancelled rows only, so a
settle (cancelled_at NULL) adds no entry to it. Plain CREATE INDEX: on a large PostgreSQL
table it blocks writes to settlements while it builds (CONCURRENTLY cannot run inside the
migration's transaction), so upgrade a busy production database in a quiet window.

Revision ID: st0004
Revises: st0003
Create Date: 2026-11-27 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "st0004"
down_revision: str | Sequence[str] | None = "st0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# settlement.store.CANCELLED_ONLY at this revision (a migration does not import the models).
CANCELLED_ONLY = "cancelled_at IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_settlements_setl_time", "settlements", ["setl_time"], unique=False)
    op.create_index(
        "ix_settlements_cancelled_at",
        "settlements",
        ["cancelled_at"],
        unique=False,
        sqlite_where=sa.text(CANCELLED_ONLY),
        postgresql_where=sa.text(CANCELLED_ONLY),
    )


def downgrade() -> None:
    op.drop_index("ix_settlements_cancelled_at", table_name="settlements")
    op.drop_index("ix_settlements_setl_time", table_name="settlements")
