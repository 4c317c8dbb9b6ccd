"""The aiohttp application factory.

``create_app(settings)`` builds a ready-to-run application: middlewares, the router from the
route table, the OpenAPI document from the same table, and two resources in ``cleanup_ctx``:

* the database: engine + bounded thread pool (gateway.db; writes timed and failures counted by
  gateway.db_metrics), the terminal directory on top of it, and a check that the schema is at
  the migrations' heads (``serve`` migrates before it starts workers; a worker never migrates,
  so N workers never race to);
* the nonce sweeper task, and the year-end roll-over's (both gateway.housekeeping).

Importing this module imports prometheus_client: see gateway.metrics for why the supervisor
must set PROMETHEUS_MULTIPROC_DIR first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from gateway import migrate
from gateway.card_auth.service import card_auth_context
from gateway.crossprov.hub import hub_context
from gateway.db import make_engine
from gateway.db_metrics import MeasuredDatabase
from gateway.demo import demo_world_of
from gateway.fsi.door import at_fsi_path, fsi_context
from gateway.housekeeping import roll_over_forever, sweep_nonces_forever
from gateway.kek import resolve_keys
from gateway.limits.guards import TerminalLimits, limits_context
from gateway.middleware import observe, problems
from gateway.openapi import build_openapi
from gateway.ops.access import ops_context
from gateway.routes import ROUTES
from gateway.routing import Route, add_routes
from gateway.settings import Settings
from gateway.state import (
    CLOCK,
    DATABASE,
    INFLIGHT,
    KEY_RING,
    OPENAPI,
    RATE_LIMITS,
    SETTINGS,
    TERMINALS,
    InflightCount,
)
from gateway.terminals import TerminalDirectory

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    routes: Sequence[Route] = ROUTES,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The gateway application. ``routes`` and ``clock`` are seams for tests."""
    routes = at_fsi_path(routes, settings.fsi_path)
    app = web.Application(
        middlewares=(observe, problems),
        # aiohttp enforces this while reading a body, chunked or not.
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[OPENAPI] = build_openapi(routes)
    app[INFLIGHT] = InflightCount(settings.max_inflight_requests)
    # One local bucket per authenticated terminal (the terminal cache's bound), settled with
    # the shared store by limits_context's task.
    app[RATE_LIMITS] = TerminalLimits(settings)
    add_routes(app.router, routes)
    app.cleanup_ctx.append(_database)
    # Needs the database (the shared card-session key); before the sweepers.
    app.cleanup_ctx.append(card_auth_context)
    app.cleanup_ctx.append(_nonce_sweeper)
    app.cleanup_ctx.append(_year_end_rollover)
    # The national hub's client and this worker's reversal task (needs the database).
    app.cleanup_ctx.append(hub_context)
    # The shared limits' store (database or Redis) and the terminal limits' sync task.
    app.cleanup_ctx.append(limits_context)
    # The ops dashboard's credential (gateway.ops.access): resolved and announced at start-up.
    app.cleanup_ctx.append(ops_context)
    # The national door's per-worker caches (institutions, card presence).
    app.cleanup_ctx.append(fsi_context)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = make_engine(settings)
    # Measured: write latency and database failures (gateway.db_metrics).
    db = MeasuredDatabase(
        engine, threads=settings.db_threads, write_queue_max=settings.db_write_queue_max
    )
    try:
        await asyncio.to_thread(migrate.check_schema_current, engine)
        # An "auto" demo world decided by this database's marker, before anything that trusts
        # demo credentials (card auth, ops, issuance) reads the settings. `serve` has decided
        # it already (gateway.serve.prepare); an application made in process decides it here.
        app[SETTINGS] = await asyncio.to_thread(demo_world_of, engine, settings)
        # The KEK ring that opens terminal secrets (gateway.kek; the demo's is made here).
        keys = await asyncio.to_thread(resolve_keys, app[SETTINGS])
        app[DATABASE] = db
        app[KEY_RING] = keys.ring
        app[TERMINALS] = TerminalDirectory(
            db,
            ttl_s=settings.terminal_cache_ttl_s,
            max_entries=settings.terminal_cache_max_entries,
            opener=keys.ring,
        )
        yield
    finally:
        # close() waits for running units of work: do not block the loop meanwhile.
        await asyncio.to_thread(db.close)


async def _nonce_sweeper(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    task = asyncio.create_task(
        sweep_nonces_forever(
            app[DATABASE],
            app[CLOCK],
            interval_s=settings.nonce_sweep_interval_s,
            batch=settings.nonce_sweep_batch,
        ),
        name="nonce-sweeper",
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _year_end_rollover(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Started even with year_end_rollover off: it then only reads where the roll-over stands,
    # for the metrics an unfinished roll-over alerts on (gateway.housekeeping).
    task = asyncio.create_task(
        roll_over_forever(
            app[DATABASE],
            app[CLOCK],
            interval_s=settings.rollover_check_interval_s,
            batch=settings.rollover_batch,
            work=settings.year_end_rollover,
        ),
        name="year-end-rollover",
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
