"""dbkit.DriverInsert on both backends: one row, a few rows (PostgreSQL: one
multi-row VALUES statement), and more rows than one such statement carries (executemany) all
store exactly the converted values, in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    select,
)

from dbkit import MAX_MULTI_ROWS as _MAX_MULTI_ROWS
from dbkit import DriverInsert

_PROBE = Table(
    "driver_insert_probe",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("label", String(20), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=True),
)
_INSERT = DriverInsert(_PROBE, ("label", "amount_fen", "at"))
_AT = dt.datetime(2026, 11, 27, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'probe.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    engine = create_engine(url)
    _PROBE.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("count", [1, 3, _MAX_MULTI_ROWS, _MAX_MULTI_ROWS + 7])
def test_rows_are_stored_exactly_and_in_order(engine: Engine, count: int) -> None:
    rows = [(f"row-{n}", n * 101, None if n % 3 else _AT) for n in range(count)]
    with engine.begin() as connection:
        _INSERT.execute(connection, rows)
    with engine.connect() as connection:
        stored = connection.execute(
            select(_PROBE.c.label, _PROBE.c.amount_fen, _PROBE.c.at).order_by(_PROBE.c.id)
        ).all()
    assert [(label, amount) for label, amount, _at in stored] == [(r[0], r[1]) for r in rows]
    # Datetimes went through the column's own conversion (SQLite keeps them naive UTC text).
    assert [at is None for _l, _a, at in stored] == [r[2] is None for r in rows]
    for _l, _a, at in stored:
        if at is not None:
            assert (at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)) == _AT
