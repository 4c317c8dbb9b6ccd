"""admissions.discharge_date: a stay's discharge, recorded before or at its settlement

The national interface records a discharge (出院办理, 2402) apart from the stay's settlement
(2304), and may undo it (撤销出院, 2405). The stay keeps the date: 2402 records it on the open
stay, the settlement at discharge settles on it (or on the day it runs, recording that), and
2405 clears it.

* ``admissions.discharge_date`` DATE, NULL: nothing stored has one yet.

Plain ``ADD COLUMN`` on both backends.

Revision ID: st0008
Revises: st0007
Create Date: 2026-12-07 04:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "st0008"
down_revision: str | Sequence[str] | None = "st0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE admissions ADD COLUMN discharge_date DATE")


def downgrade() -> None:
    op.execute("ALTER TABLE admissions DROP COLUMN discharge_date")
