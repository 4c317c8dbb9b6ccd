"""The hub as a worker resource: client, breaker and reversal worker, in ``cleanup_ctx``.

Every worker runs its own :func:`reversal_worker` task. Workers share nothing but the
database: each claims due rows of ``hub_reversals`` under a lease (``claim_due_reversals``),
so two workers never send the same reversal at once, a worker that dies mid-reversal leaves
a lease that runs out and the row is due again, and a restarted gateway simply carries on.
2601 is idempotent at the hub, so a reversal sent twice (lease lost, answer dropped) is
harmless. Backoff per row: ``hub_reversal_backoff_s × 2^attempts``, capped at
``hub_reversal_backoff_max_s``.

The same task turns ``intent`` rows older than the longest a call can take into ``unknown``
(queued for reversal, idempotency key released): those are the calls a crash interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from aiohttp import web

from gateway.crossprov import metrics
from gateway.crossprov.breaker import Breaker
from gateway.crossprov.client import AiohttpTransport, HubClient, Outcome
from gateway.db import Database
from gateway.logs import fields
from gateway.settings import Settings
from gateway.state import CLOCK, DATABASE, SETTINGS
from settlement.crossprov import remote, wire

__all__ = ["HUB", "HubContext", "hub_context", "run_reversals_once"]

log = logging.getLogger("gateway.crossprov")

# Reversals one worker sends per round (concurrently), and stale intents turned per round.
REVERSAL_BATCH: Final = 32
STALE_BATCH: Final = 500
# Beyond the longest call: scheduling and database delays before a call really starts.
_STALE_MARGIN_S: Final = 5.0


@dataclass
class HubContext:
    """Per worker. ``client`` is None when no hub is configured (HUB_UNAVAILABLE)."""

    settings: Settings
    client: HubClient | None
    owner: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stale_after(self) -> dt.timedelta:
        longest_s = self.client.longest_call_s if self.client else 0.0
        return dt.timedelta(seconds=2 * longest_s + _STALE_MARGIN_S)

    @property
    def lease(self) -> dt.timedelta:
        longest_s = self.client.longest_call_s if self.client else 0.0
        return dt.timedelta(seconds=2 * longest_s + _STALE_MARGIN_S)

    def backoff(self, attempts: int) -> dt.timedelta:
        s = self.settings
        seconds = min(
            s.hub_reversal_backoff_max_s, s.hub_reversal_backoff_s * 2 ** min(attempts, 30)
        )
        return dt.timedelta(seconds=seconds)


HUB: Final = web.AppKey("hub", HubContext)


def _count_outcome(infno: str, outcome: Outcome) -> None:
    metrics.HUB_CALLS.labels(infno, outcome).inc()


def make_hub_context(
    settings: Settings, clock: Callable[[], float], transport: object | None = None
) -> tuple[HubContext, AiohttpTransport | None]:
    real = None
    client = None
    if transport is None and settings.hub_url:
        real = AiohttpTransport(settings.hub_url)
        transport = real
    if transport is not None:
        client = HubClient(
            transport,  # type: ignore[arg-type]
            Breaker(
                failure_threshold=settings.hub_breaker_failures,
                open_s=settings.hub_breaker_open_s,
            ),
            timeout_ms=settings.hub_timeout_ms,
            retries=settings.hub_retries,
            clock=clock,
            on_outcome=_count_outcome,
        )
    owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"
    return HubContext(settings=settings, client=client, owner=owner), real


async def hub_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the hub client and this worker's reversal task (after the database)."""
    context, transport = make_hub_context(app[SETTINGS], app[CLOCK])
    app[HUB] = context
    task = asyncio.create_task(
        _reversals_forever(context, app[DATABASE], app[CLOCK]), name="hub-reversals"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if transport is not None:
        await transport.close()


async def _reversals_forever(context: HubContext, db: Database, clock: Callable[[], float]) -> None:
    poll_s = context.settings.hub_reversal_poll_s
    while True:
        try:
            await run_reversals_once(context, db, clock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database hiccup must not end the worker's reversals
            log.warning("reversal round failed", extra=fields(error=type(exc).__name__))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(context.wake.wait(), poll_s)
        context.wake.clear()


def _now(clock: Callable[[], float]) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock(), dt.UTC)


async def run_reversals_once(context: HubContext, db: Database, clock: Callable[[], float]) -> int:
    """One round: stale intents → unknown, then the due reversals. Returns reversals done.
    Writes only when a cheap read found work, so an idle gateway never takes the write lock."""
    now = _now(clock)
    older_than = now - context.stale_after
    work = await db.read(partial(remote.pending_work, older_than=older_than, now=now))
    if work.stale_intents:
        stale = await db.write(
            partial(
                remote.stale_intents_to_unknown, older_than=older_than, now=now, limit=STALE_BATCH
            )
        )
        if stale:
            log.warning("stale intents queued for reversal", extra=fields(count=len(stale)))
    done = 0
    if context.client is not None and (work.due_reversals or work.stale_intents):
        jobs = await db.write(
            partial(
                remote.claim_due_reversals,
                owner=context.owner,
                now=now,
                lease=context.lease,
                limit=REVERSAL_BATCH,
            )
        )
        results = await asyncio.gather(*(_reverse(context, db, clock, job) for job in jobs))
        done = sum(results)
        work = await db.read(partial(remote.pending_work, older_than=older_than, now=now))
    metrics.REVERSAL_QUEUE_DEPTH.set(work.queue_depth)
    if context.client is not None:
        metrics.BREAKER_STATE.set(int(context.client.breaker.state))
    return done


async def _reverse(
    context: HubContext, db: Database, clock: Callable[[], float], job: remote.ReversalJob
) -> bool:
    client = context.client
    assert client is not None
    outcome = await client.call(
        infno=wire.INFNO_REVERSAL,
        msgid=client.msgids.next(job.fixmedins_code, odd=True),
        insuplc_admdvs=job.insuplc_admdvs,
        fixmedins_code=job.fixmedins_code,
        payload={"omsgid": job.omsgid, "oinfno": job.oinfno},
    )
    now = _now(clock)
    if outcome.outcome == "ok" and outcome.answer is not None:
        reversed_flag = outcome.answer.output.get("reversed")
        await db.write(
            partial(
                remote.reversal_done,
                omsgid=job.omsgid,
                owner=context.owner,
                hub_reversed=bool(reversed_flag),
                now=now,
            )
        )
        metrics.REVERSALS.labels("done").inc()
        return True
    if outcome.outcome == "refused" and outcome.answer is not None:
        error = f"refused {outcome.answer.err_code}: {outcome.answer.err_msg}"
        log.error(
            "hub refused a reversal",
            extra=fields(omsgid=job.omsgid, err_code=outcome.answer.err_code),
        )
    else:
        error = outcome.error or outcome.outcome
    await db.write(
        partial(
            remote.reversal_retry,
            omsgid=job.omsgid,
            owner=context.owner,
            error=error,
            next_attempt_at=now + context.backoff(job.attempts),
        )
    )
    metrics.REVERSALS.labels("retry").inc()
    return False
