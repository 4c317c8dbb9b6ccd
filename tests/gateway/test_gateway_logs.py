"""Log lines: the access log's fast path writes exactly the line ``logging`` would, and defers
to ``logging`` whenever another handler or a filter is in the way."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway.logs import configure_logging, fields, log_fast

FIELDS = {"request_id": "r" * 32, "method": "POST", "route": "/v1/echo", "status": 200}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("json", "INFO")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_fast_line_is_the_logging_line(stream: io.StringIO) -> None:
    log = logging.getLogger("gateway.http")
    log_fast(log, logging.INFO, "request", dict(FIELDS))
    log.info("request", extra=fields(**FIELDS))
    fast, slow = _lines(stream)
    assert fast.pop("ts")
    assert slow.pop("ts")
    assert fast == slow
    assert fast["level"] == "info"
    assert fast["logger"] == "gateway.http"
    assert fast["event"] == "request"


def test_fast_line_respects_the_level(stream: io.StringIO) -> None:
    logging.getLogger().setLevel("WARNING")
    log_fast(logging.getLogger("gateway.http"), logging.INFO, "request", dict(FIELDS))
    assert stream.getvalue() == ""
    log_fast(logging.getLogger("gateway.http"), logging.ERROR, "request", dict(FIELDS))
    assert _lines(stream)[0]["level"] == "error"


def test_fast_line_reaches_other_handlers_and_filters(
    stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("gateway.http")
    with caplog.at_level(logging.INFO, logger="gateway.http"):
        log_fast(log, logging.INFO, "request", dict(FIELDS))
    assert [r.getMessage() for r in caplog.records] == ["request"]
    assert _lines(stream)[0]["route"] == "/v1/echo"  # and still in the configured stream

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return False

    drop = Drop()
    log.addFilter(drop)
    try:
        log_fast(log, logging.INFO, "request", dict(FIELDS))
    finally:
        log.removeFilter(drop)
    assert len(_lines(stream)) == 1
