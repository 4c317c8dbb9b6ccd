"""Integration fixtures: the database a `gateway serve` under test runs on.

The serve-level tests run on the embedded SQLite (the default) and on PostgreSQL, each
PostgreSQL run in a fresh schema of its own on the test server (tests/conftest.py), with the
demo world switched on explicitly (it loads itself only into an embedded database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgschema import fresh_schema_url

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    with fresh_schema_url(postgres_url) as url:
        yield {"GATEWAY_DB_URL": url, "GATEWAY_DEMO_WORLD": "on"}


@pytest.fixture(params=DATABASES)
def serve_db_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """GATEWAY_* variables that put `gateway serve` on this test's database."""
    yield from _env(request)


@pytest.fixture(scope="module", params=DATABASES)
def module_serve_db_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The same, for a module that shares one gateway between its tests."""
    yield from _env(request)
