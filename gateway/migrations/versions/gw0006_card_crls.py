"""Card certificate revocation: the CRL in force for each CA of the card PKI, and its entries
(gateway.card_auth.revocation).

Revision ID: gw0006
Revises: gw0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gw0006"
down_revision: str | Sequence[str] | None = "gw0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_crls",
        sa.Column("issuer_sm3", sa.String(64), nullable=False),
        sa.Column("crl_number_hex", sa.String(40), nullable=False),
        sa.Column("this_update_ms", sa.BigInteger(), nullable=False),
        sa.Column("next_update_ms", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("crl_sm3", sa.String(64), nullable=False),
        sa.Column("imported_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("der", sa.LargeBinary(16 * 1024 * 1024 - 1), nullable=False),
        sa.PrimaryKeyConstraint("issuer_sm3", name=op.f("pk_card_crls")),
    )
    op.create_table(
        "card_revoked_serials",
        sa.Column("issuer_sm3", sa.String(64), nullable=False),
        sa.Column("serial_hex", sa.String(40), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("issuer_sm3", "serial_hex", name=op.f("pk_card_revoked_serials")),
    )


def downgrade() -> None:
    op.drop_table("card_revoked_serials")
    op.drop_table("card_crls")
