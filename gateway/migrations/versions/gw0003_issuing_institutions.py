"""Institutions that issue cards: service banks, employers, community centres, online service,
the hotline and the card centre beside hospitals and pharmacies (``institutions.kind``).

Their terminals call the issuance API (their role comes from issuance's ``issuance_agents``);
every settlement route refuses them (gateway.routing: ``Route.institution_kinds``).

Only the CHECK constraint ``ck_institutions_kind_level`` changes: a new kind has no hospital
level. It also closes a hole of gw0001's text: ``level IN (1, 2, 3)`` is NULL, not false, for
a NULL level, so a hospital without a level passed; now it must have one (upgrade refuses, and
counts them, if such hospitals exist).

PostgreSQL drops and re-creates the constraint. SQLite cannot alter a constraint, and batch
mode's table rebuild (create a copy, copy the rows, DROP the old table, rename) cannot run
here: the migration runs inside one transaction with ``foreign_keys = ON`` (which cannot be
switched off inside a transaction), and dropping ``institutions`` under the foreign keys of
``terminals`` fails, deferred or not (tried: the deferred violation count stays at commit). So
SQLite's documented procedure for changes that leave the stored rows valid applies instead
(https://sqlite.org/lang_altertable.html#otheralter, "removing CHECK constraints"): rewrite the
table's SQL in ``sqlite_schema`` with ``writable_schema`` and bump ``schema_version`` so that
every connection reloads the schema, after checking that no stored row breaks the new text.
Same transaction, so a failure leaves the old schema.

Downgrade narrows the constraint again and refuses while any institution of a new kind exists
(removing them would remove their terminals and history: do that deliberately, not here).

Revision ID: gw0003
Revises: gw0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gw0003"
down_revision: str | Sequence[str] | None = "gw0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ck_institutions_kind_level"
_OLD = "(kind = 'hospital' AND level IN (1, 2, 3)) OR (kind = 'pharmacy' AND level IS NULL)"
_NEW = (
    "(kind = 'hospital' AND level IS NOT NULL AND level IN (1, 2, 3)) OR (kind IN ("
    "'pharmacy', 'service_bank', 'employer', 'community_centre', 'online_service', 'hotline', "
    "'card_centre') AND level IS NULL)"
)


def _sqlite_rewrite_check(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'institutions'"
    ).scalar_one()
    if sql.count(old) != 1:
        raise RuntimeError(f"institutions: expected CHECK {_NAME} ({old}) once in {sql!r}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'institutions'",
            (sql.replace(old, new),),
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    # The rewritten text must still parse and describe a sound database.
    result = bind.exec_driver_sql("PRAGMA quick_check").scalar_one()
    if result != "ok":
        raise RuntimeError(f"institutions: quick_check after the CHECK rewrite: {result}")


def _replace_check(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rewrite_check(old, new)
    else:
        op.drop_constraint(_NAME, "institutions", type_="check")
        op.create_check_constraint(op.f(_NAME), "institutions", new)


def _refuse_if_any(sql: str, problem: str) -> None:
    count = op.get_bind().execute(sa.text(sql)).scalar_one()
    if count:
        raise RuntimeError(f"{count} institution(s) {problem}")


def upgrade() -> None:
    # The SQLite rewrite does not re-check stored rows: check the one row the new text refuses.
    _refuse_if_any(
        "SELECT count(*) FROM institutions WHERE kind = 'hospital' AND level IS NULL",
        "are hospitals without a level (1, 2 or 3): set it before upgrading to gw0003",
    )
    _replace_check(_OLD, _NEW)


def downgrade() -> None:
    _refuse_if_any(
        "SELECT count(*) FROM institutions WHERE kind NOT IN ('hospital', 'pharmacy')",
        "are neither hospital nor pharmacy: remove them (and their terminals) before "
        "downgrading below gw0003",
    )
    _replace_check(_NEW, _OLD)
