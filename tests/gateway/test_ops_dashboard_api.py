"""The /ops page and /v1/ops/summary over HTTP, in process: the ops bearer token (missing,
wrong, not configured, the demo token file), security and cache headers, date validation, and
figures that match the database with no personal data in them."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from gateway_testkit import Client, FakeClock, Signer, assert_problem
from settlement_api_testkit import (
    OUTPATIENT_LINES,
    TODAY,
    Till,
    assert_ledger_balanced,
    load_insured_world,
    outpatient,
)
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dbkit import BEIJING
from gateway.app import create_app
from gateway.ops.access import OPS_TOKEN_FILE, _demo_token, resolve_ops_access
from gateway.ops.guard import REFILL_S, WRONG_TOKENS_ALLOWED, WrongTokenGuard, client_key
from gateway.ops.routes import CONTENT_SECURITY_POLICY
from gateway.settings import Settings, SettingsError, load_settings
from settlement.money import format_yuan
from settlement.store import InsuredPersonRow, SettlementRow, SettlementStatus

TOKEN = "ops-test-token-" + "x" * 32
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on", "ops_token": TOKEN}


@pytest.fixture
def world(engine: Engine) -> Iterator[Engine]:
    load_insured_world(engine)
    yield engine
    assert_ledger_balanced(engine)


async def _summary(client: Client, query: str = "", **headers: str) -> Any:
    return await client.get(f"/v1/ops/summary{query}", headers=headers)


# --- the static page ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/ops", "text/html"),
        ("/ops/static/ops.js", "text/javascript"),
        ("/ops/static/ops.css", "text/css"),
        ("/ops/static/favicon.svg", "image/svg+xml"),
    ],
)
async def test_static_parts_are_served_with_strict_headers(
    client: Client, path: str, media_type: str
):
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == media_type
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-cache"
    etag = response.headers["ETag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""


async def test_page_loads_nothing_from_elsewhere_and_runs_no_inline_script(client: Client):
    html = await (await client.get("/ops")).text()
    assert "http://" not in html
    assert "https://" not in html
    assert '<script src="/ops/static/ops.js" defer></script>' in html
    assert html.count("<script") == 1  # CSP script-src 'self': an inline one would not run
    assert "style=" not in html  # nor would inline styles
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "form-action 'none'" in CONTENT_SECURITY_POLICY
    js = await (await client.get("/ops/static/ops.js")).text()
    # Values go in through textContent only: nothing from the data is parsed as HTML.
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js
    assert "http://" not in js
    assert "https://" not in js  # it talks to its own origin only (connect-src 'self')


# --- the token ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", f"Basic {TOKEN}", "Bearer wrong-token-" + "y" * 32, f"Bearer {TOKEN}x"],
)
async def test_missing_or_wrong_token_is_401_problem(
    client: Client,
    authorization: str | None,
    rejection_delta: Callable[[str], Callable[[], float]],
):
    delta = rejection_delta("OPS_UNAUTHORIZED")
    headers = {} if authorization is None else {"Authorization": authorization}
    body = await assert_problem(await _summary(client, **headers), 401, "OPS_UNAUTHORIZED")
    assert TOKEN not in str(body)
    assert delta() == 1


async def test_challenge_names_the_bearer_scheme_and_the_token_is_checked_before_the_date(
    client: Client,
):
    response = await _summary(client, "?date=nonsense")
    await assert_problem(response, 401, "OPS_UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ssc-ops"'


async def test_scheme_is_case_insensitive(client: Client):
    response = await _summary(client, Authorization=f"bearer {TOKEN}")
    assert response.status == 200


async def test_no_token_configured_refuses_everyone(
    settings: Settings, engine: Engine, clock: FakeClock
):
    bare = settings.model_copy(update={"ops_token": "", "demo_world": "off"})
    async with TestClient(TestServer(create_app(bare, clock=clock))) as client:
        for headers in ({}, BEARER, {"Authorization": "Bearer "}):
            body = await assert_problem(await _summary(client, **headers), 401, "OPS_UNAUTHORIZED")
            assert "no ops_token is configured" in body["detail"]
    assert not (settings.data_dir / OPS_TOKEN_FILE).exists()


async def test_demo_world_makes_one_token_file_and_keeps_it(
    settings: Settings, engine: Engine, clock: FakeClock
):
    demo = settings.model_copy(update={"ops_token": "", "demo_world": "on"})
    path = demo.data_dir / OPS_TOKEN_FILE
    assert not path.exists()
    async with TestClient(TestServer(create_app(demo, clock=clock))) as client:
        token = path.read_text().strip()
        assert len(token) >= 32
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        ok = await _summary(client, Authorization=f"Bearer {token}")
        assert ok.status == 200
        await assert_problem(await _summary(client, **BEARER), 401, "OPS_UNAUTHORIZED")
    # A restart (or another worker) reuses the same token, and does not announce it again.
    access, created = resolve_ops_access(demo)
    assert created is None
    assert path.read_text().strip() == token
    assert access.source.startswith("DEMO ONLY")
    assert sorted(p.name for p in path.parent.iterdir() if "ops-token" in p.name) == [
        OPS_TOKEN_FILE
    ]


def test_workers_starting_at_once_agree_on_one_demo_token(tmp_path: Path):
    """Eight threads race to make the file (as N workers do): one wins, all read its token,
    and no half-written file or leftover candidate is ever seen."""
    path = tmp_path / "var" / OPS_TOKEN_FILE
    start = threading.Barrier(8)

    def race(_: int) -> tuple[str, bool]:
        start.wait()
        return _demo_token(path)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(race, range(8)))
    assert len({token for token, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert [p.name for p in path.parent.iterdir()] == [OPS_TOKEN_FILE]


def test_a_configured_token_wins_and_short_tokens_are_refused_unechoed(tmp_path: Path):
    settings = load_settings(environ={"GATEWAY_OPS_TOKEN": TOKEN}, overrides={"data_dir": tmp_path})
    access, created = resolve_ops_access(settings)
    assert created is None
    assert access.source == "the ops_token setting"
    access.check(f"Bearer {TOKEN}")
    assert not (tmp_path / OPS_TOKEN_FILE).exists()
    for bad in ("short-secret", "has space " + "z" * 40):
        with pytest.raises(SettingsError) as caught:
            load_settings(environ={"GATEWAY_OPS_TOKEN": bad}, overrides={"data_dir": tmp_path})
        assert bad not in str(caught.value)
        assert "GATEWAY_OPS_TOKEN" in str(caught.value) or "ops_token" in str(caught.value)


# --- the summary --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "?date=2027-1-15",
        "?date=yesterday",
        "?date=1999-12-31",
        "?date=2027-01-17",
        "?date=0001-01-01",
    ],
)
async def test_bad_dates_are_422(client: Client, query: str):
    await assert_problem(await _summary(client, query, **BEARER), 422, "VALIDATION_FAILED")


async def test_summary_matches_the_database_and_carries_no_personal_data(
    signer: Signer, world: Engine, client: Client
):
    till = Till(signer)
    await till.read_card(0)
    first = await till.settled(outpatient())
    await till.settled(outpatient(OUTPATIENT_LINES[:1]))
    gone = await till.settled(outpatient(visit_type="emergency"))
    cancel = await till.post(
        f"/v1/settlements/{gone['setl_id']}/cancel", {"reason": "x"}, key=till.new_key()
    )
    assert cancel.status == 200
    # A rejection, so that the counters have something to show.
    await assert_problem(await client.get("/v1/settlements/x"), 401, "SIGNATURE_MISSING")

    response = await _summary(client, **BEARER)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    summary = await response.json()
    assert summary["date"] == TODAY  # the fake clock's day in Beijing

    with Session(world) as session:
        valid = session.execute(
            select(func.count(), func.sum(SettlementRow.medfee_sumamt)).where(
                SettlementRow.status == SettlementStatus.SETTLED
            )
        ).one()
        people = session.scalars(select(InsuredPersonRow)).all()
    total = summary["settlements"]["total"]
    assert (total["count"], total["medfee_sumamt"]) == (valid[0], valid[1])
    assert total["cancelled_count"] == 1
    rows = {(r["route"], r["visit_type"]): r for r in summary["settlements"]["rows"]}
    assert rows[("local", "outpatient")]["count"] == 2
    assert rows[("local", "emergency")]["count"] == 0
    assert summary["settlements"]["cancellations"] == [
        {
            "route": "local",
            "visit_type": "emergency",
            "count": 1,
            "medfee_sumamt": gone["medfee_sumamt"],
        }
    ]
    codes = {row["code"]: row["count"] for row in summary["rejections"]}
    assert codes["SIGNATURE_MISSING"] >= 1
    assert summary["card_auth"]["authenticated"] >= 1
    assert format_yuan(first["medfee_sumamt"])  # amounts stay int fen in JSON
    assert isinstance(total["medfee_sumamt"], int)

    text = await response.text()
    for person in people:
        for personal in (person.psn_no, person.citizen_id, person.name):
            assert personal not in text


async def test_another_day_is_empty(signer: Signer, world: Engine, client: Client):
    till = Till(signer)
    await till.read_card(0)
    await till.settled(outpatient())
    summary = await (await _summary(client, "?date=2027-01-14", **BEARER)).json()
    assert summary["date"] == "2027-01-14"
    assert summary["settlements"]["rows"] == []
    assert summary["settlements"]["total"]["count"] == 0


async def test_summary_says_since_when_its_counters_count(client: Client):
    summary = await (await _summary(client, **BEARER)).json()
    since = dt.datetime.fromisoformat(summary["counters_since"])
    assert since.tzinfo is not None
    shown = since.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    assert f"since the gateway started at {shown} Beijing time" in summary["counters_note"]


# --- the brute-force guard ----------------------------------------------------------------------

WRONG = "Bearer wrong-token-" + "y" * 32


async def _from(client: Client, address: str, **headers: str) -> tuple[int, Any]:
    """GET the summary over a connection whose source is ``address`` (another loopback
    address: a real second client as the server sees it)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    url = client.make_url("/v1/ops/summary")
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_wrong_tokens_lock_out_their_address_only(
    client: Client,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    rejection_delta: Callable[[str], Callable[[], float]],
):
    caplog.set_level(logging.DEBUG)
    limited = rejection_delta("OPS_TOO_MANY_WRONG_TOKENS")
    for _ in range(WRONG_TOKENS_ALLOWED):
        await assert_problem(await _summary(client, Authorization=WRONG), 401, "OPS_UNAUTHORIZED")
    # Now even the right token is not compared from this address.
    refused = await _summary(client, **BEARER)
    body = await assert_problem(refused, 429, "OPS_TOO_MANY_WRONG_TOKENS")
    assert refused.headers["Retry-After"] == str(int(REFILL_S))
    assert TOKEN not in str(body)
    assert limited() == 1
    # The right token from another address is served.
    status, summary = await _from(client, "127.0.0.2", **BEARER)
    assert status == 200
    assert summary["date"]
    # A wrong one from there is its own count: one 401, not a 429.
    status, body = await _from(client, "127.0.0.2", Authorization=WRONG)
    assert (status, body["code"]) == (401, "OPS_UNAUTHORIZED")
    # One allowance comes back after REFILL_S: the right token works again from here.
    clock.now_s += REFILL_S / 2
    await assert_problem(await _summary(client, **BEARER), 429, "OPS_TOO_MANY_WRONG_TOKENS")
    clock.now_s += REFILL_S / 2
    assert (await _summary(client, **BEARER)).status == 200

    # One line for the lock-out, naming the address, never a token or the header.
    lines = [r for r in caplog.records if r.name == "gateway.ops" and "guard" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    logged = json.dumps(vars(lines[0]), default=str)
    assert '"client": "127.0.0.1"' in logged
    everything = "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)
    for secret in (TOKEN, WRONG.split()[1], "Bearer", "Authorization"):
        assert secret not in everything


async def test_requests_without_a_token_guess_nothing_and_are_not_counted(client: Client):
    for headers in ({}, {"Authorization": f"Basic {TOKEN}"}) * WRONG_TOKENS_ALLOWED:
        await assert_problem(await _summary(client, **headers), 401, "OPS_UNAUTHORIZED")
    assert (await _summary(client, **BEARER)).status == 200


def test_guard_refills_one_try_per_interval_and_forgets_the_oldest_address():
    guard = WrongTokenGuard(allowed=2, refill_s=10.0, max_clients=2)
    assert guard.wait_s("a", 0.0) is None
    assert guard.wrong("a", 0.0) is False
    assert guard.wrong("a", 0.0) is True  # the allowance is used up: the one log line
    assert guard.wait_s("a", 0.0) == 10.0
    assert guard.wait_s("a", 4.0) == pytest.approx(6.0)
    assert guard.wait_s("a", 10.0) is None
    assert guard.wrong("a", 10.0) is True  # one try came back, and is spent again
    assert guard.wait_s("a", 10.0) == 10.0
    # Bounded: two more addresses and "a" is forgotten (a full allowance again).
    guard.wrong("b", 10.0)
    guard.wrong("c", 10.0)
    assert guard.wait_s("a", 10.0) is None


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same host's /64: one allowance
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
    ],
)
def test_guard_keys_an_ipv6_client_by_its_slash_64(remote: str | None, key: str):
    assert client_key(remote) == key
