"""gateway.query: one reading of a query-string date for every route (YYYY-MM-DD exactly)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.errors import GatewayError
from gateway.query import optional_query_date, query_date
from gateway.routing import Call


class _Call:
    def __init__(self, query: str) -> None:
        self.request = make_mocked_request("GET", f"/x?{query}")


def call_with(query: str) -> Call[Any]:
    return cast(Call[Any], _Call(query))


def test_a_date_is_read_and_an_absent_optional_one_is_none() -> None:
    assert query_date(call_with("date=2026-12-07")) == dt.date(2026, 12, 7)
    assert optional_query_date(call_with("begin=2024-02-29"), "begin") == dt.date(2024, 2, 29)
    assert optional_query_date(call_with("other=1"), "begin") is None


@pytest.mark.parametrize(
    "raw",
    ["", "20261207", "2026-1-07", "2026-12-7", "2026/12/07", "2026-02-30", "2026-12-07x", "yes"],
)
def test_anything_else_is_a_validation_error_naming_the_parameter(raw: str) -> None:
    for read in (
        lambda: query_date(call_with(f"day={raw}"), "day"),
        lambda: optional_query_date(call_with(f"day={raw}"), "day"),
    ):
        with pytest.raises(GatewayError) as refused:
            read()
        assert refused.value.code == "VALIDATION_FAILED"
        assert [e["field"] for e in refused.value.errors or []] == ["day"]


def test_a_required_date_that_is_absent_is_refused() -> None:
    with pytest.raises(GatewayError) as refused:
        query_date(call_with("other=1"))
    assert "query parameter date must be YYYY-MM-DD" in str(refused.value)
