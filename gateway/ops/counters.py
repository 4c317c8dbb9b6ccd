"""Rejections by reason and card-authentication outcomes, from the gateway's own Prometheus
counters (gateway.metrics): the same numbers /metrics shows, summed over every worker in
multiprocess mode. The hub client's counters (``ssc_hub_calls``, ``ssc_hub_breaker_state``)
are read the same way.

They count since the gateway started, not per day, and the database keeps no per-day record
of them (a rejection writes nothing; card challenges are rows, but a used challenge is not an
authenticated card, and refusals by code are not stored). So the summary says since when:
:data:`COUNTERS_SINCE`, a gauge each worker sets to its start time when this module is
imported, read as the minimum over every worker that ever ran (``min``, not ``livemin``: a
dead worker's counters stay in the sums, so its start time stays too). gateway.serve empties
the metrics folder at start-up, so that is the first worker's start: before it nothing was
counted. In one process (tests, an embedded app) it is this module's import, before any
request.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from prometheus_client import Gauge
from prometheus_client.parser import text_string_to_metric_families

from dbkit import BEIJING
from gateway.errors import ERRORS
from gateway.ops.models import CardAuthOutcomes, CodeCount, HubCallCount

__all__ = ["COUNTERS_SINCE", "Counters", "counters_note", "read_counters"]

COUNTERS_SINCE: Final = Gauge(
    "gateway_counters_start_time_seconds",
    "Unix time the gateway's counters began: the earliest start of any worker since the "
    "gateway started.",
    multiprocess_mode="min",
)
COUNTERS_SINCE.set(time.time())
COUNTERS_SINCE_SAMPLE: Final = "gateway_counters_start_time_seconds"
CHALLENGE_ROUTE: Final = "/v1/card-auth/challenge"
RESPONSE_ROUTE: Final = "/v1/card-auth/response"
# The card's verdicts (gateway.card_auth.routes): one per card answer that was judged, by
# outcome (authenticated, refused, error) and reason. An answer that never reached the card's
# checks (malformed, unsigned, replayed, rate-limited) has no verdict: it is counted apart.
CARD_VERDICTS_SAMPLE: Final = "gateway_card_authentications_total"


# The hub client's metrics (gateway.crossprov.metrics); absent until cross-province is used.
HUB_CALLS_SAMPLE: Final = "ssc_hub_calls_total"
BREAKER_SAMPLE: Final = "ssc_hub_breaker_state"
BREAKER_OPEN: Final = 2.0


@dataclass(frozen=True, slots=True)
class Counters:
    rejections: list[CodeCount]
    card_auth: CardAuthOutcomes
    hub_calls: list[HubCallCount]
    breaker_open_workers: int
    # When counting began; None only if the exposition lacks the gauge (not this gateway's).
    since: dt.datetime | None


def counters_note(since: dt.datetime | None) -> str:
    """The sentence the page shows above the counters, so that nobody reads them as the
    chosen day's."""
    start = (
        "since the gateway started"
        if since is None
        else f"since the gateway started at {since.astimezone(BEIJING):%Y-%m-%d %H:%M:%S} "
        "Beijing time"
    )
    return (
        f"Rejections, card authentication and hub calls are the gateway's counters {start} "
        "(all workers), not figures of the chosen day."
    )


def read_counters(exposition: bytes) -> Counters:
    """Parse the text exposition (gateway.metrics.render_latest) into the page's figures."""
    rejections: dict[str, float] = {}
    requests: dict[tuple[str, str], float] = {}
    verdicts: dict[tuple[str, str], float] = {}  # (outcome, reason) summed over generations
    hub_calls: dict[tuple[str, str], float] = {}
    breaker_open = 0
    since_s: float | None = None
    for family in text_string_to_metric_families(exposition.decode("utf-8")):
        for sample in family.samples:
            if sample.name == "gateway_rejections_total":
                code = sample.labels.get("code", "")
                rejections[code] = rejections.get(code, 0.0) + sample.value
            elif sample.name == "gateway_requests_total":
                key = (sample.labels.get("route", ""), sample.labels.get("status", ""))
                requests[key] = requests.get(key, 0.0) + sample.value
            elif sample.name == CARD_VERDICTS_SAMPLE:
                key = (sample.labels.get("outcome", ""), sample.labels.get("reason", ""))
                verdicts[key] = verdicts.get(key, 0.0) + sample.value
            elif sample.name == HUB_CALLS_SAMPLE:
                key = (sample.labels.get("infno", ""), sample.labels.get("outcome", ""))
                hub_calls[key] = hub_calls.get(key, 0.0) + sample.value
            elif sample.name == BREAKER_SAMPLE and sample.value == BREAKER_OPEN:
                # One sample per live worker in multiprocess mode (liveall), one otherwise.
                breaker_open += 1
            elif sample.name == COUNTERS_SINCE_SAMPLE and sample.value > 0:
                since_s = sample.value if since_s is None else min(since_s, sample.value)
    responses = {status: n for (route, status), n in requests.items() if route == RESPONSE_ROUTE}
    refusals = {reason: n for (outcome, reason), n in verdicts.items() if outcome == "refused"}
    judged_failures = sum(n for (outcome, _), n in verdicts.items() if outcome != "authenticated")
    answered_failures = sum(n for status, n in responses.items() if status != "200")
    return Counters(
        rejections=_ranked(rejections.items()),
        card_auth=CardAuthOutcomes(
            challenges_issued=int(requests.get((CHALLENGE_ROUTE, "200"), 0.0)),
            authenticated=int(responses.get("200", 0.0)),
            refused=int(sum(refusals.values())),
            refusals_by_code=_ranked(refusals.items()),
            # Workers count both counters at once, so this is ≥ 0 up to a scrape between the
            # two increments of one request.
            not_judged=max(0, int(answered_failures - judged_failures)),
        ),
        hub_calls=[
            HubCallCount(infno=infno, outcome=outcome, count=int(n))
            for (infno, outcome), n in sorted(hub_calls.items())
            if n >= 1
        ],
        breaker_open_workers=breaker_open,
        since=None if since_s is None else dt.datetime.fromtimestamp(since_s, dt.UTC),
    )


def _ranked(counts: Iterable[tuple[str, float]]) -> list[CodeCount]:
    # Most frequent first; the label set is bounded (ErrorCode), so is this list.
    rows = [_explained(code, int(n)) for code, n in counts if n >= 1]
    return sorted(rows, key=lambda row: (-row.count, row.code))


def _explained(code: str, count: int) -> CodeCount:
    """The count with what the code means (the page's drill-down from a code)."""
    spec = ERRORS.get(code)
    if spec is None:  # not this gateway's code: shown as it is
        return CodeCount(code=code, count=count)
    return CodeCount(
        code=code,
        count=count,
        status=spec.status,
        title=spec.title,
        message=spec.message,
        message_zh=spec.message_zh,
    )
