"""Structured log lines: one JSON object (or key=value line) per event, to stderr.

Callers log an event name plus fields: ``log.info("request", extra=fields(status=200))``.
Fields are chosen by the caller, never dumped wholesale from a request: no body, no query
string, no header values other than ids (terminal id, request id), so no personal data
(citizen id, name, card number, PIN) reaches a log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["configure_logging", "fields", "log_fast"]

_FIELDS_ATTR: Final = "gateway_fields"
# One encoder for every line: json.dumps with options builds a new encoder per call.
_JSON: Final = json.JSONEncoder(ensure_ascii=False, default=str)


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` argument that attaches structured fields to one log record."""
    return {_FIELDS_ATTR: values}


def log_fast(logger: logging.Logger, level: int, event: str, values: dict[str, Any]) -> None:
    """``logger.log(level, event, extra=fields(**values))`` for lines written on every request
    (the access log): the same record through the same handlers and filters, without
    Logger.log's walk up the stack for the caller's file and line, which no line format here
    shows and which was a third of the access log's cost."""
    if logger.isEnabledFor(level):
        record = logger.makeRecord(logger.name, level, "", 0, event, (), None)
        setattr(record, _FIELDS_ATTR, values)
        logger.handle(record)


class _Formatter(logging.Formatter):
    def __init__(self, style: str) -> None:
        super().__init__()
        self._json = style == "json"
        # The timestamp's seconds part, formatted once per second rather than per line.
        self._second = -1
        self._second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "pid": record.process,
        }
        line.update(getattr(record, _FIELDS_ATTR, {}))
        if record.exc_info:
            line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["traceback"] = self.formatException(record.exc_info)
        if self._json:
            return _JSON.encode(line)
        return " ".join(f"{key}={_kv(value)}" for key, value in line.items())


def _kv(value: Any) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "-_.:/@+" for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class _ParserErrorFilter(logging.Filter):
    """aiohttp logs a request its HTTP parser refuses with the raw request line, query string
    and all (where a careless client may have put a citizen id). Keep the fact, drop the
    bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "malformed HTTP request refused by the parser"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            setattr(record, _FIELDS_ATTR, {"exc_type": type(exc).__name__, "status": exc.code})
        return True


def configure_logging(style: str, level: str) -> None:
    """Route every logger to one stderr handler with the chosen line format. Idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(style))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log repeats ours with the raw path (which may carry a query string).
    logging.getLogger("aiohttp.access").disabled = True
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ParserErrorFilter) for f in server_log.filters):
        server_log.addFilter(_ParserErrorFilter())
    # Alembic narrates every context it opens; gateway.serve logs the revisions itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
