"""Demo credentials only in the demo world: with ``demo_world = "auto"`` the demo PKI, the demo
legacy master key, the demo ops token and the demo parts are used only in a database created
as the demo world (the marker its loading writes) or loaded now into an EMPTY embedded one. A
database that holds anything else, SQLite or not, never turns into the demo world. The demo
ops token's file is named in the log, the token never."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from gateway_testkit import FakeClock, Signer, assert_problem
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from gateway.app import create_app
from gateway.card_auth.service import key_manager_from_settings, trust_anchors_from_settings
from gateway.card_auth.tables import GatewaySecret
from gateway.demo import DEMO_MARKER, resolve_demo_world
from gateway.logs import configure_logging
from gateway.ops.access import OPS_TOKEN_FILE, resolve_ops_access
from gateway.settings import Settings
from gateway.store import Institution, Terminal
from sscard import demo as sd
from sscard import terminal_auth as ta


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _marked(engine: Engine) -> bool:
    return _count(engine, GatewaySecret, GatewaySecret.name == DEMO_MARKER) == 1


def test_an_empty_database_becomes_the_demo_world_only_if_embedded(
    migrated_engine: Engine, settings: Settings
):
    assert settings.demo_world == "auto"
    resolved = resolve_demo_world(migrated_engine, settings)
    if settings.is_embedded_db:
        assert resolved.demo_world == "on"
        assert _marked(migrated_engine)
        assert _count(migrated_engine, Terminal) >= ta.DEMO_TERMINAL_COUNT
    else:  # PostgreSQL: never by "auto", empty or not
        assert resolved.demo_world == "off"
        assert not _marked(migrated_engine)
        assert _count(migrated_engine, Terminal) == 0
        assert trust_anchors_from_settings(resolved) is None


def test_a_database_holding_anything_else_never_becomes_the_demo_world(
    engine: Engine, settings: Settings
):
    # ``engine`` holds two real institutions and their terminals, and no marker.
    before = _count(engine, Terminal)
    resolved = resolve_demo_world(engine, settings)
    assert resolved.demo_world == "off"
    assert not resolved.should_load_demo_world()
    assert _count(engine, Terminal) == before  # no demo part loaded beside the real ones
    assert _count(engine, Institution) == 2
    assert not _marked(engine)
    # Nothing demo is trusted: no PKI, no legacy master key, no ops token.
    assert trust_anchors_from_settings(resolved) is None
    assert key_manager_from_settings(resolved) is None
    access, created = resolve_ops_access(resolved)
    assert created is None
    assert not (settings.data_dir / OPS_TOKEN_FILE).exists()
    assert "none" in access.source


def test_a_demo_world_loaded_before_markers_is_recognised(
    migrated_engine: Engine, settings: Settings
):
    if not settings.is_embedded_db:
        settings = settings.model_copy(update={"demo_world": "on"})
    resolve_demo_world(migrated_engine, settings)
    with Session(migrated_engine) as session, session.begin():
        session.execute(delete(GatewaySecret).where(GatewaySecret.name == DEMO_MARKER))
    # Its first demo terminal holds the seed's secret: only the demo loader writes that.
    auto = settings.model_copy(update={"demo_world": "auto"})
    assert resolve_demo_world(migrated_engine, auto).demo_world == "on"
    assert _marked(migrated_engine)


async def test_an_app_on_an_unmarked_database_trusts_no_demo_key(
    engine: Engine, settings: Settings, clock: FakeClock
):
    """In process, "auto" on a SQLite database that was not created as the demo world: a
    legacy card answered with the demo master key cannot authenticate."""
    app = create_app(settings, clock=clock)
    async with TestClient(TestServer(app)) as client:
        signer = Signer(client, clock)
        card = sd.demo_card(settings.demo_seed, 11)  # a legacy card of the demo world
        response = await signer.post(
            "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 2}
        )
        await assert_problem(response, 503, "CARD_AUTH_UNAVAILABLE")
        response = await signer.post(
            "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
        )
        await assert_problem(response, 503, "CARD_AUTH_UNAVAILABLE")


@pytest.mark.parametrize("settings_overrides", [{"demo_world": "on", "log_format": "json"}])
async def test_the_demo_ops_token_file_is_logged_never_the_token(
    engine: Engine, settings: Settings, clock: FakeClock, capfd: pytest.CaptureFixture[str]
):
    configure_logging("json", "INFO")
    try:
        app = create_app(settings, clock=clock)
        async with TestClient(TestServer(app)):
            pass
    finally:
        logging.getLogger().handlers.clear()
    token = (settings.data_dir / OPS_TOKEN_FILE).read_text(encoding="ascii").strip()
    logged = capfd.readouterr().err
    assert token not in logged
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    created = [line for line in lines if "ops dashboard token" in line["event"]]
    assert created, logged
    assert str(Path(settings.data_dir) / OPS_TOKEN_FILE) in json.dumps(created, ensure_ascii=False)
