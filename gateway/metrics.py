"""Prometheus metrics, correct with one worker process or several.

With several workers each process keeps its own counters; prometheus-client's multiprocess
mode has each write to mmap'd files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (served by
whichever worker takes the scrape) sums them all. The variable must be set BEFORE
prometheus_client is first imported in a process, because the library picks its value class at
import time: the supervisor (gateway.serve) sets it and empties the folder before it starts any
worker, and imports nothing that imports this module before that. Without the variable (tests,
``create_app`` embedded elsewhere) the default in-process registry is used.

Label values are bounded: ``route`` is the route's path template (or "unmatched"), ``code`` and
``reason`` an ErrorCode, ``status`` an HTTP status, ``visit_type`` one of the API's four visit
types (anything else is counted as "other"), the rest small fixed sets named where each metric
is defined. Never a raw path, a terminal id, an institution or anything else from a body.

Where each metric is measured (the alert rules in deploy/prometheus/alerts.yml and the
dashboards in deploy/grafana use them; docs/operations.md has a runbook for every alert):

* HTTP: ``gateway_requests_total``, ``gateway_request_duration_seconds``,
  ``gateway_rejections_total``, ``gateway_inflight_requests`` (gateway.middleware);
* database: ``gateway_db_write_duration_seconds``, ``gateway_db_errors_total``
  (gateway.db_metrics.MeasuredDatabase, the served app's database);
* processes: ``gateway_worker_restarts_total`` (the supervisor, gateway.serve);
  ``gateway_counters_start_time_seconds`` (gateway.ops.counters);
* card authentication: ``gateway_card_authentications_total`` (the response route,
  gateway.card_auth.routes), ``gateway_card_cert_cache_lookups_total``
  (gateway.card_auth.service), ``gateway_card_crl_next_update_timestamp_seconds`` and
  ``gateway_card_crl_loaded`` (each worker's CRL refresh, gateway.card_auth.revocation);
* the year-end roll-over: ``gateway_rollover_pending_accounts``,
  ``gateway_rollover_due_timestamp_seconds`` (each worker's check, gateway.housekeeping);
* money: ``gateway_settlements_total``, ``gateway_settlement_cancels_total``,
  ``gateway_settled_amount_fen_total``, ``gateway_reconciliations_total``
  (gateway.settlement_metrics, from the answers of the settlement routes);
* the national hub: ``ssc_hub_*`` (gateway.crossprov.metrics).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

__all__ = [
    "CARD_AUTHENTICATIONS",
    "CARD_CERT_CACHE_HITS",
    "CARD_CERT_CACHE_MISSES",
    "CARD_CRL_LOADED",
    "CARD_CRL_NEXT_UPDATE",
    "CONTENT_TYPE_LATEST",
    "DB_ERRORS",
    "DB_WRITE_SECONDS",
    "FSI_EXPIRED_SWEPT",
    "INFLIGHT",
    "NONCES_SWEPT",
    "RECONCILIATIONS",
    "REJECTIONS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "ROLLOVER_DUE",
    "ROLLOVER_PENDING_ACCOUNTS",
    "SETTLED_AMOUNT_FEN",
    "SETTLEMENTS",
    "SETTLEMENT_CANCELS",
    "TERMINAL_HITS",
    "TERMINAL_LOOKUPS",
    "TERMINAL_MISSES",
    "UNMATCHED_ROUTE",
    "WORKER_RESTARTS",
    "count_request",
    "observe_card_crls",
    "render_latest",
    "visit_type_label",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE: Final = "unmatched"

REQUESTS: Final = Counter(
    "gateway_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS: Final = Histogram(
    "gateway_request_duration_seconds",
    "Time from request start to response, by route template.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REJECTIONS: Final = Counter(
    "gateway_rejections",
    "Requests answered with an error, by stable error code.",
    ["code"],
)
INFLIGHT: Final = Gauge(
    "gateway_inflight_requests",
    "Requests being handled now (summed over live workers).",
    multiprocess_mode="livesum",
)
TERMINAL_LOOKUPS: Final = Counter(
    "gateway_terminal_lookups",
    "Terminal directory lookups, by result (hit: served from the in-process cache).",
    ["result"],
)
# Labelled children used on every request, looked up once: ``labels()`` takes a lock and
# builds its key each call, which cost as much as the increment itself in multiprocess mode.
TERMINAL_HITS: Final = TERMINAL_LOOKUPS.labels("hit")
TERMINAL_MISSES: Final = TERMINAL_LOOKUPS.labels("miss")
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def count_request(route: str, method: str, status: int, elapsed_s: float) -> None:
    """One answered request: REQUESTS and REQUEST_SECONDS. The labels are bounded (route
    template, known method, HTTP status), and so is the cache of their children."""
    key = (route, method, status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = (REQUESTS.labels(route, method, str(status)), REQUEST_SECONDS.labels(route))
        _REQUEST_CHILDREN[key] = children
    children[0].inc()
    children[1].observe(elapsed_s)


NONCES_SWEPT: Final = Counter(
    "gateway_nonces_swept",
    "Expired request nonces deleted.",
)

FSI_EXPIRED_SWEPT: Final = Counter(
    "gateway_fsi_expired_swept",
    "Expired national-interface rows deleted by housekeeping (kind: file, presence).",
    ["kind"],
)

# --- database ------------------------------------------------------------------------------------

DB_WRITE_SECONDS: Final = Histogram(
    "gateway_db_write_duration_seconds",
    "Time from asking for a write unit of work to its commit (or failure), waiting for the "
    "process's writer queue and the database's write lock included.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DB_ERRORS: Final = Counter(
    "gateway_db_errors",
    "Units of work that failed in the database itself, by op (read, write) and kind "
    "(unavailable: connection lost or pool exhausted, answered 503 DB_UNAVAILABLE; failed: "
    "any other database error). Unique-key conflicts are not counted: they are how replays "
    "and races are told apart, and are answered by their own codes.",
    ["op", "kind"],
)

# --- processes -----------------------------------------------------------------------------------

WORKER_RESTARTS: Final = Counter(
    "gateway_worker_restarts",
    "Worker processes that died unexpectedly and were started again by the supervisor.",
)

# --- card authentication -------------------------------------------------------------------------

CARD_AUTHENTICATIONS: Final = Counter(
    "gateway_card_authentications",
    "Card answers judged (POST /v1/card-auth/response), by card generation (2, 3), outcome "
    "(authenticated; refused: a 4xx code; error: a 5xx code) and reason (the error code, "
    "none when authenticated).",
    ["generation", "outcome", "reason"],
)
_CARD_CERT_CACHE: Final = Counter(
    "gateway_card_cert_cache_lookups",
    "Third-generation card answers whose certificate chain was found verified in this "
    "worker's cache (hit) or had to be verified (miss: SM2 chain verification).",
    ["result"],
)
CARD_CERT_CACHE_HITS: Final = _CARD_CERT_CACHE.labels("hit")
CARD_CERT_CACHE_MISSES: Final = _CARD_CERT_CACHE.labels("miss")
# livemax: every worker reads the same card_crls table; one that has not refreshed yet shows
# an older list, and the newest is what is in force. The label is bounded by the CAs of the
# pinned card PKI (an import refuses any other issuer).
CARD_CRL_NEXT_UPDATE: Final = Gauge(
    "gateway_card_crl_next_update_timestamp_seconds",
    "nextUpdate (Unix time) of the card CRL in force, by issuer (SM3 of the CA's name, hex, as "
    "`gateway admin crl list` and GET /v1/ops/crls show it). Past it, the CA has a newer list "
    "the gateway has not imported: cards revoked since are still accepted (fail open).",
    ["issuer_sm3"],
    multiprocess_mode="livemax",
)


# livemax as above: a CRL is in force for the gateway once any worker has loaded it (the others
# do within card_crl_refresh_s). One series per CA of the pinned PKI, 0 included: the alert
# needs the 0, since a CA that never had a CRL has no nextUpdate series to alert on.
CARD_CRL_LOADED: Final = Gauge(
    "gateway_card_crl_loaded",
    "1 if a card CRL of this CA of the pinned card PKI (the root or an issuing CA; issuer_sm3 "
    "as above) is in force, 0 if none was ever imported: then no certificate it revoked is "
    "refused at card authentication.",
    ["issuer_sm3"],
    multiprocess_mode="livemax",
)


def observe_card_crls(next_update_ms: Mapping[str, int], pinned: Mapping[str, bool]) -> None:
    """Each issuer's list in force after a worker's CRL refresh, and whether each CA of the
    pinned PKI has one (RevokedSerials' observer)."""
    for issuer_sm3, ms in next_update_ms.items():
        CARD_CRL_NEXT_UPDATE.labels(issuer_sm3).set(ms / 1000)
    for issuer_sm3, in_force in pinned.items():
        CARD_CRL_LOADED.labels(issuer_sm3).set(1 if in_force else 0)


# --- the year-end roll-over ----------------------------------------------------------------------

# Set by each worker's roll-over check (every rollover_check_interval_s) from the database, so
# every worker reports the same figure: livemax shows it once.
ROLLOVER_PENDING_ACCOUNTS: Final = Gauge(
    "gateway_rollover_pending_accounts",
    "Personal accounts still in a year that has ended (Beijing time) while that year's "
    "roll-over is not complete; 0 once it is.",
    multiprocess_mode="livemax",
)
ROLLOVER_DUE: Final = Gauge(
    "gateway_rollover_due_timestamp_seconds",
    "When the last ended year's roll-over fell due (Unix time of 00:00 Beijing time, "
    "1 January of this year): the alert measures how late an unfinished roll-over is.",
    multiprocess_mode="livemax",
)

# --- money ---------------------------------------------------------------------------------------

# The API's visit types (gateway.settlement_api.models); anything else is labelled "other".
_VISIT_TYPES: Final = frozenset({"outpatient", "emergency", "inpatient", "pharmacy"})

SETTLEMENTS: Final = Counter(
    "gateway_settlements",
    "Settlements made through the /v1 door (an answered settle or discharge; replays of a "
    "stored answer are not counted), by route (local, in_province_remote, cross_province) "
    "and visit type. The national-interface door (/fsi) is not counted here yet.",
    ["route", "visit_type"],
)
SETTLEMENT_CANCELS: Final = Counter(
    "gateway_settlement_cancels",
    "Settlements cancelled (replays not counted), by route and visit type.",
    ["route", "visit_type"],
)
SETTLED_AMOUNT_FEN: Final = Counter(
    "gateway_settled_amount_fen",
    "Amounts of the settlements made, in fen, by route, visit type and payer (fund, account, "
    "cash: the three add up to the visit's total). Exact as long as a series stays below "
    "2^53 fen.",
    ["route", "visit_type", "payer"],
)
RECONCILIATIONS: Final = Counter(
    "gateway_reconciliations",
    "Reconciliation runs answered, by kind (totals: 3201, details: 3202) and result "
    "(matched, mismatched).",
    ["kind", "result"],
)


# The alerting counters' series exist from start-up at 0: a series born at 1 would hide its
# first increment from rate() and increase(), and an alert on it would miss the first event.
for _op in ("read", "write"):
    for _kind in ("unavailable", "failed"):
        DB_ERRORS.labels(_op, _kind)
for _kind in ("totals", "details"):
    for _result in ("matched", "mismatched"):
        RECONCILIATIONS.labels(_kind, _result)


def visit_type_label(value: object) -> str:
    """A visit type as a label value: one of the API's, or "other" (bounded)."""
    return value if isinstance(value, str) and value in _VISIT_TYPES else "other"


def render_latest() -> bytes:
    """The text exposition of every metric, summed over all workers in multiprocess mode.

    Reads one small file per worker process in multiprocess mode: call it off the event loop.
    """
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: totals must not go backwards)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
