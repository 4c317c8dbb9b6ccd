"""Suite-wide test configuration."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cikit import fail_or_skip
from pgschema import fresh_schema_url

# tests/ holds shared helpers (vectors.py); make them importable without a package __init__.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The repository root goes in front of it: tests/gateway, tests/issuance … have no __init__, so
# with only tests/ on the path `import issuance` would find the test folder as a namespace
# package (issuance.__file__ None) before the editable install's finder runs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# --- PostgreSQL (shared: any package's store tests may use it) ----------------------------------

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL server's SQLAlchemy URL. Unreachable: FAIL under CI (the
    server is part of CI's contract), otherwise skip with the reason in the summary."""
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(POSTGRES_URL).set(drivername="postgresql")
    try:
        psycopg.connect(conninfo.render_as_string(hide_password=False), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {conninfo.render_as_string()} is unreachable: {exc}"
        fail_or_skip(f"POSTGRES TESTS: {reason}")
    return POSTGRES_URL


@pytest.fixture(scope="session", autouse=True)
def _test_databases_dropped() -> Iterator[None]:
    """The migrated copies of tests/dbtemplate.py are dropped in the background; wait for
    the last of them, and drop the templates, when this process's tests are done."""
    yield
    import dbtemplate

    dbtemplate.finish()


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose connections live in a fresh schema of their own, dropped after the test."""
    with fresh_schema_url(postgres_url) as url:
        yield url
