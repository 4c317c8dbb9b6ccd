"""Enrolment: sealed terminal secrets, rotation overlap, suspended institutions, ops identities.

* ``terminals.sealed_secret`` / ``previous_sealed`` / ``previous_until_s``: the secret sealed
  under the KEK (gateway.sealing) and a rotation's previous secret. ``terminals.secret`` (the
  plaintext column) becomes NULLable: the gateway writes NULL there from now on, and seals the
  rows that still have one (`gateway admin rewrap`, and at every `serve` start: this migration
  has no KEK to do it with).
* ``institutions.suspended``.
* ``ops_identities``: named ops tokens (their SHA-256) with a role.

SQLite cannot drop a NOT NULL, and a batch-mode table rebuild cannot run here (see gw0003:
``terminals`` is under foreign keys inside one transaction). The same documented procedure as
gw0003 applies (https://sqlite.org/lang_altertable.html#otheralter): the table's SQL in
``sqlite_schema`` is rewritten, which is safe because every stored row satisfies the wider
definition, and ``schema_version`` is bumped so every connection reloads it.

Revision ID: gw0005
Revises: gw0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gw0005"
down_revision: str | Sequence[str] | None = "gw0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_NULL = "secret BLOB NOT NULL"
_NULLABLE = "secret BLOB"


def _sqlite_rewrite_terminals(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'terminals'"
    ).scalar_one()
    if sql.count(old) != 1:
        raise RuntimeError(f"terminals: expected {old!r} once in {sql!r}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'terminals'",
            (sql.replace(old, new),),
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    result = bind.exec_driver_sql("PRAGMA quick_check").scalar_one()
    if result != "ok":
        raise RuntimeError(f"terminals: quick_check after the rewrite: {result}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rewrite_terminals(_NOT_NULL, _NULLABLE)
    else:
        op.alter_column("terminals", "secret", existing_type=sa.LargeBinary(64), nullable=True)
    op.add_column("terminals", sa.Column("sealed_secret", sa.LargeBinary(256), nullable=True))
    op.add_column("terminals", sa.Column("previous_sealed", sa.LargeBinary(256), nullable=True))
    op.add_column("terminals", sa.Column("previous_until_s", sa.BigInteger(), nullable=True))
    op.add_column(
        "institutions",
        sa.Column("suspended", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "ops_identities",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at_s", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_s", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'operator', 'admin')", name=op.f("ck_ops_identities_role")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ops_identities")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_ops_identities_token_sha256")),
    )


def downgrade() -> None:
    # A sealed secret cannot go back into the plaintext column without the KEK: refuse.
    sealed = (
        op.get_bind()
        .exec_driver_sql("SELECT count(*) FROM terminals WHERE secret IS NULL")
        .scalar_one()
    )
    if sealed:
        raise RuntimeError(f"{sealed} terminal(s) hold only a sealed secret: cannot downgrade")
    op.drop_table("ops_identities")
    op.drop_column("institutions", "suspended")
    op.drop_column("terminals", "previous_until_s")
    op.drop_column("terminals", "previous_sealed")
    op.drop_column("terminals", "sealed_secret")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rewrite_terminals(_NULLABLE + ",", _NOT_NULL + ",")
    else:
        op.alter_column("terminals", "secret", existing_type=sa.LargeBinary(64), nullable=False)
