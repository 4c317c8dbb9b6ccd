"""Money metrics, read from the answers of the settlement routes at the gateway's door.

``gateway_settlements_total``, ``gateway_settled_amount_fen_total`` (fund, account, cash),
``gateway_settlement_cancels_total`` and ``gateway_reconciliations_total`` (see
gateway.metrics) are counted from what the settle, discharge, cancel and reconciliation routes
answer: the public /v1 contract (docs/CONTRACTS.md), which holds whatever the use cases behind
them become. A settlement's answer carries its visit type, its split and, through the hub, its
``route``; a replayed answer (``Idempotent-Replayed: true``) is a settlement counted already and
is not counted again, so a terminal's retries never inflate the figures.

Not counted: the national-interface door (gateway.fsi, the envelope with infno 2207 ...),
which answers the same use cases in its own format; counting where the use cases make a
settlement (an observer passed to them) would cover both doors and spare the parse here.

Why here and not in the use cases: the use cases belong to ``settlement``, which must not
import the gateway's metrics, and their route handlers only translate. Wrapping the handlers
where the route table is put together (gateway.routes) keeps the counting in one place. These
counters are the gateway's since start-up; the day's exact figures are the database's (/ops,
reconciliation).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel

from gateway import metrics
from gateway.routing import Call, Handler, Route

__all__ = ["REPLAYED_HEADER", "measure_settlement_routes"]

REPLAYED_HEADER: Final = "Idempotent-Replayed"
_REMOTE_ROUTES: Final = frozenset({"in_province_remote", "cross_province"})
_PAYERS: Final = (("fund", "fund_pay_sumamt"), ("account", "acct_pay"), ("cash", "psn_cash_pay"))
_MATCHED: Final = "0"  # stmt_rslt: 0 match, 1 mismatch (3201/3202)


# Labelled children per (route, visit type), looked up once (bounded: 3 routes x 5 types).
_SETTLED_CHILDREN: dict[tuple[str, str], tuple[Any, tuple[tuple[str, Any], ...]]] = {}


def _settled(answer: Mapping[str, Any]) -> None:
    key = (_route_label(answer), metrics.visit_type_label(answer.get("visit_type")))
    children = _SETTLED_CHILDREN.get(key)
    if children is None:
        children = (
            metrics.SETTLEMENTS.labels(*key),
            tuple(
                (field, metrics.SETTLED_AMOUNT_FEN.labels(*key, payer)) for payer, field in _PAYERS
            ),
        )
        _SETTLED_CHILDREN[key] = children
    count, amounts = children
    count.inc()
    for field, amount in amounts:
        fen = answer.get(field)
        if type(fen) is int and fen > 0:
            amount.inc(fen)


def _cancelled(answer: Mapping[str, Any]) -> None:
    if answer.get("status") == "cancelled":
        visit_type = metrics.visit_type_label(answer.get("visit_type"))
        metrics.SETTLEMENT_CANCELS.labels(_route_label(answer), visit_type).inc()


def _reconciled(kind: str) -> Callable[[Mapping[str, Any]], None]:
    def count(answer: Mapping[str, Any]) -> None:
        result = "matched" if answer.get("stmt_rslt") == _MATCHED else "mismatched"
        metrics.RECONCILIATIONS.labels(kind, result).inc()

    return count


def _route_label(answer: Mapping[str, Any]) -> str:
    route = answer.get("route")
    return route if isinstance(route, str) and route in _REMOTE_ROUTES else "local"


# (method, path template) -> what its successful answer counts.
_COUNTED: Final[Mapping[tuple[str, str], Callable[[Mapping[str, Any]], None]]] = {
    ("POST", "/v1/settlements"): _settled,
    ("POST", "/v1/admissions/{admission_id}/discharge"): _settled,
    ("POST", "/v1/settlements/{setl_id}/cancel"): _cancelled,
    ("POST", "/v1/reconciliation/totals"): _reconciled("totals"),
    ("POST", "/v1/reconciliation/details"): _reconciled("details"),
}


def _fields(answer: BaseModel | web.StreamResponse) -> Mapping[str, Any]:
    """The answer's top-level fields when it is a fresh success, else an empty mapping."""
    if isinstance(answer, BaseModel):
        # A model is always a success (the pipeline renders it with the route's status).
        return {name: getattr(answer, name, None) for name in type(answer).model_fields}
    if (
        not isinstance(answer, web.Response)
        or not 200 <= answer.status < 300
        or answer.headers.get(REPLAYED_HEADER) == "true"
        or not isinstance(answer.body, bytes)
    ):
        return {}
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _measured(handler: Handler, count: Callable[[Mapping[str, Any]], None]) -> Handler:
    async def measured(call: Call[Any]) -> BaseModel | web.StreamResponse:
        answer = await handler(call)
        fields = _fields(answer)
        if fields:
            count(fields)
        return answer

    return measured


def measure_settlement_routes(routes: Iterable[Route]) -> tuple[Route, ...]:
    """``routes`` with the settle, discharge, cancel and reconciliation handlers counted."""
    return tuple(_measure(route) for route in routes)


def _measure(route: Route) -> Route:
    count = _COUNTED.get((route.method, route.path))
    if count is None:
        return route
    return dataclasses.replace(route, handler=_measured(route.handler, count))
