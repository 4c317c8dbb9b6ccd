"""The national-interface door's files: 9101 uploads (3202's detail file) and the files an
answer names for 9102 (3202's differences), kept until they expire.

Revision ID: fsi0003
Revises: fsi0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fsi0003"
down_revision: str | Sequence[str] | None = "fsi0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fsi_files",
        sa.Column("file_qury_no", sa.String(40), nullable=False),
        sa.Column("fixmedins_code", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at_s", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_s", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("file_qury_no", name=op.f("pk_fsi_files")),
    )
    op.create_index(
        op.f("ix_fsi_files_fixmedins_code_expires_at_s"),
        "fsi_files",
        ["fixmedins_code", "expires_at_s"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_fsi_files_fixmedins_code_expires_at_s"), table_name="fsi_files")
    op.drop_table("fsi_files")
