"""Query-string dates, read one way on every route.

A date is exactly ``YYYY-MM-DD``: ``date.fromisoformat`` alone would also take ``20261207`` (Python
3.11 reads the basic ISO form), so one route took what the next refused. A date that is missing
where it is required, or not of that form, is ``422 VALIDATION_FAILED`` naming the parameter in
``errors[]``, as a body field's error is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.errors import ErrorCode, GatewayError
from gateway.routing import Call

__all__ = ["bad_date", "optional_query_date", "query_date"]


def bad_date(name: str, detail: str = "") -> GatewayError:
    """The refusal of query parameter ``name``; ``detail`` adds what range it must be in."""
    return GatewayError(
        ErrorCode.VALIDATION_FAILED,
        f"query parameter {name} must be YYYY-MM-DD{detail}",
        errors=[{"field": name, "problem": "must be YYYY-MM-DD", "type": "date_parsing"}],
    )


def optional_query_date(call: Call[Any], name: str, *, detail: str = "") -> dt.date | None:
    """Query parameter ``name`` as a date, None when it is absent."""
    raw = call.request.query.get(name)
    if raw is None:
        return None
    if len(raw) != 10 or raw[4] != "-" or raw[7] != "-":
        raise bad_date(name, detail)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise bad_date(name, detail) from None


def query_date(call: Call[Any], name: str = "date") -> dt.date:
    """Query parameter ``name`` as a date; required."""
    day = optional_query_date(call, name)
    if day is None:
        raise bad_date(name)
    return day
