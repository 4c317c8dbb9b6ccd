"""admissions: a discharge through the national hub closes the stay (``remote_msgid``)

A discharge of a person insured elsewhere settles through the hub (2304); that settlement is a
``remote_settlements`` row, not a ``settlements`` one (docs/cross-province.md), so the
admission could not record it: ``discharged`` required a local ``setl_id``. Now:

* ``admissions.remote_msgid`` VARCHAR(30) (the hub message's id, settlement.crossprov.wire's
  msgid: institution 12 + yyyyMMddHHmmss + 4), unique (a unique index);
* ``ck_admissions_discharged_has_settlement`` widened: discharged exactly when it has a local
  ``setl_id`` or a ``remote_msgid``;
* ``ck_admissions_one_settlement``: never both.

Every stored row has ``remote_msgid`` NULL after the ADD COLUMN, so the widened CHECK says of
it exactly what the old one said, and the new CHECK holds: no stored row can break them.

PostgreSQL alters the table in place. SQLite cannot alter a constraint, and batch mode's
rebuild (copy, DROP, rename) cannot run inside this transaction with ``foreign_keys = ON``
under ``admission_fee_lines``' foreign key to ``admissions`` (see gw0003). So, as gw0003 does:
the column comes by ``ALTER TABLE ADD COLUMN`` (SQLite appends its text to the table's SQL),
the uniqueness by a unique index (an ADD COLUMN cannot carry UNIQUE, and adding a UNIQUE to the
table's SQL would need an index the rewrite cannot create: this is why the model declares an
index, not a constraint), and the CHECKs by rewriting the table's SQL in ``sqlite_schema``
(SQLite's documented procedure for changes that leave the stored rows valid,
https://sqlite.org/lang_altertable.html#otheralter), ``schema_version`` bumped so that every
connection reloads the schema. One transaction: a failure leaves the old schema.

Downgrade refuses while any admission was discharged through the hub: dropping its
``remote_msgid`` would either break the old CHECK or reopen a settled stay to fee lines.

Revision ID: st0005
Revises: st0004
Create Date: 2026-11-27 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "st0005"
down_revision: str | Sequence[str] | None = "st0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# settlement.store's CHECK texts at this revision (a migration does not import the models).
_DISCHARGED = "ck_admissions_discharged_has_settlement"
_ONE = "ck_admissions_one_settlement"
_OLD_DISCHARGED = "(status = 'discharged') = (setl_id IS NOT NULL)"
_NEW_DISCHARGED = "(status = 'discharged') = (setl_id IS NOT NULL OR remote_msgid IS NOT NULL)"
_ONE_SETTLEMENT = "setl_id IS NULL OR remote_msgid IS NULL"
_INDEX = "uq_admissions_remote_msgid"

# The CHECK clauses as SQLAlchemy writes them into SQLite's table SQL.
_OLD_CLAUSE = f"CONSTRAINT {_DISCHARGED} CHECK ({_OLD_DISCHARGED})"
_NEW_CLAUSES = (
    f"CONSTRAINT {_DISCHARGED} CHECK ({_NEW_DISCHARGED}), "
    f"CONSTRAINT {_ONE} CHECK ({_ONE_SETTLEMENT})"
)


def _sqlite_rewrite_table_sql(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'admissions'"
    ).scalar_one()
    if sql.count(old) != 1:
        raise RuntimeError(f"admissions: expected {old!r} once in {sql!r}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'admissions'",
            (sql.replace(old, new),),
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    # The rewritten text must still parse and describe a sound database.
    result = bind.exec_driver_sql("PRAGMA quick_check").scalar_one()
    if result != "ok":
        raise RuntimeError(f"admissions: quick_check after the CHECK rewrite: {result}")


def _refuse_if_any(sql: str, problem: str) -> None:
    count = op.get_bind().execute(sa.text(sql)).scalar_one()
    if count:
        raise RuntimeError(f"{count} admission(s) {problem}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE admissions ADD COLUMN remote_msgid VARCHAR(30)")
        _sqlite_rewrite_table_sql(_OLD_CLAUSE, _NEW_CLAUSES)
    else:
        op.add_column("admissions", sa.Column("remote_msgid", sa.String(length=30)))
        op.drop_constraint(_DISCHARGED, "admissions", type_="check")
        op.create_check_constraint(op.f(_DISCHARGED), "admissions", _NEW_DISCHARGED)
        op.create_check_constraint(op.f(_ONE), "admissions", _ONE_SETTLEMENT)
    op.create_index(_INDEX, "admissions", ["remote_msgid"], unique=True)


def downgrade() -> None:
    _refuse_if_any(
        "SELECT count(*) FROM admissions WHERE remote_msgid IS NOT NULL",
        "were discharged through the national hub (remote_msgid): below st0005 an admission "
        "cannot record that, and reopening them would accept fee lines on settled stays",
    )
    op.drop_index(_INDEX, table_name="admissions")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rewrite_table_sql(_NEW_CLAUSES, _OLD_CLAUSE)
        # Rewrites the table's rows (SQLite ≥ 3.35), in place: no DROP TABLE.
        op.execute("ALTER TABLE admissions DROP COLUMN remote_msgid")
    else:
        op.drop_constraint(_ONE, "admissions", type_="check")
        op.drop_constraint(_DISCHARGED, "admissions", type_="check")
        op.create_check_constraint(op.f(_DISCHARGED), "admissions", _OLD_DISCHARGED)
        op.drop_column("admissions", "remote_msgid")
