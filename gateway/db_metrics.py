"""The served gateway's database, measured: write latency and database failures.

:class:`MeasuredDatabase` is :class:`gateway.db.Database` with every ``write`` timed into
``gateway_db_write_duration_seconds`` (from the call to the commit: the wait in the writer
queue and for the write lock is what a request feels, so it is included) and every failure of
the database itself counted in ``gateway_db_errors_total``.

Why a subclass and not code in gateway.db: gateway.db is imported by the supervisor before
PROMETHEUS_MULTIPROC_DIR is set (see gateway.metrics), so it must not import prometheus_client;
this module is imported only by the app factory, in the workers. Tests and tools that build a
plain Database measure nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.db import Database
from gateway.errors import ErrorCode

__all__ = ["MeasuredDatabase", "database_failure_kind"]

T = TypeVar("T")

_UNAVAILABLE: Final = "unavailable"
_FAILED: Final = "failed"


def database_failure_kind(exc: BaseException) -> str | None:
    """``unavailable`` (what Database turns into 503 DB_UNAVAILABLE), ``failed`` (any other
    error raised by the database driver), or None: not a failure of the database (a unit's own
    domain error, or a unique-key conflict, which is how replays and races are detected)."""
    if getattr(exc, "code", None) == ErrorCode.DB_UNAVAILABLE:
        return _UNAVAILABLE
    if isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError):
        return _FAILED
    return None


def _count_failure(op: str, exc: BaseException) -> None:
    kind = database_failure_kind(exc)
    if kind is not None:
        metrics.DB_ERRORS.labels(op, kind).inc()


class MeasuredDatabase(Database):
    async def write(
        self,
        unit: Callable[[Session], T],
        *,
        durable: bool = True,
        grouped: bool = False,
        concurrent: bool = False,
    ) -> T:
        started = time.perf_counter()
        try:
            return await super().write(
                unit, durable=durable, grouped=grouped, concurrent=concurrent
            )
        except Exception as exc:
            _count_failure("write", exc)
            raise
        finally:
            metrics.DB_WRITE_SECONDS.observe(time.perf_counter() - started)

    async def read(self, unit: Callable[[Session], T]) -> T:
        try:
            return await super().read(unit)
        except Exception as exc:
            _count_failure("read", exc)
            raise
