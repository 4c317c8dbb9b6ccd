"""Issuance fixtures: a database migrated by Alembic (the real schema) on the gateway's engine
(SQLite WAL, or PostgreSQL under the ``postgres`` mark), with one agent per role and a few
demo holders with their legacy cards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbtemplate import migrated_postgres, migrated_sqlite
from issuance_testkit import load_agents
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from gateway import migrate
from gateway.card_auth.demo_cards import demo_card_rows, demo_holder_row
from gateway.db import for_writes, make_engine
from gateway.settings import load_settings
from issuance.production import InMemoryPersonaliser, IssuingCa, demo_issuing_ca
from issuance.programme import Programme, default_programme
from issuance.store import Card, Cardholder, metadata
from sscard import demo as sd


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = migrated_sqlite(tmp_path / "issuance.sqlite3")
        else:
            url = stack.enter_context(migrated_postgres(request.getfixturevalue("postgres_url")))
        yield from _loaded(url, tmp_path)


def _loaded(url: str, tmp_path: Path) -> Iterator[Engine]:
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path, "db_url": url})
    engine = make_engine(settings)
    migrate.check_schema_current(engine)  # a copy of a template migrated once per process
    with Session(engine) as session, session.begin():
        load_agents(session)
        session.execute(
            metadata.tables[Cardholder.__tablename__].insert(),
            [demo_holder_row(sd.DEFAULT_DEMO_SEED, h) for h in range(20)],
        )
        session.execute(metadata.tables[Card.__tablename__].insert(), demo_card_rows(range(40)))
        if engine.dialect.name == "postgresql":
            # The demo rows carry explicit ids; move the sequence past them.
            session.execute(text("SELECT setval(pg_get_serial_sequence('cardholders', 'id'), 20)"))
    yield for_writes(engine)
    engine.dispose()


@pytest.fixture
def programme() -> Programme:
    return default_programme()


@pytest.fixture
def ca() -> IssuingCa:
    return demo_issuing_ca(sd.DEFAULT_DEMO_SEED)


@pytest.fixture
def personaliser() -> InMemoryPersonaliser:
    return InMemoryPersonaliser()
