"""deploy/grafana: the dashboards are importable by Grafana's file provisioning (one JSON model
each, unique uids, panels on the 24-column grid, every query on the "Data source" variable),
cover what the people on call look at (every metric an alert judges is on a board), and every
PromQL query parses (promtool checks them as
recording rules). Whether each query returns data from a live gateway is
tests/integration/test_prometheus_live.py's job."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from promkit import (
    GRAFANA,
    alert_rules,
    binary,
    dashboard_queries,
    dashboards,
    metric_names,
    panels,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboards_cover_what_the_issue_asks_for() -> None:
    titles = " | ".join(board["title"] for board in dashboards().values())
    for topic in (
        "traffic and latency",
        "card authentication",
        "settlements",
        "cross-province and the national hub",
        "database",
    ):
        assert topic in titles, topic
    queries = " ".join(
        expr for board in dashboards().values() for _, expr in dashboard_queries(board)
    )
    # Per route, by outcome, per visit type with amounts, the hub's health, database writes.
    for needle in (
        "sum by (route) (rate(gateway_requests_total",
        "histogram_quantile(0.99, sum by (route, le)",
        "sum by (outcome) (rate(gateway_card_authentications_total",
        "sum by (visit_type) (rate(gateway_settlements_total",
        "sum by (visit_type) (rate(gateway_settled_amount_fen_total",
        "ssc_hub_breaker_state",
        "ssc_hub_reversal_queue_oldest_age_seconds",
        "gateway_db_write_duration_seconds_bucket",
        "gateway_db_errors_total",
    ):
        assert needle in queries, needle


def test_every_metric_an_alert_judges_is_on_a_dashboard() -> None:
    """An alert's runbook sends the engineer on call to the dashboards: what the alert judges
    (a CRL's nextUpdate, accounts left to roll over, a replica's scrape) must be shown there,
    not only in Prometheus's expression browser."""
    judged = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    shown = set().union(
        *(
            metric_names(expr)
            for board in dashboards().values()
            for _, expr in dashboard_queries(board)
        )
    )
    assert sorted(judged - shown) == []


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_each_dashboard_is_a_provisionable_model(name: str) -> None:
    board = dashboards()[name]
    assert board["uid"] == name.removesuffix(".json")
    assert len(board["uid"]) <= 40  # Grafana's limit
    assert board["schemaVersion"] >= 36
    assert "id" not in board or board["id"] is None  # provisioning assigns ids
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert 'job="$job"' in target["expr"], panel["title"]


def test_uids_are_unique() -> None:
    uids = [board["uid"] for board in dashboards().values()]
    assert len(uids) == len(set(uids))


def test_the_provisioning_examples() -> None:
    provisioning = GRAFANA / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "ssc-gateway.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    promtool = binary("promtool")
    rules: list[dict[str, Any]] = [
        {"record": f"dashboard:check_{n}", "expr": expr}
        for n, (_, expr) in enumerate(
            query for board in dashboards().values() for query in dashboard_queries(board)
        )
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
