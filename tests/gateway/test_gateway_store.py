"""Schema by migration, the replay guard's constraint, nonce expiry, and the DB seam."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from gateway_testkit import OK_TERMINAL, FakeClock, Signer, nonce_count
from sqlalchemy import Column, Engine, Integer, MetaData, Table, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import migrate, store
from gateway.app import create_app
from gateway.cli import main
from gateway.db import Database, make_engine
from gateway.housekeeping import sweep_expired_nonces
from gateway.settings import Settings, load_settings
from gateway.state import DATABASE


def test_migrations_build_exactly_the_models(migrated_engine: Engine):
    heads = migrate.expected_heads()
    assert migrate.current_revisions(migrated_engine) == heads
    with migrated_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        # Every MetaData the gateway serves, not only its own tables.
        assert compare_metadata(context, migrate.target_metadata()) == []  # type: ignore[arg-type]
    tables = set(inspect(migrated_engine).get_table_names())
    assert {"institutions", "terminals", "request_nonces", "alembic_version"} <= tables


def test_upgrade_twice_is_a_no_op(migrated_engine: Engine):
    assert migrate.upgrade(migrated_engine) == migrate.expected_heads()


def test_target_metadata_is_a_list_for_every_source():
    assert migrate.target_metadata() == [s.metadata for s in migrate.MIGRATION_SOURCES]
    assert migrate.MIGRATION_SOURCES[0].name == "gateway"
    assert migrate.MIGRATION_SOURCES[0].metadata is store.metadata


def test_unmigrated_database_is_refused(settings: Settings):
    engine = make_engine(settings)
    try:
        with pytest.raises(migrate.SchemaNotCurrent, match="python -m gateway db upgrade"):
            migrate.check_schema_current(engine)
    finally:
        engine.dispose()


async def test_app_will_not_start_on_an_unmigrated_database(settings: Settings):
    server = TestServer(create_app(settings))
    with pytest.raises(migrate.SchemaNotCurrent):
        await server.start_server()
    await server.close()


def test_nonce_pair_is_unique_in_the_database(engine: Engine):
    with Session(engine) as session, session.begin():
        store.consume_nonce(session, OK_TERMINAL, "n" * 16, 100)
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        store.consume_nonce(session, OK_TERMINAL, "n" * 16, 200)
    assert nonce_count(engine) == 1


async def test_expired_nonces_are_swept_in_bounded_batches(engine: Engine, settings: Settings):
    with Session(engine) as session, session.begin():
        for i in range(25):
            store.consume_nonce(session, OK_TERMINAL, f"nonce-{i:012d}", 1000 + i)
    db = Database(engine, threads=2)
    try:
        deleted = await db.write(partial(store.delete_expired_nonces, now_s=1010, limit=3))
        assert deleted == 3
        # Expired means expires_at_s < now: 1000..1009 are expired, 1010.. are not.
        assert await sweep_expired_nonces(db, 1010, batch=3) == 7
        assert nonce_count(engine) == 15
        assert await sweep_expired_nonces(db, 10**9, batch=4) == 15
    finally:
        db.close()


async def test_a_replay_after_the_nonce_expired_is_stopped_by_the_clock(
    engine: Engine, signer: Signer, clock: FakeClock
):
    # The nonce may be forgotten only once its timestamp is outside the skew window anyway.
    nonce = "expiring-nonce-0123456789"
    sent_at = int(clock.now_s)
    assert (await signer.post(nonce=nonce, timestamp=sent_at)).status == 200
    clock.now_s += 121  # nonce_ttl_s = 120 has passed
    db = signer.client.app[DATABASE]
    assert await sweep_expired_nonces(db, clock(), batch=100) == 1
    response = await signer.post(nonce=nonce, timestamp=sent_at)
    assert (await response.json(content_type=None))["code"] == "TIMESTAMP_SKEW"


async def test_units_of_work_run_on_the_bounded_pool(engine: Engine):
    db = Database(engine, threads=2)
    seen: set[str] = set()
    lock = threading.Lock()

    def unit(session: Session) -> int:
        with lock:
            seen.add(threading.current_thread().name)
        return session.execute(text("SELECT 1")).scalar_one()

    try:
        assert await asyncio.gather(*(db.read(unit) for _ in range(20))) == [1] * 20
        assert seen
        assert all(name.startswith("db") for name in seen)
        assert len(seen) <= 2
    finally:
        db.close()


async def test_a_failing_unit_rolls_back(engine: Engine):
    db = Database(engine, threads=1)

    def unit(session: Session) -> None:
        store.consume_nonce(session, OK_TERMINAL, "rolled-back-nonce-01", 1)
        raise ValueError("changed my mind")

    try:
        with pytest.raises(ValueError, match="changed my mind"):
            await db.write(unit)
        assert nonce_count(engine) == 0
    finally:
        db.close()


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path):
    engine = make_engine(load_settings(environ={}, overrides={"data_dir": tmp_path / "new"}))
    assert (tmp_path / "new").is_dir()  # created for the embedded database
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_cli_db_upgrade_and_current(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    args = ["--db", db_url, "--data-dir", str(tmp_path)]
    assert main(["db", "current", *args]) == 1
    assert "no revision" in capsys.readouterr().out
    assert main(["db", "upgrade", *args]) == 0
    heads = ", ".join(sorted(migrate.expected_heads()))
    assert f"schema at {heads}" in capsys.readouterr().out
    assert main(["db", "current", *args]) == 0
    assert f"{heads}: current" in capsys.readouterr().out


async def test_readyz_against_the_real_database(engine: Engine, settings: Settings):
    async with TestClient(TestServer(create_app(settings))) as client:
        assert (await client.get("/readyz")).status == 200


def test_replicas_migrating_at_once_do_not_collide(settings: Settings):
    engines = [make_engine(settings) for _ in range(3)]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(migrate.upgrade, engines))
        assert results == [migrate.expected_heads()] * 3
    finally:
        for engine in engines:
            engine.dispose()


def test_a_second_metadata_gets_its_own_branch(
    migrated_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """How settlement or issuance plug in: their own MetaData, versions folder and branch."""
    extra = MetaData()
    Table("extra_things", extra, Column("id", Integer, primary_key=True))
    source = migrate.MigrationSource("extra", extra, tmp_path / "extra_versions")
    before = migrate.expected_heads()
    monkeypatch.setattr(migrate, "MIGRATION_SOURCES", (*migrate.MIGRATION_SOURCES, source))
    assert migrate.target_metadata()[0] is store.metadata
    assert migrate.target_metadata()[-1] is extra

    path = migrate.create_revision(
        migrated_engine, "extra things", branch="extra", autogenerate=True
    )
    assert path.parent == tmp_path / "extra_versions"
    assert "extra_things" in path.read_text()
    assert "institutions" not in path.read_text()  # the gateway's tables are not its business
    with pytest.raises(migrate.SchemaNotCurrent):
        migrate.check_schema_current(migrated_engine)

    heads = migrate.upgrade(migrated_engine)
    assert len(heads) == len(before) + 1
    assert before < heads
    migrate.check_schema_current(migrated_engine)
    assert "extra_things" in inspect(migrated_engine).get_table_names()
    with migrated_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, migrate.target_metadata()) == []  # type: ignore[arg-type]


def test_processes_opening_a_new_sqlite_file_at_once_all_get_wal(tmp_path: Path):
    # Switching to WAL takes an exclusive lock without SQLite's busy handler: without the retry
    # in gateway.db, about one open in five failed here with "database is locked".
    for attempt in range(10):
        settings = load_settings(environ={}, overrides={"data_dir": tmp_path / str(attempt)})
        engines = [make_engine(settings) for _ in range(6)]
        barrier = threading.Barrier(len(engines))

        def open_one(engine: Engine, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            with engine.connect() as connection:
                return str(connection.exec_driver_sql("PRAGMA journal_mode").scalar())

        try:
            with ThreadPoolExecutor(max_workers=len(engines)) as pool:
                assert list(pool.map(open_one, engines)) == ["wal"] * len(engines)
        finally:
            for engine in engines:
                engine.dispose()
