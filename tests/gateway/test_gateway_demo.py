"""DEMO ONLY world: deterministic, idempotent, fast, and usable by any tool from the seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from gateway_testkit import FakeClock, Signer, counted_statements
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.app import create_app
from gateway.demo import DEMO_PARTS, demo_institutions, demo_terminals, load_demo_world
from gateway.settings import Settings, load_settings
from gateway.store import Institution, Terminal
from sscard.terminal_auth import demo_terminal

SEED = "test-seed"
TERMINALS = DEMO_PARTS[:1]
# A load sends a handful of statements per part (each an executemany of all its rows), never
# one per row: a load that went row by row would send thousands.
MAX_LOAD_STATEMENTS = 30


def test_world_shape():
    institutions = demo_institutions()
    kinds = Counter(row["kind"] for row in institutions)
    assert kinds == {"hospital": 400, "pharmacy": 800}
    levels = Counter(row["level"] for row in institutions if row["kind"] == "hospital")
    assert set(levels) == {1, 2, 3}
    assert all(row["level"] is None for row in institutions if row["kind"] == "pharmacy")
    assert all(len(row["code"]) == 12 for row in institutions)
    terminals = demo_terminals(SEED)
    assert len(terminals) == 2400
    per_institution = Counter(row["institution_code"] for row in terminals)
    assert set(per_institution.values()) == {2}


def test_world_is_deterministic_from_the_seed():
    assert demo_terminals(SEED) == demo_terminals(SEED)
    other = demo_terminals("another-seed")
    assert [t["terminal_id"] for t in other] == [t["terminal_id"] for t in demo_terminals(SEED)]
    assert all(a["secret"] != b["secret"] for a, b in zip(other, demo_terminals(SEED), strict=True))


def test_load_is_batched_idempotent_and_matches_the_derivation(migrated_engine: Engine):
    # The cards part has its own test (test_card_auth_demo.py). Its speed is the demo bench's
    # (python -m loadtest.bench demo); here, that 3,600 rows go in batches, not one by one.
    with counted_statements(migrated_engine) as statements:
        loaded = load_demo_world(migrated_engine, SEED, TERMINALS)
    assert loaded == {"institutions_and_terminals": 3600}
    assert len(statements) <= MAX_LOAD_STATEMENTS, len(statements)  # 5 today
    assert load_demo_world(migrated_engine, SEED, TERMINALS) == {"institutions_and_terminals": 0}
    with Session(migrated_engine) as session:
        assert session.execute(select(func.count()).select_from(Terminal)).scalar_one() == 2400
        for n in (0, 1, 799, 800, 2399):
            terminal_id, secret = demo_terminal(SEED, n)
            row = session.get(Terminal, terminal_id)
            assert row is not None
            assert row.secret == secret
            assert row.enabled


def test_never_mixed_into_a_database_with_real_institutions(engine: Engine):
    # The `engine` fixture already holds two (test) institutions.
    assert load_demo_world(engine, SEED) == {
        "institutions_and_terminals": 0,
        "issuing_institutions": 0,
        "cardholders_and_cards": 0,
        "settlement_persons": 0,
        "crossprov_persons": 0,
        "fsi_operators": 0,
    }
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Institution)).scalar_one() == 2


def test_extension_point_runs_parts_in_order(migrated_engine: Engine):
    calls: list[str] = []

    class Cards:
        name = "cards"

        def is_loaded(self, session: Session) -> bool:
            calls.append("is_loaded")
            # Runs after the terminals part, in its own transaction.
            return session.execute(select(func.count()).select_from(Terminal)).scalar_one() == 0

        def load(self, session: Session, seed: str) -> int:
            calls.append(f"load:{seed}")
            return 7

    assert load_demo_world(migrated_engine, SEED, (*TERMINALS, Cards())) == {
        "institutions_and_terminals": 3600,
        "cards": 7,
    }
    assert calls == ["is_loaded", f"load:{SEED}"]


@pytest.mark.parametrize(
    ("db_url", "demo_world", "expected"),
    [
        # "auto" is decided per database at start-up (gateway.demo.resolve_demo_world).
        ("", "auto", False),
        ("postgresql+psycopg://gw@db/gw", "auto", False),
        ("postgresql+psycopg://gw@db/gw", "on", True),
        ("", "off", False),
    ],
)
def test_auto_loads_only_into_the_embedded_database(
    tmp_path: Path, db_url: str, demo_world: str, expected: bool
):
    settings = load_settings(
        environ={}, overrides={"data_dir": tmp_path, "db_url": db_url, "demo_world": demo_world}
    )
    assert settings.should_load_demo_world() is expected


async def test_any_tool_can_act_as_demo_terminal_n(migrated_engine: Engine, settings: Settings):
    load_demo_world(migrated_engine, settings.demo_seed, TERMINALS)
    clock = FakeClock()
    async with TestClient(TestServer(create_app(settings, clock=clock))) as client:
        terminal_id, secret = demo_terminal(settings.demo_seed, 1234)
        response = await Signer(client, clock, terminal_id, secret).post()
        assert response.status == 200
        assert (await response.json())["terminal_id"] == terminal_id


def test_one_demo_seed_for_terminals_and_cards(tmp_path: Path):
    from sscard.demo import DEFAULT_DEMO_SEED

    assert load_settings(environ={}, overrides={"data_dir": tmp_path}).demo_seed == (
        DEFAULT_DEMO_SEED
    )
