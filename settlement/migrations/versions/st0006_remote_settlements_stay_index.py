"""remote_settlements: index on (fixmedins_code, mdtrt_id)

Every discharge through the hub, and every retry of one, asks which of the institution's remote
settlements belong to this stay (settlement.crossprov.remote_settle.require_stay_not_discharged: by
``mdtrt_id``, the stay's admission id); without this index that is a scan of the institution's
remote settlements, growing with every cross-province visit it ever settled. Plain CREATE
INDEX: on a large PostgreSQL table it blocks writes to remote_settlements while it builds.

Revision ID: st0006
Revises: st0005
Create Date: 2026-11-27 22:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "st0006"
down_revision: str | Sequence[str] | None = "st0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_remote_settlements_fixmedins_code_mdtrt_id",
        "remote_settlements",
        ["fixmedins_code", "mdtrt_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_remote_settlements_fixmedins_code_mdtrt_id", table_name="remote_settlements")
