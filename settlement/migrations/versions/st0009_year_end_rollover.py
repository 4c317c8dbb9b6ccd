"""personal accounts roll over at year end: account_rollovers, rollover_years, an index

At 00:00 Beijing time on 1 January what is left in each current-year account (当年账户) moves
to the past-years account (历年账户), once (settlement.rollover):

* ``account_rollovers`` (person_id, from_year) PRIMARY KEY: one row per account and ended
  year, the database's guard that a roll-over happens once whoever runs it;
* ``rollover_years`` (year PRIMARY KEY): the year whose roll-over finished;
* ``ix_personal_accounts_account_year_person_id``: the accounts still in an ended year, in
  the order the year-end job walks them (a plain CREATE INDEX: on a large PostgreSQL table it
  blocks writes to personal_accounts while it builds; upgrade in a quiet window).

Revision ID: st0009
Revises: st0008
Create Date: 2026-12-07 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "st0009"
down_revision: str | Sequence[str] | None = "st0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_rollovers",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("from_year", sa.SmallInteger(), nullable=False),
        sa.Column("to_year", sa.SmallInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "amount_fen >= 0", name=op.f("ck_account_rollovers_amount_not_negative")
        ),
        sa.CheckConstraint("to_year > from_year", name=op.f("ck_account_rollovers_forwards")),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["insured_persons.id"],
            name=op.f("fk_account_rollovers_person_id_insured_persons"),
        ),
        sa.PrimaryKeyConstraint("person_id", "from_year", name=op.f("pk_account_rollovers")),
    )
    op.create_table(
        "rollover_years",
        sa.Column("year", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("accounts", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("accounts >= 0", name=op.f("ck_rollover_years_accounts_not_negative")),
        sa.CheckConstraint("amount_fen >= 0", name=op.f("ck_rollover_years_amount_not_negative")),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_rollover_years")),
    )
    op.create_index(
        "ix_personal_accounts_account_year_person_id",
        "personal_accounts",
        ["account_year", "person_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_personal_accounts_account_year_person_id", table_name="personal_accounts")
    op.drop_table("rollover_years")
    op.drop_table("account_rollovers")
