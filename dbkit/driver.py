"""Hot-path statements run straight on the driver's cursor (DriverSQL, DriverInsert).

Why: even a prebuilt SQLAlchemy Core statement costs 15-80 µs of Python per execution
(execution context, parameter processing, result metadata, type processors), a DBAPI
``cursor.execute`` 3-10 µs; card authentication and settle run several statements each, inside
SQLite's one write lock. Only for those statements; everything else goes through SQLAlchemy.

What stays SQLAlchemy's: the transaction (BEGIN, SAVEPOINTs and COMMIT on the unit's
connection), the column types (each bound value and each selected value goes through the
column type's own processor, so what is stored and read is exactly what SQLAlchemy would store
and read: SQLite's datetime text, enum values, booleans) and the exceptions (a driver error is
raised as the SQLAlchemy exception SQLAlchemy itself would raise, IntegrityError,
OperationalError ..., with its parameters hidden: they can hold personal data). Not seen by
SQLAlchemy's cursor events or ``echo``: a listener that counts or logs statements does not
count these.

The SQL is written once for both backends with ``?`` placeholders (sqlite3's qmark style),
turned into ``%s`` for psycopg.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

__all__ = ["MAX_MULTI_ROWS", "DriverInsert", "DriverSQL"]

_SQLITE: Final = sqlite.dialect()
_Processor = Callable[[Any], Any]
# (index, processor) for the positions whose type has one: most columns (ints, strings) have
# none, so a wide row is copied once and only its few dates and enums are converted.
_Processors = tuple[tuple[int, _Processor], ...]


def _bind_processors(types: Sequence[TypeEngine[Any]], dialect: Dialect) -> _Processors:
    found = (type_.dialect_impl(dialect).bind_processor(dialect) for type_ in types)
    return tuple((index, process) for index, process in enumerate(found) if process is not None)


def _result_processors(types: Sequence[TypeEngine[Any]], dialect: Dialect) -> _Processors:
    found = (type_.dialect_impl(dialect).result_processor(dialect, None) for type_ in types)
    return tuple((index, process) for index, process in enumerate(found) if process is not None)


def _converted(processors: _Processors, values: Sequence[Any]) -> Sequence[Any]:
    if not processors:
        return values
    converted = list(values)
    for index, process in processors:
        value = converted[index]
        if value is not None:
            converted[index] = process(value)
    return converted


def _driver_cursor(
    connection: Connection, sql: str, params: Sequence[Any], *, many: bool = False
) -> Any:
    """A DBAPI cursor of ``connection``'s driver connection after running ``sql``; a driver
    error is raised as the SQLAlchemy exception SQLAlchemy itself would raise (IntegrityError,
    OperationalError …), parameters hidden (they can hold personal data)."""
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
    except dialect.loaded_dbapi.Error as exc:
        cursor.close()
        raise DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
        ) from exc
    return cursor


class DriverSQL:
    """One hot-path statement (module docstring: why, and what stays SQLAlchemy's).

    ``binds`` gives each ``?``'s column (its type converts the value bound) and ``results``
    each selected column (its type converts the value read back). A statement with neither
    passes values through as the driver takes and gives them (ints, strings, bytes). The
    per-dialect processor plans are cached on the statement: one entry per dialect class the
    process uses (two at most: sqlite3 and psycopg), so the cache is bounded by construction.
    """

    __slots__ = ("_binds", "_format_sql", "_plans", "_qmark_sql", "_results")

    def __init__(
        self,
        sql: str,
        *,
        binds: Sequence[ColumnElement[Any]] = (),
        results: Sequence[ColumnElement[Any]] = (),
    ) -> None:
        assert "%" not in sql, "a literal % would need escaping for psycopg"
        assert not binds or sql.count("?") == len(binds), sql
        self._qmark_sql = sql
        self._format_sql = sql.replace("?", "%s")
        self._binds = tuple(column.type for column in binds)
        self._results = tuple(column.type for column in results)
        self._plans: dict[type[Dialect], tuple[_Processors, _Processors]] = {}

    def _plan(self, dialect: Dialect) -> tuple[_Processors, _Processors]:
        found = self._plans.get(type(dialect))
        if found is None:
            found = (
                _bind_processors(self._binds, dialect),
                _result_processors(self._results, dialect),
            )
            self._plans[type(dialect)] = found
        return found

    def _cursor(self, connection: Connection, params: Sequence[Any]) -> Any:
        dialect = connection.dialect
        sql = self._qmark_sql if dialect.paramstyle == "qmark" else self._format_sql
        return _driver_cursor(connection, sql, _converted(self._plan(dialect)[0], params))

    def execute(self, connection: Connection, params: Sequence[Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        cursor = self._cursor(connection, params)
        try:
            rowcount: int = cursor.rowcount
        finally:
            cursor.close()
        return rowcount

    def fetchone(self, connection: Connection, params: Sequence[Any]) -> Sequence[Any] | None:
        """The first row (values converted by the ``results`` columns' types), or None."""
        cursor = self._cursor(connection, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        return _converted(self._plan(connection.dialect)[1], row)

    def fetchall(self, connection: Connection, params: Sequence[Any]) -> list[Sequence[Any]]:
        """Every row (values converted by the ``results`` columns' types)."""
        cursor = self._cursor(connection, params)
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        processors = self._plan(connection.dialect)[1]
        return [_converted(processors, row) for row in rows]


# Rows one multi-row VALUES statement carries (above: executemany); also bounds the cache.
MAX_MULTI_ROWS: Final = 64


class DriverInsert:
    """A hot-path INSERT of ``columns`` into ``table`` on the driver's cursor (see
    :class:`DriverSQL`: same stored values, same exceptions, unseen by SQLAlchemy's events).

    With ``returning``, :meth:`insert_one` gives back the new row's generated integer
    primary key: PostgreSQL's ``INSERT … RETURNING``; on SQLite the cursor's ``lastrowid``
    (the key is an INTEGER PRIMARY KEY, i.e. the rowid), which spares fetching a result row
    and leaves no statement half-stepped on the cursor.
    """

    __slots__ = ("_multi_sql", "_plans", "_returning_sql", "_sql", "_types")

    def __init__(
        self, table: Table, columns: tuple[str, ...], *, returning: str | None = None
    ) -> None:
        self._types = tuple(table.c[name].type for name in columns)
        placeholders = ", ".join("?" for _ in columns)
        # Identifiers from the table definition and the code, never from input.
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
        # Keyed by paramstyle: sqlite3's qmark as written, psycopg's %s.
        self._sql = {"qmark": sql, "format": sql.replace("?", "%s")}
        # INSERT … VALUES (…), (…) for n rows, built once per (paramstyle, n): at most
        # 2 × MAX_MULTI_ROWS entries per statement, so bounded by construction.
        self._multi_sql: dict[tuple[str, int], str] = {}
        self._returning_sql: dict[str, str] = {}
        if returning is not None:
            key = table.c[returning]
            # lastrowid is the key only when the whole primary key is one column declared
            # INTEGER on SQLite (an alias of the rowid).
            assert list(table.primary_key.columns) == [key], returning
            assert key.type.compile(dialect=_SQLITE) == "INTEGER", returning
            self._returning_sql = {"format": f"{self._sql['format']} RETURNING {returning}"}
        self._plans: dict[type[Dialect], _Processors] = {}

    def _params(self, dialect: Dialect, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        processors = self._plans.get(type(dialect))
        if processors is None:
            processors = self._plans[type(dialect)] = _bind_processors(self._types, dialect)
        width = len(self._types)
        assert rows, "nothing to insert"
        assert all(len(row) == width for row in rows), "a row with the wrong number of values"
        return [_converted(processors, row) for row in rows]

    def execute(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (values in column order) in one statement.

        Up to :data:`MAX_MULTI_ROWS` rows go in one multi-row ``VALUES (…), (…)``: on
        PostgreSQL one round trip (psycopg's executemany enters pipeline mode, which for the
        few rows of a settle, its lines and ledger entries, cost more CPU than the statement
        itself); on SQLite one statement stepped once instead of once per row. More rows than
        that (a stay's hundreds of fee lines) go as one executemany.
        """
        dialect = connection.dialect
        params = self._params(dialect, rows)
        style = "qmark" if dialect.paramstyle == "qmark" else "format"
        if len(params) == 1:
            _driver_cursor(connection, self._sql[style], params[0]).close()
            return
        if len(params) > MAX_MULTI_ROWS:
            _driver_cursor(connection, self._sql[style], params, many=True).close()
            return
        key = (style, len(params))
        sql = self._multi_sql.get(key)
        if sql is None:
            mark = "?" if style == "qmark" else "%s"
            row = "(" + ", ".join(mark for _ in self._types) + ")"
            head = self._sql[style][: self._sql[style].rindex(" VALUES ")]
            sql = self._multi_sql[key] = f"{head} VALUES {', '.join([row] * len(params))}"
        _driver_cursor(connection, sql, [value for row in params for value in row]).close()

    def insert_one(self, connection: Connection, row: Sequence[Any]) -> int:
        """Insert one row (values in column order) and return its generated primary key."""
        assert self._returning_sql, "built without returning="
        dialect = connection.dialect
        (params,) = self._params(dialect, (row,))
        if dialect.name == "sqlite":
            cursor = _driver_cursor(connection, self._sql["qmark"], params)
            key = cursor.lastrowid
        else:
            cursor = _driver_cursor(connection, self._returning_sql["format"], params)
            (key,) = cursor.fetchone()
        cursor.close()
        assert isinstance(key, int), key
        return key
