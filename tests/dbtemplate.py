"""Migrated databases for tests, copied from a template migrated once per test process.

Running every migration for every test was about a quarter of the suite: ~0.1 s on SQLite and
~0.5 s on PostgreSQL (some 450 DDL round trips, then DROP SCHEMA … CASCADE), thousands of
times. Here the migrations run once per process (per pytest-xdist worker) into a template:

- SQLite: a file, copied to the test's own path (a millisecond);
- PostgreSQL: a database, cloned by ``CREATE DATABASE … TEMPLATE`` (~40 ms) and dropped after
  the test with ``WITH (FORCE)``, so a connection the test left open cannot keep it alive.
  DROP DATABASE waits for a checkpoint (0.05 s on a quiet server, 3-5 s measured while the
  other worker wrote), so the drops run on a thread of their own while the next tests run;
  :func:`finish` (a session fixture in tests/conftest.py) waits for them and drops the
  templates.

The copy is the migrated schema byte for byte (seed rows included), so what a test sees is what
``migrate.upgrade`` on an empty database gives; tests of the migrations themselves still run
them (they do not use this module). A server where the test user may not create databases
falls back to a fresh schema migrated in place (tests/pgschema.py), as before.
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from pgschema import fresh_schema_url

_sqlite_template: dict[str, Path] = {}  # "template" -> this process's migrated file
_postgres_template: dict[str, str | None] = {}  # server URL -> template database (None: no right)
_to_drop: queue.Queue[tuple[str, str] | None] = queue.Queue()
_dropper: list[threading.Thread] = []


def _upgrade(url: str, data_dir: Path) -> None:
    from gateway import migrate
    from gateway.db import make_engine
    from gateway.settings import load_settings

    settings = load_settings(environ={}, overrides={"data_dir": data_dir, "db_url": url})
    engine = make_engine(settings)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def migrated_sqlite(path: Path) -> str:
    """A migrated SQLite database at ``path`` (which must not exist yet); its URL."""
    if not _sqlite_template:
        folder = Path(tempfile.mkdtemp(prefix="ssc-sqlite-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = folder / "template.sqlite3"
        _upgrade(f"sqlite:///{template}", folder)
        _sqlite_template["template"] = template
    shutil.copyfile(_sqlite_template["template"], path)
    return f"sqlite:///{path}"


def _conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _postgres_template_of(postgres_url: str) -> str | None:
    """This process's migrated template database on that server (made on first use), or None
    where the test user may not create databases."""
    if postgres_url in _postgres_template:
        return _postgres_template[postgres_url]
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"ssc_tmpl_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(_conninfo(postgres_url), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.errors.InsufficientPrivilege:
        _postgres_template[postgres_url] = None
        return None
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    _upgrade(url, Path(tempfile.gettempdir()))
    _postgres_template[postgres_url] = name
    return name


def _drop_database(postgres_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_conninfo(postgres_url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def migrated_postgres(postgres_url: str) -> Iterator[str]:
    """The URL of a migrated PostgreSQL database of the test's own, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    template = _postgres_template_of(postgres_url)
    if template is None:
        with fresh_schema_url(postgres_url) as url:
            _upgrade(url, Path(tempfile.gettempdir()))
            yield url
        return
    name = f"ssc_t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_conninfo(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_later(postgres_url, name)


def _drop_later(postgres_url: str, name: str) -> None:
    if not _dropper:
        _dropper.append(threading.Thread(target=_drop_queued, name="drop-test-dbs", daemon=True))
        _dropper[0].start()
    _to_drop.put((postgres_url, name))


def _drop_queued() -> None:
    while (item := _to_drop.get()) is not None:
        with contextlib.suppress(Exception):  # a failed drop leaves a database, not a failure
            _drop_database(*item)


def finish() -> None:
    """Drop the test databases still queued, then this process's templates."""
    if _dropper:
        _to_drop.put(None)
        _dropper.pop().join()
    for postgres_url, template in list(_postgres_template.items()):
        if template is not None:
            _drop_database(postgres_url, template)
    _postgres_template.clear()
