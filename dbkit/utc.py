"""The column type of every stored instant: :class:`UtcDateTime`.

Why: SQLAlchemy's ``DateTime(timezone=True)`` on SQLite stores the wall clock of whatever aware
datetime it is handed and drops the zone, so a Beijing-time (UTC+8) value lands 8 hours off
every UTC one: a hub's settle time after 16:00 Beijing fell out of its own day's statement.
PostgreSQL's ``timestamptz`` converted it. This type converts on both: an instant is bound as
UTC (a naive one is refused: its zone is unknown) and read back as an aware UTC datetime.

Statements that bind through a column (ORM, Core, :class:`dbkit.DriverSQL` ``binds=`` and
:class:`dbkit.DriverInsert`) go through this type; a raw driver statement does not, and must
bind :func:`utc_instant` itself.

>>> import datetime as dt
>>> from dbkit.zone import BEIJING
>>> utc_instant(dt.datetime(2026, 12, 7, 17, 30, tzinfo=BEIJING))
datetime.datetime(2026, 12, 7, 9, 30, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

__all__ = ["NaiveDateTimeError", "UtcDateTime", "utc_instant"]


class NaiveDateTimeError(ValueError):
    """A naive datetime offered as an instant: which zone its wall clock is in is unknown."""


def utc_instant(value: dt.datetime) -> dt.datetime:
    """``value`` (an aware datetime) as the same instant in UTC; a naive one is refused."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"an instant must be an aware datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDateTimeError(
            f"naive datetime {value.isoformat()} offered as an instant: give it a zone "
            "(tzinfo=dt.UTC, or dbkit.BEIJING for Beijing wall-clock time)"
        )
    return value.astimezone(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """``DateTime(timezone=True)`` that binds aware datetimes as UTC (refusing naive ones) and
    reads back aware UTC datetimes, on SQLite as on PostgreSQL.

    The DDL is ``DateTime(timezone=True)``'s, so migrations (written with the plain type) and
    Alembic's type comparison see no difference.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else utc_instant(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime), type(value)
        # SQLite hands back the naive UTC wall clock this type stored; PostgreSQL an aware
        # value in the session's zone.
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        # ``column + timedelta`` is interval arithmetic, not an instant to bind as UTC.
        if isinstance(value, dt.datetime):
            return self
        return self.impl_instance.coerce_compared_value(op, value)

    def __repr__(self) -> str:
        return "UtcDateTime()"
