"""Structured log lines: one JSON object (or key=value line) per event, to stderr.

Callers log an event name plus fields: ``log.info("request", extra=fields(status=200))``.
Fields are chosen by the caller, never dumped wholesale from a request: no body, no query
string, no header values other than ids (terminal id, request id), so no personal data
(citizen id, name, card number, PIN) reaches a log line.

As a second line of defence every line is masked on its way out (:mod:`sscard.masking`, the
project's one rule): a field named for personal data (``citizen_id``, ``name``, ``card_no``,
``phone``, ``psn_no``, ...) by its kind's rule, and every other text, the event included,
with the citizen ids and mobile numbers in it masked.

Exception MESSAGES never reach a line: a logged exception is its type and its traceback's
frames (file, line, function, source line), for it and each exception it was raised from or
during, and no message. A message is where a library puts the data it was given (a database
error's key values and parameters, a name in a ValueError), and masking cannot know a name.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from types import TracebackType
from typing import Any, Final

from aiohttp.http_exceptions import HttpProcessingError

from sscard.masking import mask_fields, mask_text

__all__ = ["configure_logging", "fields", "log_fast"]

_FIELDS_ATTR: Final = "gateway_fields"
# Fields whose values come from closed vocabularies the gateway controls (the access log's
# method, route template, status, error code and duration; none is a personal field name):
# not scanned, because the access line is written per request and a scan costs ~1 µs.
_CLOSED_FIELDS: Final = frozenset({"method", "route", "status", "code", "duration_ms"})
# One encoder for every line: json.dumps with options builds a new encoder per call.
_JSON: Final = json.JSONEncoder(ensure_ascii=False, default=str)


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` argument that attaches structured fields to one log record."""
    return {_FIELDS_ATTR: values}


def log_fast(logger: logging.Logger, level: int, event: str, values: dict[str, Any]) -> None:
    """``logger.log(level, event, extra=fields(**values))`` for lines written on every request
    (the access log), at a third of the cost.

    When the line's only destination is the handler :func:`configure_logging` installed (the
    served gateway), it is rendered by that handler's formatter and written directly: the same
    bytes, without a LogRecord, the walk up the stack for the caller's file and line (no line
    format here shows it) or the handler chain. Anywhere else (a test's capture handler, a
    filter on the logger) it goes through ``logging`` as usual."""
    if not logger.isEnabledFor(level):
        return
    handler = _sole_line_handler(logger, level)
    if handler is not None:
        handler.write_fields(level, logger.name, event, values)
        return
    record = logger.makeRecord(logger.name, level, "", 0, event, (), None)
    setattr(record, _FIELDS_ATTR, values)
    logger.handle(record)


def _sole_line_handler(logger: logging.Logger, level: int) -> _LineHandler | None:
    """Our handler, if a record of ``logger`` at ``level`` would reach it and nothing else."""
    if logger.disabled or logger.filters:
        return None
    found: _LineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None or not isinstance(handler, _LineHandler) or handler.filters:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if found is None or level < found.level:
        return None
    return found


class _Formatter(logging.Formatter):
    def __init__(self, style: str) -> None:
        super().__init__()
        self._json = style == "json"
        # The timestamp's seconds part, formatted once per second rather than per line.
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def render(
        self, created: float, *, levelname: str, name: str, event: str, pid: int | None, values: Any
    ) -> dict[str, Any]:
        line: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": levelname.lower(),
            "logger": name,
            "event": mask_text(event),
            "pid": pid,
        }
        line.update(values)
        scanned = values.keys() - _CLOSED_FIELDS
        if scanned:
            line.update(mask_fields({key: values[key] for key in scanned}))
        return line

    def encode(self, line: dict[str, Any]) -> str:
        if self._json:
            return _JSON.encode(line)
        return " ".join(f"{key}={_kv(value)}" for key, value in line.items())

    def format(self, record: logging.LogRecord) -> str:
        line = self.render(
            record.created,
            levelname=record.levelname,
            name=record.name,
            event=record.getMessage(),
            pid=record.process,
            values=getattr(record, _FIELDS_ATTR, {}),
        )
        if record.exc_info:
            line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["traceback"] = mask_text(_traceback_without_messages(record.exc_info[1]))
        return self.encode(line)


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs: a StreamHandler with our formatter that
    can also write a line from its fields alone (:func:`log_fast`)."""

    def __init__(self, style: str) -> None:
        super().__init__(sys.stderr)
        self._line_formatter = _Formatter(style)
        self.setFormatter(self._line_formatter)

    def write_fields(self, level: int, name: str, event: str, values: dict[str, Any]) -> None:
        formatter = self._line_formatter
        try:
            text = formatter.encode(
                formatter.render(
                    time.time(),
                    levelname=logging.getLevelName(level),
                    name=name,
                    event=event,
                    pid=os.getpid(),
                    values=values,
                )
            )
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(text + self.terminator)
                self.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"name": name, "msg": event, "levelno": level}))


# A chain longer than this is cut (a cycle is impossible: each exception is visited once).
_MAX_CHAIN: Final = 8


def _traceback_without_messages(exc: BaseException | None) -> str:
    """The traceback Python would print, each exception's message left out."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < _MAX_CHAIN:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    parts: list[str] = []
    for failure in reversed(chain):
        parts.append("Traceback (most recent call last):")
        parts.extend(_frames(failure.__traceback__))
        kind = type(failure)
        parts.append(f"{kind.__module__}.{kind.__qualname__} (message not logged)")
    return "\n".join(parts)


def _frames(tb: TracebackType | None) -> list[str]:
    lines = []
    for frame in traceback.extract_tb(tb):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line}")
    return lines


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
    handler = _LineHandler(style)
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
