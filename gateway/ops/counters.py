"""Rejections by reason and card-authentication outcomes, from the gateway's own Prometheus
counters (gateway.metrics): the same numbers /metrics shows, summed over every worker in
multiprocess mode. They count since the gateway (re)started, not per day: the page says so.
The hub client's counters (``ssc_hub_calls``, ``ssc_hub_breaker_state``) are read the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from gateway.card_auth.routes import CARD_AUTH_ROUTES
from gateway.ops.models import CardAuthOutcomes, CodeCount, HubCallCount

__all__ = ["COUNTERS_NOTE", "Counters", "read_counters"]

COUNTERS_NOTE: Final = (
    "Rejections and card authentication are the gateway's counters since it last started "
    "(all workers), not figures of the chosen day."
)
CHALLENGE_ROUTE: Final = "/v1/card-auth/challenge"
RESPONSE_ROUTE: Final = "/v1/card-auth/response"
# The codes the card-authentication routes declare. Some (CARD_LOST …) are also answered by
# the registry re-check at eligibility, so the breakdown is "card refusals", not only 0x88 ones.
CARD_AUTH_CODES: Final = frozenset(code for route in CARD_AUTH_ROUTES for code in route.errors)


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


def read_counters(exposition: bytes) -> Counters:
    """Parse the text exposition (gateway.metrics.render_latest) into the page's figures."""
    rejections: dict[str, float] = {}
    requests: dict[tuple[str, str], float] = {}
    hub_calls: dict[tuple[str, str], float] = {}
    breaker_open = 0
    for family in text_string_to_metric_families(exposition.decode("utf-8")):
        for sample in family.samples:
            if sample.name == "gateway_rejections_total":
                code = sample.labels.get("code", "")
                rejections[code] = rejections.get(code, 0.0) + sample.value
            elif sample.name == "gateway_requests_total":
                key = (sample.labels.get("route", ""), sample.labels.get("status", ""))
                requests[key] = requests.get(key, 0.0) + sample.value
            elif sample.name == HUB_CALLS_SAMPLE:
                key = (sample.labels.get("infno", ""), sample.labels.get("outcome", ""))
                hub_calls[key] = hub_calls.get(key, 0.0) + sample.value
            elif sample.name == BREAKER_SAMPLE and sample.value == BREAKER_OPEN:
                # One sample per live worker in multiprocess mode (liveall), one otherwise.
                breaker_open += 1
    by_code = _ranked(rejections.items())
    responses = {status: n for (route, status), n in requests.items() if route == RESPONSE_ROUTE}
    return Counters(
        rejections=by_code,
        card_auth=CardAuthOutcomes(
            challenges_issued=int(requests.get((CHALLENGE_ROUTE, "200"), 0.0)),
            authenticated=int(responses.get("200", 0.0)),
            refused=int(sum(n for status, n in responses.items() if status != "200")),
            refusals_by_code=[row for row in by_code if row.code in CARD_AUTH_CODES],
        ),
        hub_calls=[
            HubCallCount(infno=infno, outcome=outcome, count=int(n))
            for (infno, outcome), n in sorted(hub_calls.items())
            if n >= 1
        ],
        breaker_open_workers=breaker_open,
    )


def _ranked(counts: Iterable[tuple[str, float]]) -> list[CodeCount]:
    # Most frequent first; the label set is bounded (ErrorCode), so is this list.
    rows = [CodeCount(code=code, count=int(n)) for code, n in counts if n >= 1]
    return sorted(rows, key=lambda row: (-row.count, row.code))
