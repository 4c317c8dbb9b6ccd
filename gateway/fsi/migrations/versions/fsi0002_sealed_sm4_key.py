"""The institution's SM4 transport key sealed under the KEK (gateway.sealing).

``fsi_transport.sm4_key_sealed``; ``sm4_key`` (already NULLable) keeps any plaintext key of
before, which `gateway serve` seals at start and `gateway admin rewrap` seals (this migration
has no KEK to do it with).

Revision ID: fsi0002
Revises: fsi0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fsi0002"
down_revision: str | Sequence[str] | None = "fsi0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("fsi_transport", sa.Column("sm4_key_sealed", sa.LargeBinary(256), nullable=True))


def downgrade() -> None:
    sealed = (
        op.get_bind()
        .exec_driver_sql("SELECT count(*) FROM fsi_transport WHERE sm4_key_sealed IS NOT NULL")
        .scalar_one()
    )
    if sealed:
        raise RuntimeError(f"{sealed} institution(s) hold only a sealed SM4 key: cannot downgrade")
    op.drop_column("fsi_transport", "sm4_key_sealed")
