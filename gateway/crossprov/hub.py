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

It also resolves **cancel checks** (queue rows whose ``oinfno`` is a cancel infno): a cancel
whose outcome is unknown (no usable answer, or its request died and the lease ran out). It
asks the hub about the cancel msgid (5201): ``cancelled`` → the cancellation is booked
(mirror ledger, exactly once); refused or reversed → not done; never seen → 2601 tombstones
the msgid (so a delayed cancel can never commit later), then not done. Not done leaves the
settlement settled with no cancel msgid, so a later cancel starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from aiohttp import web

from gateway.crossprov import metrics
from gateway.crossprov.client import AiohttpTransport
from gateway.crossprov.views import remote_cancel_answer
from gateway.db import Database
from gateway.logs import fields
from gateway.settings import Settings
from gateway.state import CLOCK, DATABASE, SETTINGS
from settlement.crossprov import remote, remote_cancel, wire
from settlement.crossprov.breaker import Breaker
from settlement.crossprov.calls import HubClient

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

    def queue_changed(self) -> None:
        """Wake this worker's reversal task: something was queued for reversal."""
        self.wake.set()

    def backoff(self, attempts: int) -> dt.timedelta:
        s = self.settings
        seconds = min(
            s.hub_reversal_backoff_max_s, s.hub_reversal_backoff_s * 2 ** min(attempts, 30)
        )
        return dt.timedelta(seconds=seconds)


HUB: Final = web.AppKey("hub", HubContext)


def make_hub_context(
    settings: Settings, clock: Callable[[], float], transport: object | None = None
) -> tuple[HubContext, AiohttpTransport | None]:
    real = None
    client = None
    if transport is None and settings.hub_url:
        real = AiohttpTransport(settings.hub_url)
        transport = real
    if transport is not None:
        breaker = Breaker(
            failure_threshold=settings.hub_breaker_failures,
            open_s=settings.hub_breaker_open_s,
        )
        client = HubClient(
            transport,  # type: ignore[arg-type]
            breaker,
            timeout_ms=settings.hub_timeout_ms,
            retries=settings.hub_retries,
            clock=clock,
            on_outcome=partial(metrics.count_call, breaker),
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
    metrics.REVERSAL_QUEUE_OLDEST_AGE.set(
        await metrics.oldest_pending_age_s(db, now) if work.queue_depth else 0.0
    )
    if context.client is not None:
        metrics.BREAKER_STATE.set(int(context.client.breaker.state))
    return done


async def _reverse(
    context: HubContext, db: Database, clock: Callable[[], float], job: remote.ReversalJob
) -> bool:
    client = context.client
    assert client is not None
    if job.is_cancel_check:
        return await _resolve_cancel(context, db, clock, job)
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
    await _retry_later(context, db, job, error, now)
    metrics.REVERSALS.labels("retry").inc()
    return False


async def _retry_later(
    context: HubContext, db: Database, job: remote.ReversalJob, error: str, now: dt.datetime
) -> None:
    """Put a queue row (reversal or cancel check) back, due after this job's backoff."""
    await db.write(
        partial(
            remote.reversal_retry,
            omsgid=job.omsgid,
            owner=context.owner,
            error=error,
            next_attempt_at=now + context.backoff(job.attempts),
        )
    )


# --- cancel checks ------------------------------------------------------------------------------


async def _resolve_cancel(
    context: HubContext, db: Database, clock: Callable[[], float], job: remote.ReversalJob
) -> bool:
    """Resolve a cancel whose outcome is unknown (this worker holds the lease)."""
    cancel_msgid = job.cancel_msgid
    if cancel_msgid is None:  # nothing was sent under a msgid we still hold: nothing to ask
        return await _cancel_not_done(context, db, clock, job, None, hub_reversed=False)
    client = context.client
    assert client is not None
    query = await client.call(
        infno=wire.INFNO_QUERY,
        msgid=client.msgids.next(job.fixmedins_code, odd=True),
        insuplc_admdvs=job.insuplc_admdvs,
        fixmedins_code=job.fixmedins_code,
        payload={"omsgid": cancel_msgid},
    )
    if query.outcome != "ok" or query.answer is None:
        return await _cancel_retry(context, db, clock, job, f"5201: {query.error or query.outcome}")
    output = query.answer.output
    status = output.get("status")
    setlinfo = output.get("setlinfo")
    if status == wire.MessageStatus.CANCELLED.value and isinstance(setlinfo, Mapping):
        booked = await db.write(
            partial(
                remote_cancel.booked_unit,
                msgid=job.omsgid,
                cancel_msgid=cancel_msgid,
                owner=context.owner,
                cancel_json=json.dumps(setlinfo, ensure_ascii=False, separators=(",", ":")),
                now=_now(clock),
                # The stranded keys were the /v1 door's (the only door whose cancel takes an
                # Idempotency-Key), so they get its answer.
                render=remote_cancel_answer,
            )
        )
        if booked:  # else the lease ran out meanwhile: its next holder decides
            metrics.CANCEL_RESOLUTIONS.labels("cancelled").inc()
            log.warning("unknown cancel resolved: cancelled", extra=fields(omsgid=job.omsgid))
        return booked
    if status == wire.MessageStatus.REVERSED.value or (
        status == wire.MessageStatus.NONE.value and output.get("err_code")
    ):
        # Refused (a msgid's stored refusal answers every retry) or tombstoned: final.
        return await _cancel_not_done(context, db, clock, job, cancel_msgid, hub_reversed=False)
    if status != wire.MessageStatus.NONE.value:
        return await _cancel_retry(context, db, clock, job, f"5201 status {str(status)[:20]}")
    return await _tombstone_cancel(context, db, clock, job, cancel_msgid)


async def _tombstone_cancel(
    context: HubContext,
    db: Database,
    clock: Callable[[], float],
    job: remote.ReversalJob,
    cancel_msgid: str,
) -> bool:
    """The hub never saw the cancel msgid (or it is still on its way): a 2601 tombstone makes
    "not done" final, since a delayed cancel with that msgid is then refused."""
    client = context.client
    assert client is not None
    reversal = await client.call(
        infno=wire.INFNO_REVERSAL,
        msgid=client.msgids.next(job.fixmedins_code, odd=True),
        insuplc_admdvs=job.insuplc_admdvs,
        fixmedins_code=job.fixmedins_code,
        payload={"omsgid": cancel_msgid, "oinfno": job.oinfno},
    )
    if reversal.outcome == "ok" and reversal.answer is not None:
        # reversed: true means the cancel committed between the 5201 and the 2601 and the
        # hub undid it now: not done either way.
        undone = bool(reversal.answer.output.get("reversed"))
        return await _cancel_not_done(context, db, clock, job, cancel_msgid, hub_reversed=undone)
    if reversal.outcome == "refused" and reversal.answer is not None:
        error = f"2601 refused {reversal.answer.err_code}: {reversal.answer.err_msg}"
        log.error(
            "hub refused a cancel's reversal",
            extra=fields(omsgid=job.omsgid, err_code=reversal.answer.err_code),
        )
    else:
        error = f"2601: {reversal.error or reversal.outcome}"
    # Next round asks 5201 again: a cancel that committed meanwhile is then booked.
    return await _cancel_retry(context, db, clock, job, error)


async def _cancel_not_done(
    context: HubContext,
    db: Database,
    clock: Callable[[], float],
    job: remote.ReversalJob,
    cancel_msgid: str | None,
    *,
    hub_reversed: bool,
) -> bool:
    closed = await db.write(
        partial(
            remote_cancel.not_done_unit,
            msgid=job.omsgid,
            cancel_msgid=cancel_msgid,
            owner=context.owner,
            now=_now(clock),
            hub_reversed=hub_reversed,
        )
    )
    if closed:
        metrics.CANCEL_RESOLUTIONS.labels("not_cancelled").inc()
        log.warning("unknown cancel resolved: not cancelled", extra=fields(omsgid=job.omsgid))
    return closed


async def _cancel_retry(
    context: HubContext,
    db: Database,
    clock: Callable[[], float],
    job: remote.ReversalJob,
    error: str,
) -> bool:
    await _retry_later(context, db, job, error, _now(clock))
    metrics.CANCEL_RESOLUTIONS.labels("retry").inc()
    return False
