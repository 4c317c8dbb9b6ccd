"""The /ops dashboard in a real browser: `python -m gateway serve` (2 workers, demo world on
SQLite) settles a few visits through signed requests; headless Chromium (Debian's chromium +
chromium-driver, driven by selenium) opens /ops, is refused with a wrong token, signs in with
the demo token the gateway made and printed at start-up, waits for the script to render, and
the figures on the page are the database's, the counters labelled with the gateway's start.
Then a few wrong tokens lock the browser's address out (429, shown on the sign-in form) while
the right token from another address is still served.

The second test starts from the front door (GET /, and the one human line the gateway printed
at start-up), follows its link to /ops, chooses a 10 s refresh that survives a reload and sees
the page refresh by itself; checks the hourly chart against the database hour by hour, the
rejections chart's sampled intervals and its label, and the drill-downs (a row and a bar to
the institutions behind them, a rejection to what its code means); and saves a screenshot
(with SSC_UPDATE_SCREENSHOTS=1, over docs/img/ops-dashboard.png, which docs/operations.md
shows). Chromium missing: FAIL under CI=true, else skip."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cikit import fail_or_skip
from democard import card_auth_response
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from dbkit import BEIJING, day_bounds_utc
from gateway.ops.guard import WRONG_TOKENS_ALLOWED
from settlement.money import format_yuan
from settlement.store import InsuredPersonRow, SettlementRow, SettlementStatus
from sscard import demo as sd
from sscard.terminal_auth import demo_institution_code, demo_terminal, signed_headers

pytestmark = pytest.mark.integration

SEED = "itest-ops-seed"
TERMINAL = 3  # a hospital's terminal in the demo world
START_TIMEOUT_S = 90.0
RENDER_TIMEOUT_S = 30.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser_or_skip() -> Any:
    """selenium's webdriver module, or fail (CI) / skip loudly without a browser."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("the selenium package (dev extra)")
    if missing:
        reason = f"headless Chromium unavailable: missing {', '.join(missing)}"
        fail_or_skip(f"OPS DASHBOARD BROWSER TEST: {reason} (scripts/bootstrap installs it)")
    return webdriver


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env["GATEWAY_DEMO_SEED"] = SEED
    env["GATEWAY_SHUTDOWN_TIMEOUT_S"] = "10"
    data_dir = tmp_path / "var"
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "serve", "--workers", "2"),
                *("--port", str(port), "--data-dir", str(data_dir)),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    gw = Gateway(process, port, data_dir, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"gateway exited with {process.returncode}:\n{gw.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"gateway not ready within {START_TIMEOUT_S} s:\n{gw.log()}")
            # /readyz answers once any worker listens; the start-up line comes from slot 0,
            # which may be ready a moment later. Up means both.
            try:
                ready = _request(gw, "GET", "/readyz", signed=False)[0] == 200
            except OSError:
                ready = False
            if ready and "SSC gateway" in gw.log():
                break
            time.sleep(0.1)
        yield gw
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _request(
    gw: Gateway,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    signed: bool = True,
    source: str | None = None,
) -> tuple[int, bytes]:
    body = b"" if payload is None else json.dumps(payload).encode()
    sent = dict(headers or {})
    if signed:
        terminal_id, secret = demo_terminal(SEED, TERMINAL)
        sent.update(
            signed_headers(
                secret,
                terminal_id,
                method,
                path,
                body,
                timestamp=int(time.time()),
                nonce=secrets.token_urlsafe(24),
                card_session=sent.get("X-Card-Session"),
                idempotency_key=sent.get("Idempotency-Key"),
            )
        )
    if payload is not None:
        sent["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(
        "127.0.0.1", gw.port, timeout=10, source_address=None if source is None else (source, 0)
    )
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _card_session(gw: Gateway) -> str:
    card = sd.demo_card(SEED, 0)
    status, raw = _request(
        gw, "POST", "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
    )
    assert status == 200, raw
    body = card_auth_response(SEED, 0, json.loads(raw), demo_terminal(SEED, TERMINAL)[0])
    status, raw = _request(gw, "POST", "/v1/card-auth/response", body)
    assert status == 200, raw
    token: str = json.loads(raw)["card_session"]
    return token


def _settle_a_few(gw: Gateway) -> dt.date:
    """Three settlements of today (Beijing), one of them cancelled; returns the day."""
    session = _card_session(gw)
    day = dt.datetime.now(BEIJING).date()
    today = day.isoformat()
    claims = [
        ("outpatient", [{"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_501}]),
        ("outpatient", [{"code": "DEMO-B-001", "quantity": 3, "unit_price_fen": 3_333}]),
        ("emergency", [{"code": "DEMO-A-002", "quantity": 2, "unit_price_fen": 1_999}]),
    ]
    setl_ids = []
    for n, (visit_type, lines) in enumerate(claims):
        status, raw = _request(
            gw,
            "POST",
            "/v1/settlements",
            {"visit_type": visit_type, "visit_date": today, "lines": lines},
            {"X-Card-Session": session, "Idempotency-Key": f"ops-itest-{n}"},
        )
        assert status == 201, raw
        setl_ids.append(json.loads(raw)["setl_id"])
    status, raw = _request(
        gw,
        "POST",
        f"/v1/settlements/{setl_ids[1]}/cancel",
        {"reason": "ops dashboard test"},
        {"Idempotency-Key": "ops-itest-cancel"},
    )
    assert status == 200, raw
    # One refused request, so that the rejections table has a row to show.
    assert _request(gw, "GET", "/v1/settlements/none", signed=False)[0] == 401
    return day


@dataclass(frozen=True)
class Expected:
    count: int
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int
    cancelled: int


def _database_figures(gw: Gateway, day: dt.date) -> tuple[dict[str, Expected], list[str]]:
    """Valid settlements of ``day`` (Beijing) by visit type, read straight from the database;
    and the personal data of the insured persons who settled (must not be on the page)."""
    engine = create_engine(f"sqlite:///{gw.data_dir / 'gateway.sqlite3'}")
    start, end = day_bounds_utc(day)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(
                    SettlementRow.visit_type,
                    SettlementRow.status,
                    func.count(),
                    func.sum(SettlementRow.medfee_sumamt),
                    func.sum(SettlementRow.fund_pay_sumamt),
                    func.sum(SettlementRow.acct_pay),
                    func.sum(SettlementRow.psn_cash_pay),
                )
                .where(SettlementRow.setl_time >= start, SettlementRow.setl_time < end)
                .group_by(SettlementRow.visit_type, SettlementRow.status)
            ).all()
            people = session.scalars(
                select(InsuredPersonRow).where(
                    InsuredPersonRow.id.in_(select(SettlementRow.person_id))
                )
            ).all()
            personal = [v for p in people for v in (p.psn_no, p.citizen_id, p.name)]
    finally:
        engine.dispose()
    cancelled = {vt: n for vt, status, n, *_ in rows if status == SettlementStatus.CANCELLED}
    expected = {
        vt: Expected(int(n), *(int(x) for x in sums), cancelled.get(vt, 0))
        for vt, status, n, *sums in rows
        if status == SettlementStatus.SETTLED
    }
    return expected, personal


def _yuan_on_page(fen: int) -> str:
    """What the page shows for ``fen``: format_yuan's exact figure with thousands commas."""
    whole, cents = format_yuan(fen).split(".")
    return f"{int(whole):,}.{cents}"


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = _browser_or_skip()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Debian's chromedriver by path: selenium never tries to download a driver or a browser.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_state(driver: Any, state: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, RENDER_TIMEOUT_S).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-state") == state,
        message=f"page never reached state {state!r}",
    )


def _sign_in(driver: Any, token: str) -> None:
    field = driver.find_element("id", "token")
    field.clear()
    field.send_keys(token)
    driver.find_element("id", "sign-in").click()


def _renders(driver: Any) -> int:
    return int(driver.execute_script("return document.body.dataset.renders || '0'"))


# Every figure the test checks, read in one go: {route/visit_type: {field: text}} per table.
_SNAPSHOT_JS = """
const rows = (selector) => {
  const out = {};
  for (const tr of document.querySelectorAll(selector)) {
    const cells = {};
    for (const td of tr.querySelectorAll("td[data-field]")) {
      cells[td.dataset.field] = td.textContent;
    }
    out[tr.dataset.route + "/" + tr.dataset.visitType] = cells;
  }
  return out;
};
return {
  state: document.body.dataset.state,
  heading: document.getElementById("heading-day").textContent,
  activity: rows("#activity tr[data-route]"),
  cancellations: rows("#cancellations tr[data-route]"),
  authenticated: document.getElementById("card-authenticated").textContent,
  rejections: Array.from(document.querySelectorAll("#rejections tr[data-code]"),
    (tr) => tr.dataset.code),
  reversal_depth: document.getElementById("reversal-depth").textContent,
  counters_since: document.getElementById("counters-since").dataset.since,
  counters_heading: document.querySelector("#counters h2").textContent,
  not_judged: document.getElementById("card-not-judged").textContent,
  text: document.body.innerText,
  html: document.documentElement.outerHTML,
};
"""


def test_dashboard_shows_the_databases_figures(gateway: Gateway, browser: Any) -> None:
    token_path = gateway.data_dir / "ops-token"
    token = token_path.read_text().strip()
    # DEMO ONLY: the start-up log names the token's file for the operator, never the token.
    assert token not in gateway.log()
    assert str(token_path) in gateway.log()
    day = _settle_a_few(gateway)
    expected, personal = _database_figures(gateway, day)
    assert set(expected) == {"outpatient", "emergency"}

    browser.get(f"{gateway.url}/ops")
    _wait_state(browser, "login")
    _sign_in(browser, "wrong-" + token)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, RENDER_TIMEOUT_S).until(
        lambda d: d.find_element("id", "login-error").is_displayed(),
        message="a wrong token never showed the login error",
    )
    assert "ops token" in browser.find_element("id", "login-error").text
    assert browser.find_element("tag name", "body").get_attribute("data-state") == "login"
    assert not browser.find_element("id", "dashboard").is_displayed()

    _sign_in(browser, token)
    _wait_state(browser, "ready")
    # The day is chosen through the page's own date form (so a Beijing midnight between the
    # settlements and the page cannot make them disagree): the page then shows that day.
    renders = _renders(browser)
    browser.execute_script("document.getElementById('day').value = arguments[0]", str(day))
    browser.find_element("id", "show-day").click()
    WebDriverWait(browser, RENDER_TIMEOUT_S).until(
        lambda d: _renders(d) > renders, message="the chosen day was never rendered"
    )
    # One script call reads the whole page at once: a refresh cannot land between two reads.
    shown = browser.execute_script(_SNAPSHOT_JS)
    assert shown["state"] == "ready"
    assert shown["heading"] == f"Day {day}"
    # One time zone, said once: the header names it; no time on the page names another.
    assert shown["text"].count("Beijing time") == 1
    assert shown["text"].count("UTC") == 1  # "UTC+8", in that one sentence
    # Card refusals apart from answers never judged (the test's unsigned request is not one:
    # it went to /v1/echo), each its own figure.
    assert shown["not_judged"].isdigit()
    activity = shown["activity"]
    for visit_type, figures in expected.items():
        row = activity[f"local/{visit_type}"]
        assert row["count"] == str(figures.count)
        assert row["cancelled_count"] == str(figures.cancelled)
        for field in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay"):
            assert row[field] == _yuan_on_page(getattr(figures, field)), field
    total = activity["all/all"]
    assert total["count"] == str(sum(f.count for f in expected.values()))
    assert total["medfee_sumamt"] == _yuan_on_page(sum(f.medfee_sumamt for f in expected.values()))
    assert shown["cancellations"]["local/outpatient"]["count"] == "1"
    assert int(shown["authenticated"]) >= 1
    assert "SIGNATURE_MISSING" in shown["rejections"]
    # Cross-province: whatever the schema holds now, the page says something definite.
    assert shown["reversal_depth"] != ""
    # The counters say since when they count (the first worker's start), in Beijing time.
    since = dt.datetime.fromisoformat(shown["counters_since"])
    assert since <= dt.datetime.now(dt.UTC)
    assert dt.datetime.now(dt.UTC) - since < dt.timedelta(seconds=START_TIMEOUT_S + 600)
    beijing_start = since.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    assert f"Since the gateway started at {beijing_start}" in " ".join(
        shown["counters_heading"].split()
    )
    for value in personal:
        assert value not in shown["html"]

    # Strict CSP and local assets only: the console shows no violation and no failed load.
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    # The one expected entry: the wrong token's 401 that the page handled.
    assert all(
        "/v1/ops/summary" in entry["message"] and "401" in entry["message"] for entry in severe
    ), severe

    # Sign out: back to the login state; the token is gone from the tab.
    browser.find_element("id", "sign-out").click()
    _wait_state(browser, "login")
    assert browser.execute_script("return sessionStorage.getItem('ssc-ops-token')") is None

    _lock_out_and_still_serve_another_address(gateway, browser, token)


def _lock_out_and_still_serve_another_address(gw: Gateway, browser: Any, token: str) -> None:
    """Wrong tokens from the browser until the gateway stops comparing them (each of the two
    workers keeps its own count, so at most twice the allowance), then the page says so; the
    right token from another loopback address is served meanwhile."""
    from selenium.webdriver.support.ui import WebDriverWait

    guess = "guess-" + secrets.token_urlsafe(32)
    message = ""
    for _ in range(2 * WRONG_TOKENS_ALLOWED + 1):
        browser.execute_script("document.getElementById('login-error').textContent = ''")
        _sign_in(browser, guess)
        WebDriverWait(browser, RENDER_TIMEOUT_S).until(
            lambda d: d.find_element("id", "login-error").text != "",
            message="a wrong token never showed the login error",
        )
        message = browser.find_element("id", "login-error").text
        if "Too many wrong ops tokens" in message:
            break
    assert "Too many wrong ops tokens" in message, message
    assert "Try again in" in message  # the Retry-After, in words
    assert browser.find_element("tag name", "body").get_attribute("data-state") == "login"
    assert browser.execute_script("return sessionStorage.getItem('ssc-ops-token')") is None

    # Another address (127.0.0.2 reaches a 127.0.0.1 listener on Linux) is not locked out.
    status, raw = _request(
        gw,
        "GET",
        "/v1/ops/summary",
        headers={"Authorization": f"Bearer {token}"},
        signed=False,
        source="127.0.0.2",
    )
    assert status == 200, raw
    # The lock-out is logged with the address, never with what was guessed.
    log = gw.log()
    lines = [line for line in log.splitlines() if "ops token guard" in line]
    assert lines, log
    assert all("127.0.0.1" in line for line in lines)
    assert guess not in log


# --- the front door and the live page ------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "img" / "ops-dashboard.png"
# Set to 1 to refresh the committed screenshot (docs/operations.md shows it) from this test.
UPDATE_SCREENSHOT_ENV = "SSC_UPDATE_SCREENSHOTS"
AUTO_REFRESH_TIMEOUT_S = 30.0


def _settlements_by_hour(gw: Gateway, day: dt.date) -> dict[int, tuple[int, int]]:
    """(valid, cancelled since) settlements of ``day`` per Beijing hour, from the database."""
    engine = create_engine(f"sqlite:///{gw.data_dir / 'gateway.sqlite3'}")
    start, end = day_bounds_utc(day)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(SettlementRow.setl_time, SettlementRow.status).where(
                    SettlementRow.setl_time >= start, SettlementRow.setl_time < end
                )
            ).all()
    finally:
        engine.dispose()
    hours: dict[int, tuple[int, int]] = {}
    for setl_time, status in rows:
        hour = setl_time.replace(tzinfo=dt.UTC).astimezone(BEIJING).hour
        valid, cancelled = hours.get(hour, (0, 0))
        if status == SettlementStatus.SETTLED:
            valid += 1
        else:
            cancelled += 1
        hours[hour] = (valid, cancelled)
    return hours


_CHART_JS = """
return {
  bars: Array.from(document.querySelectorAll("#hourly-chart rect.bar:not(.cancelled)"),
    (r) => [Number(r.dataset.hour), Number(r.dataset.count), Number(r.dataset.cancelled)]),
  kpi: document.getElementById("kpi-settlements").textContent,
  samples: Number(document.getElementById("rejections-caption").dataset.samples || "0"),
  rejectBars: Array.from(document.querySelectorAll("#rejections-chart rect.bar.reject"),
    (r) => Number(r.dataset.delta)),
  caption: document.getElementById("rejections-caption").textContent,
  refresh: document.getElementById("refresh").value,
  state: document.body.dataset.state,
};
"""


_DRILL_ROWS_JS = """
const rows = document.querySelectorAll("#drill-institutions tbody tr[data-code]");
return Array.from(rows, (tr) => [tr.dataset.code, Object.fromEntries(Array.from(
  tr.querySelectorAll("td[data-field]"), (td) => [td.dataset.field, td.textContent]))]);
"""


def _drill_rows(driver: Any) -> dict[str, dict[str, str]]:
    return dict(driver.execute_script(_DRILL_ROWS_JS))


def _wait_drilled(driver: Any, kind: str) -> None:
    """Until the drill-down panel shows a fresh answer of ``kind`` (reset when opened)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, RENDER_TIMEOUT_S).until(
        lambda d: d.find_element("id", "drill").get_attribute("data-kind") == kind,
        message=f"the drill-down never showed {kind}",
    )


def test_front_door_start_up_line_and_the_live_dashboard(
    gateway: Gateway, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # The one human line at start-up: URLs, where the token is, never the token.
    token_path = gateway.data_dir / "ops-token"
    token = token_path.read_text().strip()
    lines = [line for line in gateway.log().splitlines() if line.startswith("SSC gateway")]
    assert len(lines) == 1, gateway.log()
    line = lines[0]
    for url in ("/ops", "/openapi.json", "/healthz", "/readyz", "/metrics"):
        assert f"{gateway.url}{url}" in line
    assert str(token_path) in line
    assert token not in line
    assert f"ssc-terminal demo --gateway {gateway.url} --reader memory" in line

    day = _settle_a_few(gateway)
    # The front door, then its link to the dashboard.
    browser.get(f"{gateway.url}/")
    assert "SSC settlement gateway" in browser.title
    browser.find_element("link text", "Settlement operations").click()
    _wait_state(browser, "login")
    _sign_in(browser, token)
    _wait_state(browser, "ready")
    assert browser.find_element("id", "refresh").get_attribute("value") == "60"  # the default

    # The interval is the tab's: 10 s survives a reload, and the page refreshes by itself.
    Select(browser.find_element("id", "refresh")).select_by_value("10")
    browser.refresh()
    _wait_state(browser, "ready")
    assert browser.find_element("id", "refresh").get_attribute("value") == "10"
    assert browser.find_element("tag name", "body").get_attribute("data-refresh") == "10"
    renders = _renders(browser)
    # A rejection between two refreshes: the page's own sampling shows it.
    assert _request(gateway, "GET", "/v1/settlements/none", signed=False)[0] == 401
    WebDriverWait(browser, AUTO_REFRESH_TIMEOUT_S).until(
        lambda d: _renders(d) > renders, message="the page never refreshed by itself"
    )
    shown = browser.execute_script(_CHART_JS)
    assert shown["state"] == "ready"
    # The hourly chart is the database's, hour by hour.
    expected = _settlements_by_hour(gateway, day)
    assert [hour for hour, _, _ in shown["bars"]] == list(range(24))
    for hour, count, cancelled in shown["bars"]:
        assert (count, cancelled) == expected.get(hour, (0, 0)), hour
    assert shown["kpi"] == str(sum(valid for valid, _ in expected.values()))
    # Rejections: what this tab saw between refreshes, labelled as such.
    assert shown["samples"] >= 2
    assert len(shown["rejectBars"]) == shown["samples"] - 1
    assert sum(shown["rejectBars"]) >= 1
    assert "between this page's refreshes" in shown["caption"]
    assert "running count since it started" in shown["caption"]

    # Drill-down: the row local/outpatient -> its institution, as the database has it.
    institution = demo_institution_code(TERMINAL // 2)
    browser.find_element(
        "css selector", 'tr[data-route="local"][data-visit-type="outpatient"] td.drill-cell button'
    ).click()
    _wait_drilled(browser, "institutions")
    rows = _drill_rows(browser)
    assert set(rows) == {institution}
    assert rows[institution]["count"] == "1"  # two outpatient visits, one cancelled since
    assert rows[institution]["cancelled_count"] == "1"
    assert rows[institution]["kind"] == "hospital"
    # ... and from a bar of the chart: the busiest hour's institutions.
    busiest = max(expected, key=lambda hour: expected[hour][0])
    browser.execute_script(
        "document.querySelectorAll('#hourly-chart rect.bar-target')[arguments[0]]"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}))",
        busiest,
    )
    _wait_drilled(browser, "institutions")
    assert f"{busiest:02d}:00" in browser.find_element("id", "drill-title").text
    assert institution in _drill_rows(browser)
    # From a rejection to what its code means.
    browser.find_element(
        "css selector", '#rejections tr[data-code="SIGNATURE_MISSING"] button'
    ).click()
    _wait_drilled(browser, "code")
    assert browser.find_element("id", "drill-status").text == "401"
    assert browser.find_element("id", "drill-message").text
    assert browser.find_element("id", "drill-message-zh").text

    # The screenshot for the docs: the day's institutions open under the figures.
    browser.find_element("id", "tile-settlements").click()
    _wait_drilled(browser, "institutions")
    assert not browser.find_element("id", "drill-code").is_displayed()
    assert set(_drill_rows(browser)) == {institution}
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height), 4000))
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "ops-dashboard.png"
    assert browser.save_screenshot(str(shot))
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 20_000  # a rendered page, not a blank one
    if os.environ.get(UPDATE_SCREENSHOT_ENV) == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)

    # No personal data on the page, and the strict CSP was never violated.
    _, personal = _database_figures(gateway, day)
    html = browser.execute_script("return document.documentElement.outerHTML")
    for value in personal:
        assert value not in html
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
