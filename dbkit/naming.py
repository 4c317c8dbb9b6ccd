"""The constraint naming convention of every table of the project.

Explicit names, so that a migration can name the constraint or index it alters on every
backend (SQLite rebuilds tables by name; PostgreSQL drops constraints by name). Each package
keeps its own MetaData (its own Alembic branch), all built here so that they cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from sqlalchemy import MetaData

__all__ = ["NAMING_CONVENTION", "new_metadata"]

NAMING_CONVENTION: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def new_metadata() -> MetaData:
    """A package's MetaData, with the project's naming convention."""
    return MetaData(naming_convention=dict(NAMING_CONVENTION))
