"""Beijing time (UTC+8, no daylight saving), in which the city's days are counted.

Instants are stored and compared in UTC; a *day* (a settlement day, a reconciliation day, a
card's expiry, a policy year) is a Beijing calendar day. One definition, so that a settle at
23:59:59 Beijing time is counted on the same day by every package.

>>> import datetime as dt
>>> day_bounds_utc(dt.date(2026, 1, 1))[0]
datetime.datetime(2025, 12, 31, 16, 0, tzinfo=datetime.timezone.utc)
>>> as_utc(dt.datetime(2026, 1, 1, 8, 0))  # SQLite hands back naive UTC
datetime.datetime(2026, 1, 1, 8, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import datetime as dt
from typing import Final

__all__ = ["BEIJING", "as_utc", "beijing_date", "day_bounds_utc"]

BEIJING: Final = dt.timezone(dt.timedelta(hours=8), "CST")


def beijing_date(at: dt.datetime) -> dt.date:
    """The Beijing calendar day of an aware instant."""
    return at.astimezone(BEIJING).date()


def day_bounds_utc(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of ``day`` in Beijing time, as UTC instants."""
    start = dt.datetime.combine(day, dt.time(), BEIJING).astimezone(dt.UTC)
    return start, start + dt.timedelta(days=1)


def as_utc(value: dt.datetime) -> dt.datetime:
    """An instant read back from the database, made aware: SQLite returns the naive UTC value
    it was given (so it is marked UTC), PostgreSQL an aware one (kept as it is). A
    :class:`dbkit.UtcDateTime` column already reads back aware UTC (this is then a no-op); still
    needed for a plain ``DateTime(timezone=True)`` column, e.g. of a reflected table."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
