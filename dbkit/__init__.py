"""The one hot-path SQL kit that gateway, settlement and issuance share.

It holds what every package's store needs and none of them owns: statements run straight on the
driver's cursor (:class:`DriverSQL`, :class:`DriverInsert`), their per-dialect type-processor
caches, the constraint naming convention every MetaData uses (:func:`new_metadata`), the
column type of every stored instant (:class:`UtcDateTime`: UTC in, aware UTC out, naive
refused, on SQLite as on PostgreSQL), and Beijing time (UTC+8), in which a settlement day, a
reconciliation day and a card's expiry are counted (:data:`BEIJING`).

It imports nothing else of the project (an import-linter contract checks it), so any package
may use it without pulling in another domain.

>>> import datetime as dt
>>> beijing_date(dt.datetime(2026, 12, 31, 16, 0, tzinfo=dt.UTC))
datetime.date(2027, 1, 1)
"""

from dbkit.driver import MAX_MULTI_ROWS, DriverInsert, DriverSQL
from dbkit.naming import NAMING_CONVENTION, new_metadata
from dbkit.utc import NaiveDateTimeError, UtcDateTime, utc_instant
from dbkit.zone import BEIJING, as_utc, beijing_date, day_bounds_utc

__all__ = [
    "BEIJING",
    "MAX_MULTI_ROWS",
    "NAMING_CONVENTION",
    "DriverInsert",
    "DriverSQL",
    "NaiveDateTimeError",
    "UtcDateTime",
    "as_utc",
    "beijing_date",
    "day_bounds_utc",
    "new_metadata",
    "utc_instant",
]
