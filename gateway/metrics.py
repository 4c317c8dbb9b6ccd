"""Prometheus metrics, correct with one worker process or several.

With several workers each process keeps its own counters; prometheus-client's multiprocess
mode has each write to mmap'd files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (served by
whichever worker takes the scrape) sums them all. The variable must be set BEFORE
prometheus_client is first imported in a process, because the library picks its value class at
import time: the supervisor (gateway.serve) sets it and empties the folder before it starts any
worker, and imports nothing that imports this module before that. Without the variable (tests,
``create_app`` embedded elsewhere) the default in-process registry is used.

Label values are bounded: ``route`` is the route's path template (or "unmatched"), ``code`` an
ErrorCode, ``status`` an HTTP status. Never a raw path, a terminal id or anything from a body.
"""

from __future__ import annotations

import os
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
    "CONTENT_TYPE_LATEST",
    "INFLIGHT",
    "NONCES_SWEPT",
    "REJECTIONS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "TERMINAL_HITS",
    "TERMINAL_LOOKUPS",
    "TERMINAL_MISSES",
    "UNMATCHED_ROUTE",
    "count_request",
    "render_latest",
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
