"""deploy/prometheus: the alert rules pass `promtool check rules`, the example configuration
`promtool check config`, and the rules' unit tests `promtool test rules` (Debian package
prometheus: FAIL under CI=true when it is missing, skip elsewhere). Every alert is shown firing
by those tests, names a severity, and has its runbook under docs/operations.md's "Alerts and
runbooks"; every metric the rules and dashboards use is one the gateway defines (the live test,
tests/integration/test_prometheus_live.py, checks them against a running gateway)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from promkit import (
    ALERTS,
    DEPLOY,
    REPO,
    alert_rules,
    binary,
    dashboard_queries,
    dashboards,
    metric_names,
)

from gateway import metrics as gateway_metrics
from gateway.crossprov import metrics as hub_metrics
from gateway.ops import counters

# Imported for their side effect: every metric of the gateway is registered in REGISTRY.
METRIC_MODULES = (gateway_metrics, hub_metrics, counters)

PROMETHEUS_DIR = DEPLOY / "prometheus"
OPERATIONS = REPO / "docs" / "operations.md"
# Made by Prometheus itself for every target, not by the gateway.
PROMETHEUS_SERIES = frozenset({"up"})
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}


def _promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rules_and_the_example_configuration_pass_promtool_check(tmp_path: Path) -> None:
    rules = _promtool("check", "rules", ALERTS.name)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout
    # promtool checks that the metrics token file exists: beside a copy of the configuration.
    config_text = (PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8")
    scrape = yaml.safe_load(config_text)["scrape_configs"][0]
    assert scrape["authorization"]["type"] == "Bearer"
    token_file = scrape["authorization"]["credentials_file"]
    for name in ("prometheus.yml", ALERTS.name):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    (tmp_path / token_file).write_text("t" * 40 + "\n", encoding="ascii")
    config = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_rules_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_shown_firing_by_the_unit_tests() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for group in tests["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "two alerts share a name"
    assert set(names) - fired == set(), "alerts no unit test shows firing"


def _runbook_headings() -> list[str]:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = re.search(r"^## Alerts and runbooks\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section is not None, "docs/operations.md has no '## Alerts and runbooks' section"
    return re.findall(r"^### (\S+)\s*$", section[1], re.M)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_a_summary_and_its_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("page", "ticket")
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]
    name = rule["alert"]
    # GitHub's anchor of "### GatewayDown" is "#gatewaydown".
    assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"
    assert name in _runbook_headings()


def test_no_runbook_without_its_alert() -> None:
    assert sorted(_runbook_headings()) == sorted(rule["alert"] for rule in alert_rules())


def _defined_sample_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def test_every_metric_the_rules_and_dashboards_use_is_defined_by_the_gateway() -> None:
    defined = _defined_sample_names() | PROMETHEUS_SERIES
    used = {f"alert {rule['alert']}": metric_names(rule["expr"]) for rule in alert_rules()} | {
        f"{file} / {title}": metric_names(expr)
        for file, dashboard in dashboards().items()
        for title, expr in dashboard_queries(dashboard)
    }
    unknown = {where: names - defined for where, names in used.items() if names - defined}
    assert unknown == {}
    assert any("gateway_settlements_total" in names for names in used.values())
