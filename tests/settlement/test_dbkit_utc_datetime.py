"""dbkit.UtcDateTime on both backends: an instant handed in Beijing time is stored as UTC (on
SQLite the stored wall clock is UTC's, not Beijing's: the bug of the hub's setl_time), read
back as an aware UTC datetime, whichever way it was written (ORM/Core, DriverInsert, DriverSQL
binds); a naive datetime is refused before it reaches the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.exc import StatementError

from dbkit import BEIJING, DriverInsert, DriverSQL, NaiveDateTimeError, UtcDateTime, utc_instant

_PROBE = Table(
    "utc_probe",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime(), nullable=True),
)
_DRIVER_INSERT = DriverInsert(_PROBE, ("id", "at"))
_DRIVER_UPDATE = DriverSQL(
    "UPDATE utc_probe SET at = ? WHERE id = ?", binds=(_PROBE.c.at, _PROBE.c.id)
)
_DRIVER_READ = DriverSQL("SELECT at FROM utc_probe WHERE id = ?", results=(_PROBE.c.at,))
# 17:30 Beijing time, after 16:00: the same instant is 09:30 UTC, and the Beijing wall clock
# stored as if it were UTC would be an instant on the next Beijing day.
_BEIJING_AT = dt.datetime(2026, 12, 7, 17, 30, 15, 250000, tzinfo=BEIJING)
_UTC_AT = dt.datetime(2026, 12, 7, 9, 30, 15, 250000, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'utc.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    engine = create_engine(url)
    _PROBE.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _stored_utc_text(engine: Engine, row_id: int) -> str:
    """The value as the database holds it, read past the column type: SQLite's stored text;
    PostgreSQL's instant rendered in UTC."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sql = "SELECT at FROM utc_probe WHERE id = ?"
        else:
            sql = (
                "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') "
                "FROM utc_probe WHERE id = %s"
            )
        value = connection.exec_driver_sql(sql, (row_id,)).scalar_one()
    assert isinstance(value, str)
    return value


def _read(engine: Engine, row_id: int) -> dt.datetime | None:
    with engine.connect() as connection:
        return connection.execute(select(_PROBE.c.at).where(_PROBE.c.id == row_id)).scalar_one()


def test_a_beijing_instant_is_stored_as_utc_and_read_back_aware_utc(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(insert(_PROBE), [{"id": 1, "at": _BEIJING_AT}, {"id": 2, "at": None}])
        _DRIVER_INSERT.execute(connection, [(3, _BEIJING_AT)])
        _DRIVER_INSERT.execute(connection, [(4, None)])
        _DRIVER_UPDATE.execute(connection, [_BEIJING_AT, 4])
    for row_id in (1, 3, 4):
        assert _stored_utc_text(engine, row_id) == "2026-12-07 09:30:15.250000"
        read = _read(engine, row_id)
        assert read == _BEIJING_AT
        assert read is not None
        assert read.utcoffset() == dt.timedelta(0)
        assert read.tzinfo is dt.UTC
    assert _read(engine, 2) is None
    with engine.connect() as connection:
        (read,) = _DRIVER_READ.fetchone(connection, [3]) or [None]
    assert read == _UTC_AT
    assert read.tzinfo is dt.UTC


def test_a_query_bound_in_beijing_time_compares_as_the_instant(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(insert(_PROBE), [{"id": 1, "at": _UTC_AT}])
        # Strictly after 17:00 Beijing (09:00 UTC) and before 18:00 Beijing: a Beijing bound
        # compared as a wall clock against UTC text would miss the row.
        found = connection.execute(
            select(_PROBE.c.id).where(
                _PROBE.c.at > _BEIJING_AT.replace(minute=0),
                _PROBE.c.at < _BEIJING_AT.replace(hour=18, minute=0),
            )
        ).all()
    assert [row.id for row in found] == [1]


def test_a_naive_datetime_is_refused_on_every_write_path(engine: Engine) -> None:
    naive = dt.datetime(2026, 12, 7, 17, 30)
    with engine.begin() as connection:
        with pytest.raises(StatementError) as refused:
            connection.execute(insert(_PROBE), [{"id": 1, "at": naive}])
        assert isinstance(refused.value.orig, NaiveDateTimeError)
        assert "naive datetime 2026-12-07T17:30:00" in str(refused.value.orig)
        with pytest.raises(NaiveDateTimeError):
            _DRIVER_INSERT.execute(connection, [(2, naive)])
        with pytest.raises(NaiveDateTimeError):
            _DRIVER_UPDATE.execute(connection, [naive, 2])
        with pytest.raises(StatementError) as refused:
            connection.execute(select(_PROBE.c.id).where(_PROBE.c.at < naive)).all()
        assert isinstance(refused.value.orig, NaiveDateTimeError)
        assert connection.execute(select(_PROBE.c.id)).all() == []


def test_utc_instant_for_raw_driver_binds() -> None:
    assert utc_instant(_BEIJING_AT) == _UTC_AT
    assert utc_instant(_BEIJING_AT).tzinfo is dt.UTC
    with pytest.raises(NaiveDateTimeError, match="naive datetime"):
        utc_instant(dt.datetime(2026, 12, 7))
    with pytest.raises(TypeError, match="not date"):
        utc_instant(dt.date(2026, 12, 7))  # type: ignore[arg-type]
