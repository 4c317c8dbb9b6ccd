"""Log lines: the access log's fast path writes exactly the line ``logging`` would, and defers
to ``logging`` whenever another handler or a filter is in the way; personal data leaves masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gateway.db import make_engine
from gateway.logs import configure_logging, fields, log_fast
from gateway.settings import load_settings

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


# -- personal data ----------------------------------------------------------------------------

CITIZEN_ID, NAME, PHONE, CARD_NO = "310104198502030011", "欧阳娜娜", "13912345678", "A12345678"
MASKED = ("310*************11", "欧*", "*******5678", "A******78")


def test_personal_data_is_masked_on_every_line(stream: io.StringIO) -> None:
    """Planted in named fields, in free text, in an exception and in a caller-chosen request
    id: the line carries only the masked forms (sscard.masking), on both paths."""
    log = logging.getLogger("gateway.test")
    planted = {
        "citizen_id": CITIZEN_ID,
        "name": NAME,
        "phone": PHONE,
        "card_no": CARD_NO,
        "detail": f"holder {CITIZEN_ID} phone {PHONE}",
        "nested": {"psn_name": NAME, "rows": [CITIZEN_ID]},
    }
    log.warning(f"refused {CITIZEN_ID}", extra=fields(**planted))
    try:
        raise ValueError(f"no card for {CITIZEN_ID} (phone {PHONE})")
    except ValueError:
        log.exception("unhandled exception", extra=fields(request_id="r" * 32))
    log_fast(log, logging.INFO, "request", {**FIELDS, "request_id": CITIZEN_ID, "name": NAME})
    text = stream.getvalue()
    for raw in (CITIZEN_ID, NAME, PHONE, CARD_NO, "娜娜"):
        assert raw not in text
    warning, failure, access = _lines(stream)
    assert warning["event"] == "refused 310*************11"
    assert (warning["citizen_id"], warning["name"], warning["phone"], warning["card_no"]) == MASKED
    assert warning["detail"] == "holder 310*************11 phone *******5678"
    assert warning["nested"] == {"psn_name": "欧*", "rows": ["310*************11"]}
    # The exception's type and frames, never its message (gateway.logs).
    assert "builtins.ValueError (message not logged)" in str(failure["traceback"])
    assert "no card for 310" not in str(failure["traceback"])  # the rendered message
    assert failure["exc_type"] == "ValueError"
    assert (access["request_id"], access["name"], access["route"]) == (MASKED[0], "欧*", "/v1/echo")


def test_a_failed_statement_does_not_quote_its_parameters(tmp_path: Path) -> None:
    """The database's error (which reaches the traceback of an unhandled exception) names the
    statement, never the citizen id and name bound to it."""
    engine = make_engine(load_settings(environ={}, overrides={"data_dir": tmp_path}))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE holder (citizen_id TEXT PRIMARY KEY, name TEXT)"))
            insert = text("INSERT INTO holder VALUES (:citizen_id, :name)")
            connection.execute(insert, {"citizen_id": CITIZEN_ID, "name": NAME})
            with pytest.raises(IntegrityError) as failed:
                connection.execute(insert, {"citizen_id": CITIZEN_ID, "name": NAME})
    finally:
        engine.dispose()
    message = str(failed.value)
    assert "INSERT INTO holder" in message
    assert CITIZEN_ID not in message
    assert NAME not in message
