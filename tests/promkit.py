"""Helpers for the tests of deploy/ (alert rules, dashboards): Debian's Prometheus binaries, and
the PromQL of the rules and dashboards taken apart just enough to check it against a gateway.

Not a PromQL parser: the expressions are ours, written in a plain style (functions and
aggregations in parentheses, label matchers in braces, no string literals outside braces), and
the tests fail loudly if one is not (a name that is no metric is reported as a missing metric).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cikit import fail_or_skip

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA = DEPLOY / "grafana"

# Grafana's variables, as a scrape of a gateway every second sees them: a range long enough
# for rate() over a minute or two of samples.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "${job}": "ssc-gateway",
    "$job": "ssc-gateway",
    "${instance}": ".+",
    "$instance": ".+",
}

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = ("and", "or", "unless")


def binary(name: str) -> str:
    """The path of a Prometheus binary (Debian package ``prometheus``): missing, FAIL under
    CI (CI installs it through scripts/bootstrap), else skip with the reason."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not found (Debian package prometheus; scripts/bootstrap installs it)"
        fail_or_skip(f"PROMETHEUS TESTS: {reason}")
    return path


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/alerts.yml, in file order."""
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboards() -> dict[str, dict[str, Any]]:
    """deploy/grafana/*.json by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(GRAFANA.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables substituted) of every panel target, and
    of every query variable (``label_values(metric, label)`` becomes ``metric``)."""
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                queries.append((panel.get("title", "?"), substitute(target["expr"])))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query" and isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
            queries.append(
                (f"variable {variable['name']}", substitute(found[1] if found else query))
            )
    return queries


def substitute(expr: str) -> str:
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    # label_replace's "${1}" is PromQL's own; any other "$" is a variable nobody substituted.
    assert re.search(r"\$(?!\{\d+\})", expr) is None, f"an unknown Grafana variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    bare = _STRINGS.sub('""', expr)
    bare = _BRACES.sub(" ", bare)
    bare = _RANGES.sub(" ", bare)
    bare = _GROUPING.sub(" ", bare)
    names = set()
    for found in _IDENTIFIER.finditer(bare):
        name = found.group()
        rest = bare[found.end() :].lstrip()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue  # a function or an aggregation, or an operator word
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def _top_level_split(expr: str, separators: tuple[str, ...], *, words: bool) -> list[str]:
    """``expr`` cut at each separator outside parentheses, braces and brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        char = expr[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == '"':
            i = expr.index('"', i + 1)  # label values: skipped whole
        elif depth == 0:
            for separator in separators:
                if not expr.startswith(separator, i):
                    continue
                if words and (
                    (i > 0 and (expr[i - 1].isalnum() or expr[i - 1] == "_"))
                    or (i + len(separator) < len(expr) and expr[i + len(separator)].isalnum())
                ):
                    continue
                if not words and expr[i + len(separator) : i + len(separator) + 1] in "=~":
                    continue  # "=~" belongs to a matcher; ">=" is tried before ">"
                parts.append(expr[start:i])
                i += len(separator)
                start = i
                break
            else:
                i += 1
                continue
            continue
        i += 1
    parts.append(expr[start:])
    return [part.strip() for part in parts]


def without_thresholds(expr: str) -> list[str]:
    """The expressions whose series an alert's condition filters: each operand of a top-level
    ``and``/``or``/``unless``, with its top-level comparison against a threshold cut off.

    Why: an alert's expression returns only the series past the threshold, so on a healthy
    gateway it rightly returns nothing, and "no series" cannot tell a healthy gateway from a
    misspelt label. Without the comparison, the expression must return the series it judges."""
    operands = []
    for operand in _top_level_split(expr, _SET_OPERATORS, words=True):
        sides = _top_level_split(operand, _COMPARISONS, words=False)
        operands.append(sides[0])
    return operands
