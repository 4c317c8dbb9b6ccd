"""Schema migrations (Alembic), driven from code: no alembic.ini to keep in step.

Several packages own tables, each on its own MetaData. :data:`MIGRATION_SOURCES` lists them
with the folder holding their migration scripts. Each source is its own Alembic branch (its
first revision carries ``branch_labels=("<name>",)``), so settlement and issuance can add
migrations without touching the gateway's, and ``upgrade`` always moves every head.

To add a source, append ``MigrationSource("<package>", <package>.store.metadata,
<path to <package>/migrations/versions>)`` below and create its first revision with
``python -m gateway db revision -m "..." --branch <package> --autogenerate``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, text

import issuance.store
import settlement.store
from gateway import audit as _audit_tables  # noqa: F401 - registers its tables
from gateway import store
from gateway.card_auth import revocation as _revocation_tables  # noqa: F401 - registers its tables
from gateway.card_auth import tables as _card_auth_tables  # noqa: F401 - registers its tables
from gateway.db import for_writes
from gateway.enrolment import tables as _enrolment_tables  # noqa: F401 - registers its tables
from gateway.fsi import store as fsi_store
from gateway.limits import store as _limits_tables  # noqa: F401 - registers its tables
from settlement.crossprov import store as _crossprov_tables  # noqa: F401 - registers its tables

__all__ = [
    "MIGRATION_SOURCES",
    "MigrationSource",
    "SchemaNotCurrent",
    "check_schema_current",
    "create_revision",
    "current_revisions",
    "expected_heads",
    "target_metadata",
    "upgrade",
]

_MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit number; "SSCGW-MIG" in ASCII, so it is recognisable in pg_locks.
_LOCK_KEY: Final = int.from_bytes(b"SSCGWMIG", "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class MigrationSource:
    name: str  # also the Alembic branch label
    metadata: MetaData
    versions_dir: Path


MIGRATION_SOURCES: Final[Sequence[MigrationSource]] = (
    MigrationSource("gateway", store.metadata, _MIGRATIONS_DIR / "versions"),
    MigrationSource(
        "issuance",
        issuance.store.metadata,
        Path(issuance.store.__file__).resolve().parent / "migrations" / "versions",
    ),
    MigrationSource(
        "settlement",
        settlement.store.metadata,
        Path(settlement.store.__file__).resolve().parent / "migrations" / "versions",
    ),
    # The national-interface door (gateway.fsi): a branch of its own.
    MigrationSource(
        "fsi",
        fsi_store.metadata,
        Path(fsi_store.__file__).resolve().parent / "migrations" / "versions",
    ),
)


class SchemaNotCurrent(RuntimeError):
    """The database schema is not at the revision this code expects."""


def target_metadata() -> list[MetaData]:
    return [source.metadata for source in MIGRATION_SOURCES]


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        os.pathsep.join(str(source.versions_dir) for source in MIGRATION_SOURCES),
    )
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def expected_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def upgrade(engine: Engine, revision: str = "heads") -> set[str]:
    """Upgrade every branch to ``revision`` in one transaction; return the revisions now
    current. Safe to run when already current (does nothing).

    Safe to run from several replicas starting at once: the transaction first takes a lock
    (an advisory lock on PostgreSQL, the write lock on SQLite), so the others wait, then find
    nothing to do.
    """
    with for_writes(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        command.upgrade(alembic_config(connection), revision)
    return current_revisions(engine)


def check_schema_current(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the database is at exactly the code's heads."""
    current, expected = current_revisions(engine), expected_heads()
    if current != expected:
        raise SchemaNotCurrent(
            f"database schema is at {sorted(current) or 'no revision'}, this gateway expects "
            f"{sorted(expected)}: run `python -m gateway db upgrade`"
        )


def create_revision(engine: Engine, message: str, *, branch: str, autogenerate: bool) -> Path:
    """Write a new migration script on ``branch`` (a MigrationSource name); return its path.

    The first script of a branch starts it from base and carries its branch label.
    """
    sources = {source.name: source for source in MIGRATION_SOURCES}
    if branch not in sources:
        raise ValueError(f"unknown branch {branch!r}; known: {sorted(sources)}")
    versions_dir = sources[branch].versions_dir
    versions_dir.mkdir(parents=True, exist_ok=True)
    started = any(
        branch in revision.branch_labels
        for revision in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    )
    with engine.begin() as connection:
        script = command.revision(
            alembic_config(connection),
            message=message,
            autogenerate=autogenerate,
            head=f"{branch}@head" if started else "base",
            branch_label=None if started else branch,
            version_path=str(versions_dir),
        )
    assert script is not None
    assert not isinstance(script, list)
    return Path(script.path)
