"""Every PromQL expression of deploy/prometheus/alerts.yml and deploy/grafana/*.json against a
REAL Prometheus (Debian's `prometheus`, scraping every second, the rule file loaded) scraping a
real `python -m gateway serve --workers 2` (demo world, SQLite in a temp dir) beside the hub
simulator, after some traffic: a card CRL imported over the ops API, card authentications
(one refused: a lost card), local,
pharmacy and cross-province settlements, a replay, cancels, a reconciliation that does not
match, an unsigned request, a 404, the hub losing every answer (unknown outcomes: a 503 and a
reversal queue) and a worker killed (the supervisor restarts it).

Then: the counts in /metrics are the traffic's, summed over the workers (the killed one's
included); each metric name an expression uses is in the gateway's /metrics, each expression
returns at least one series, every rule evaluates without error, and GatewayWorkerRestarted
fires.
Prometheus missing: FAIL under CI=true, else skip."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from crossprov_kit import (
    SEED,
    Gateway,
    Terminal,
    card_session,
    claim,
    free_port,
    holder,
    running_gateway,
    today,
)
from democard import card_auth_response
from hubproc import HubProcess, start_hub
from prometheus_client.parser import text_string_to_metric_families
from promkit import (
    ALERTS,
    alert_rules,
    binary,
    dashboard_queries,
    dashboards,
    metric_names,
    without_thresholds,
)

from settlement.crossprov.store import FilingType
from sscard import demo as sd
from sscard.certs import build_crl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = "ssc-gateway"  # the job name the rules expect (deploy/prometheus/prometheus.yml)
PROMETHEUS_START_S = 30.0
SCRAPED_TIMEOUT_S = 60.0
# Series Prometheus makes itself for every target: not in the gateway's /metrics.
PROMETHEUS_SERIES = frozenset({"up"})
HOSPITAL_TERMINAL = 2  # institution 1, a hospital
PHARMACY_TERMINAL = 800  # institution 400, the first pharmacy
LOST_CARD = 12  # demo holder 6's third-generation card: reported lost
# The gateway runs with metrics_token set: Prometheus (and this test) scrape with it.
METRICS_TOKEN = "itest-prometheus-metrics-token-0123456789"
OPS_TOKEN = "itest-prometheus-ops-token-0123456789abcdef"


@contextlib.contextmanager
def _prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    # As deploy/prometheus/prometheus.yml: the gateway's metrics_token from a file.
    token_file = tmp_path / "ssc-gateway-metrics-token"
    token_file.write_text(METRICS_TOKEN + "\n", encoding="ascii")
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                        "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                    }
                ],
            }
        )
    )
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROMETHEUS_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"prometheus not ready in {PROMETHEUS_START_S} s:\n{log_path.read_text()}"
                )
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{path}{query}", timeout=30) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    data = _api(url, "/api/v1/query", query=expr)
    result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [data]
    return result


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with start_hub(tmp_path_factory.mktemp("hub"), seed="itest-prometheus-hub") as running:
        yield running


@pytest.fixture
def gateway(tmp_path: Path, hub: HubProcess) -> Iterator[Gateway]:
    with running_gateway(
        tmp_path,
        hub.url,
        hub_timeout_ms="2000",
        hub_retries="0",
        log_level="INFO",
        metrics_token=METRICS_TOKEN,
        ops_token=OPS_TOKEN,
        # Each worker reports the CRL in force after its refresh: soon, for the killed one's
        # successor and the other worker alike.
        card_crl_refresh_s="1",
    ) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _refused_card(terminal: Terminal) -> None:
    """A genuine card, correctly signed, that the registry says is lost: CARD_LOST."""
    card = sd.demo_card(SEED, LOST_CARD)
    assert card.state == sd.LOST
    granted = await terminal.request(
        "POST", "/v1/card-auth/challenge", {"card_sn": card.card_sn, "generation": 3}
    )
    assert granted.status == 200, granted
    answer = await terminal.request(
        "POST",
        "/v1/card-auth/response",
        card_auth_response(SEED, LOST_CARD, granted.body, terminal.terminal_id),
    )
    assert (answer.status, answer.body["code"]) == (403, "CARD_LOST"), answer


async def _import_a_crl(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """The demo issuing CA's CRL, good for a day, revoking nothing: the workers then report
    its nextUpdate (CardCrlPastNextUpdate's metric)."""
    pki = sd.demo_pki(SEED)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    crl = build_crl(
        issuer=pki.issuing,
        issuer_key=pki.issuing_key,
        revoked=[],
        this_update=now - dt.timedelta(minutes=5),
        next_update=now + dt.timedelta(days=1),
        crl_number=1,
    )
    async with http.post(
        f"{gateway.url}/v1/ops/crls",
        json={"crl": crl.to_pem().decode()},
        headers={"Authorization": f"Bearer {OPS_TOKEN}"},
    ) as answer:
        assert answer.status == 200, await answer.text()


async def _traffic(gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession) -> None:
    """Everything the rules and dashboards look at, once or a few times."""
    await _import_a_crl(gateway, http)
    hospital = Terminal(http, gateway, HOSPITAL_TERMINAL)
    local = await card_session(hospital, 0)
    with_card = {"X-Card-Session": local}
    settled = await hospital.request(
        "POST", "/v1/settlements", claim(3_000), {**with_card, "Idempotency-Key": "prom-1"}
    )
    assert settled.status == 201, settled
    replay = await hospital.request(
        "POST", "/v1/settlements", claim(3_000), {**with_card, "Idempotency-Key": "prom-1"}
    )
    assert replay.headers.get("Idempotent-Replayed") == "true", replay
    second = await hospital.request(
        "POST", "/v1/settlements", claim(1_500), {**with_card, "Idempotency-Key": "prom-2"}
    )
    assert second.status == 201, second
    cancelled = await hospital.request(
        "POST",
        f"/v1/settlements/{second.body['setl_id']}/cancel",
        {"reason": "prometheus test"},
        {"Idempotency-Key": "prom-cancel"},
    )
    assert cancelled.status == 200, cancelled
    # The hospital's totals for today, one fen off: a mismatch.
    body = settled.body
    mismatch = await hospital.request(
        "POST",
        "/v1/reconciliation/totals",
        {
            "clr_type": "11",
            "stmt_date": today().isoformat(),
            "fixmedins_setl_cnt": 1,
            "medfee_sumamt": body["medfee_sumamt"] + 1,
            "fund_pay_sumamt": body["fund_pay_sumamt"],
            "acct_pay": body["acct_pay"],
            "psn_cash_pay": body["psn_cash_pay"] + 1,
        },
    )
    assert mismatch.status == 200, mismatch
    assert mismatch.body["stmt_rslt"] == "1"

    pharmacy = Terminal(http, gateway, PHARMACY_TERMINAL)
    purchase = await pharmacy.request(
        "POST",
        "/v1/settlements",
        {
            "visit_type": "pharmacy",
            "visit_date": today().isoformat(),
            "lines": [{"code": "DEMO-A-001", "quantity": 2, "unit_price_fen": 1_250}],
        },
        {"X-Card-Session": await card_session(pharmacy, 1), "Idempotency-Key": "prom-3"},
    )
    assert purchase.status == 201, purchase
    await _refused_card(hospital)

    # A patient insured in Jiangsu: through the hub, then the hub loses every answer.
    remote_h = holder("320000", FilingType.RESETTLED_RETIREE)
    remote = {"X-Card-Session": await card_session(hospital, remote_h)}
    through_hub = await hospital.request(
        "POST", "/v1/settlements", claim(4_000), {**remote, "Idempotency-Key": "prom-4"}
    )
    assert through_hub.status == 201, through_hub
    assert through_hub.body["route"] == "cross_province"
    hub.set_faults(drop_after_commit_ratio=1.0)
    unknown = await hospital.request(
        "POST", "/v1/settlements", claim(4_100), {**remote, "Idempotency-Key": "prom-5"}
    )
    assert (unknown.status, unknown.body["code"]) == (503, "HUB_OUTCOME_UNKNOWN"), unknown
    unknown_cancel = await hospital.request(
        "POST",
        f"/v1/settlements/{through_hub.body['setl_id']}/cancel",
        {"reason": "prometheus test"},
        {"Idempotency-Key": "prom-cancel-remote"},
    )
    assert unknown_cancel.status == 503, unknown_cancel

    async with http.get(f"{gateway.url}/v1/settlements/none") as unsigned:
        assert unsigned.status == 401
    async with http.get(f"{gateway.url}/nowhere") as missing:
        assert missing.status == 404


def _kill_one_worker(gateway: Gateway) -> int:
    started = [
        json.loads(line)
        for line in gateway.log().splitlines()
        if line.startswith("{") and '"worker started"' in line
    ]
    assert started, gateway.log()
    pid = int(started[0]["worker_pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _exposition(gateway: Gateway) -> Samples:
    """The gateway's /metrics: (sample name, labels) -> value, as one scrape sees it."""
    # Without the token, even from loopback: refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10)
    assert refused.value.code == 401
    scrape = urllib.request.Request(
        f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(scrape, timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _assert_summed_over_workers(samples: Samples) -> None:
    """The traffic's counts, whichever of the two workers (one of them killed since: its
    counters stay in the sums) answered each request."""

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    settlements = "gateway_settlements_total"
    assert value(settlements, route="local", visit_type="outpatient") == 2  # the replay: not
    assert value(settlements, route="local", visit_type="pharmacy") == 1
    assert value(settlements, route="cross_province", visit_type="outpatient") == 1  # + unknown
    assert value("gateway_settlement_cancels_total", route="local", visit_type="outpatient") == 1
    paid = sum(
        value("gateway_settled_amount_fen_total", route="local", visit_type="outpatient", payer=p)
        for p in ("fund", "account", "cash")
    )
    assert paid == 3_000 + 1_500
    assert value("gateway_reconciliations_total", kind="totals", result="mismatched") == 1
    auths = "gateway_card_authentications_total"
    assert value(auths, generation="3", outcome="authenticated", reason="none") == 3
    assert value(auths, generation="3", outcome="refused", reason="CARD_LOST") == 1
    assert value("gateway_worker_restarts_total") == 1


def _wait_scraped(url: str, since_s: float, *, restarted: bool = True) -> None:
    """Until Prometheus holds a sample taken more than 3 s after ``since_s`` (every series the
    traffic made then has the two samples rate() needs: one scrape a second) and, if
    ``restarted``, has seen the restarted worker."""
    deadline = time.monotonic() + SCRAPED_TIMEOUT_S
    while time.monotonic() < deadline:
        latest = _query(url, f'timestamp(up{{job="{JOB}"}} == 1)')
        restarts = _query(url, f'gateway_worker_restarts_total{{job="{JOB}"}} > 0')
        if latest and float(latest[0]["value"][1]) > since_s + 3 and (restarts or not restarted):
            return
        time.sleep(0.5)
    pytest.fail("Prometheus did not scrape the gateway in time")


async def test_every_rule_and_dashboard_expression_against_a_live_gateway(
    gateway: Gateway, hub: HubProcess, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with _prometheus(tmp_path, gateway.port) as prometheus:
        # Prometheus's first scrape comes a few seconds after it is ready: the series that are
        # there from start-up must have samples from before the traffic too.
        await asyncio.to_thread(_wait_scraped, prometheus, time.time(), restarted=False)
        await _traffic(gateway, hub, http)
        _kill_one_worker(gateway)
        traffic_done_s = time.time()
        await asyncio.to_thread(_wait_scraped, prometheus, traffic_done_s)

        samples = _exposition(gateway)
        _assert_summed_over_workers(samples)
        exposed = {name for name, _ in samples} | PROMETHEUS_SERIES
        rules = alert_rules()
        queries = {
            f"{name} / {title}": expr
            for name, board in dashboards().items()
            for title, expr in dashboard_queries(board)
        }
        # 1. Every metric name is one the gateway exposes.
        unknown = {
            where: sorted(metric_names(expr) - exposed)
            for where, expr in {
                **{f"alert {rule['alert']}": rule["expr"] for rule in rules},
                **queries,
            }.items()
            if metric_names(expr) - exposed
        }
        assert unknown == {}

        # 2. Every expression returns a series. An alert's expression is checked without its
        # threshold comparison (promkit.without_thresholds says why): on a healthy gateway
        # the comparison rightly filters every series out.
        # Some series are made after the traffic by background work (the reversal task
        # resolving the unknown cancel, a CRL refresh), and rate() needs two samples of them:
        # asked again, each expression must return a series within the scrape timeout.
        expressions = {
            f"alert {rule['alert']}: {operand}": operand
            for rule in rules
            for operand in without_thresholds(rule["expr"])
        } | {f"{where}: {expr}": expr for where, expr in queries.items()}
        deadline = time.monotonic() + SCRAPED_TIMEOUT_S
        while True:
            empty = [where for where, expr in expressions.items() if not _query(prometheus, expr)]
            if not empty or time.monotonic() > deadline:
                break
            expressions = {where: expressions[where] for where in empty}
            await asyncio.sleep(1.0)
        assert empty == []

        # 3. Prometheus evaluates every rule without error, and the worker's death alerts.
        loaded = [
            rule for group in _api(prometheus, "/api/v1/rules")["groups"] for rule in group["rules"]
        ]
        assert sorted(rule["name"] for rule in loaded) == sorted(rule["alert"] for rule in rules)
        assert [rule["name"] for rule in loaded if rule["health"] != "ok"] == []
        deadline = time.monotonic() + 30
        while True:
            firing = {
                alert["labels"]["alertname"]
                for alert in _api(prometheus, "/api/v1/alerts")["alerts"]
                if alert["state"] == "firing"
            }
            if "GatewayWorkerRestarted" in firing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert "GatewayWorkerRestarted" in firing
        # Nothing here is slow, stuck or down for long enough to page anyone.
        assert not firing & {"GatewayDown", "HubReversalQueueStuck", "DatabaseErrors"}
