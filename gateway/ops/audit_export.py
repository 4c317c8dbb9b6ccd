"""``GET /v1/ops/audit.csv``: the whole audit trail (or the days asked for) as CSV, streamed.

The trail only grows (gateway.audit), so the export is not read in one go: the rows are read
in pages of :data:`PAGE_ROWS` by id, newest first (each page one short read transaction, the
next one starting below the last id sent), and each page is written to the client as it is
read. Memory stays one page whatever the trail's length, and no read holds a transaction for
the length of a download. Rows appended meanwhile have higher ids than the first page's and
are not in this export; none is sent twice.

Query parameters: ``from`` and ``to``, days (Beijing time, YYYY-MM-DD, both included): only
the rows written on those days; ``limit``: at most that many rows, the newest. Neither: every
row. A range that ends before it starts is empty (a header row only).

A failure once the answer has begun cannot become a problem document (the status line is
sent): the connection is dropped instead, so the client sees a body cut short (a chunked
answer without its last chunk), never a short file that looks whole.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from typing import Any, Final

from aiohttp import web

from dbkit import BEIJING
from gateway.audit import AuditEntry, audit_csv_header, audit_csv_rows, list_audit
from gateway.errors import ErrorCode, GatewayError
from gateway.logs import fields
from gateway.middleware import REQUEST_ID_HEADER
from gateway.ops.roles import principal_of
from gateway.params import ascii_int
from gateway.query import optional_query_date
from gateway.routing import Call
from gateway.state import DATABASE, REQUEST_ID

__all__ = ["LIMIT_MAX", "PAGE_ROWS", "audit_export"]

log = logging.getLogger("gateway.ops.audit_export")

# Rows per read while streaming: one page in memory, one short read transaction each.
PAGE_ROWS: Final = 1000
# ?limit= at most (6 digits); without it, every row.
LIMIT_MAX: Final = 999_999


def _limit(call: Call[Any]) -> int | None:
    raw = call.request.query.get("limit")
    if raw is None:
        return None
    value = ascii_int(raw, max_digits=6)
    if value is None or value < 1:
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            f"query parameter limit must be 1 to {LIMIT_MAX}",
            errors=[{"field": "limit", "problem": f"1 to {LIMIT_MAX}", "type": "int_parsing"}],
        )
    return value


def _start_ms(day: dt.date) -> int:
    """00:00 Beijing time of ``day``, Unix ms."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=BEIJING).timestamp() * 1000)


def day_range_ms(first: dt.date | None, last: dt.date | None) -> tuple[int | None, int | None]:
    """[since, until) in Unix ms for the Beijing days ``first`` … ``last`` (both included);
    None where that end is open."""
    since_ms = None if first is None else _start_ms(first)
    if last is None or last == dt.date.max:
        return since_ms, None
    return since_ms, _start_ms(last + dt.timedelta(days=1))


async def audit_export(call: Call[None]) -> web.StreamResponse:
    principal_of(call)  # the route's authorize=ops_role(viewer) let it through
    left = _limit(call)
    since_ms, until_ms = day_range_ms(
        optional_query_date(call, "from"), optional_query_date(call, "to")
    )
    db = call.app[DATABASE]

    async def page(before_id: int | None) -> list[AuditEntry]:
        size = PAGE_ROWS if left is None else min(PAGE_ROWS, left - sent)
        entries: list[AuditEntry] = await db.read(
            partial(
                list_audit, limit=size, before_id=before_id, since_ms=since_ms, until_ms=until_ms
            )
        )
        return entries

    sent = 0
    # The first page before the answer starts: a database that does not answer is still a
    # problem document (503 DB_UNAVAILABLE), not a cut-off download.
    rows = await page(None)
    response = web.StreamResponse(
        headers={
            "Cache-Control": "no-store",
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="audit.csv"',
            # Set here: the middleware's own is too late for an answer already begun.
            REQUEST_ID_HEADER: call.request[REQUEST_ID],
        }
    )
    await response.prepare(call.request)
    try:
        await response.write(audit_csv_header().encode())
        while rows:
            await response.write(audit_csv_rows(rows).encode())
            sent += len(rows)
            if len(rows) < PAGE_ROWS or (left is not None and sent >= left):
                break
            rows = await page(rows[-1].id)
        await response.write_eof()
    except Exception as exc:
        _cut_short(call.request, exc, sent)
    return response


def _cut_short(request: web.Request, exc: Exception, sent: int) -> None:
    extra = fields(request_id=request[REQUEST_ID], rows_sent=sent, exc_type=type(exc).__name__)
    if isinstance(exc, ConnectionError):
        log.info("audit export: the client went away", extra=extra)
    else:
        log.exception("audit export failed after it began: connection dropped", extra=extra)
    # Dropped, not ended: aiohttp's own end of the answer then fails on the closed transport,
    # and the client never receives the last chunk that would make the body look complete.
    if request.transport is not None:
        request.transport.abort()
