"""Gateway fixtures: settings on a tmp data dir, a migrated database (SQLite, and PostgreSQL
under the ``postgres`` mark), a small terminal world, a fake clock, and an in-process client.
Helpers live in gateway_testkit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from dbtemplate import migrated_postgres, migrated_sqlite
from gateway_testkit import (
    HOSPITAL,
    OFF_TERMINAL,
    OK_TERMINAL,
    OTHER_TERMINAL,
    PHARMACY,
    SECRETS,
    Client,
    FakeClock,
    Signer,
    rejections,
)
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from gateway import migrate
from gateway.app import create_app
from gateway.db import make_engine
from gateway.routes import ROUTES
from gateway.routing import Route
from gateway.settings import Settings, load_settings
from gateway.store import Institution, Terminal


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, or, for a test that asks for ``migrated_engine`` (most do), one
    already migrated: a copy of a template migrated once per process (tests/dbtemplate.py)."""
    migrated = "migrated_engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "gateway.sqlite3"
        yield migrated_sqlite(path) if migrated else f"sqlite:///{path}"
    elif migrated:
        with migrated_postgres(request.getfixturevalue("postgres_url")) as url:
            yield url
    else:
        yield request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Parametrize this (indirectly, by name) to change settings for one test."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, db_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return load_settings(
        environ={}, overrides={"data_dir": tmp_path, "db_url": db_url, **settings_overrides}
    )


@pytest.fixture
def migrated_engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    migrate.check_schema_current(engine)  # db_url copied it from a migrated template
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    """Migrated, with a hospital and a pharmacy, two enabled terminals and a disabled one."""
    terminals = [
        (OK_TERMINAL, HOSPITAL, True),
        (OTHER_TERMINAL, PHARMACY, True),
        (OFF_TERMINAL, HOSPITAL, False),
    ]
    with Session(migrated_engine) as session, session.begin():
        session.execute(
            insert(Institution),
            [
                {"code": HOSPITAL, "name": "Test Hospital", "kind": "hospital", "level": 3},
                {"code": PHARMACY, "name": "Test Pharmacy", "kind": "pharmacy", "level": None},
            ],
        )
        session.execute(
            insert(Terminal),
            [
                {"terminal_id": t, "institution_code": i, "secret": SECRETS[t], "enabled": e}
                for t, i, e in terminals
            ],
        )
    return migrated_engine


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def extra_routes() -> Sequence[Route]:
    """Routes added to the app for one test module (errors raised on purpose, slow handlers)."""
    return ()


@pytest.fixture
def app(
    settings: Settings, engine: Engine, clock: FakeClock, extra_routes: Sequence[Route]
) -> web.Application:
    return create_app(settings, routes=(*ROUTES, *extra_routes), clock=clock)


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def signer(client: Client, clock: FakeClock) -> Signer:
    return Signer(client, clock)


@pytest.fixture
def rejection_delta() -> Callable[[str], Callable[[], float]]:
    """``delta = rejection_delta("CODE")`` … ``assert delta() == 1``."""

    def start(code: str) -> Callable[[], float]:
        before = rejections(code)
        return lambda: rejections(code) - before

    return start
