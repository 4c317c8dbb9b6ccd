"""Alembic environment for every table the gateway process serves.

``target_metadata`` is a LIST: the gateway's own MetaData plus one per domain package that owns
tables (see gateway.migrate.MIGRATION_SOURCES). Alembic compares and autogenerates against all
of them at once; each source keeps its scripts in its own version location and branch.

Run through ``python -m gateway db upgrade``, which passes an open connection from the gateway's
own engine factory (so SQLite gets the same WAL and busy_timeout pragmas as the server).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from gateway.migrate import target_metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `python -m gateway db ...`")
    _run(connection)


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
_run_online()
