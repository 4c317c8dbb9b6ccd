"""Background upkeep inside each worker: sweeping expired request nonces, and the national
interface's expired rows (files kept for 9101/9102, card presences at its devices).

Every worker sweeps; the delete is idempotent, so several sweepers only share the work. The
first sweep is delayed by a random part of the interval so that workers started together do
not all take SQLite's write lock at the same moment. Each sweep deletes in bounded batches
(``nonce_sweep_batch``) and at most ``_MAX_BATCHES_PER_SWEEP`` of them, so one sweep never holds
the write lock for long; a backlog is worked off over the next sweeps. The national
interface's expired files (``fsi_files``) and card presences (``card_presence``) are swept
with the nonces, by the same rule and bound: nothing else deletes a presence, and a file
otherwise goes only with its institution's next upload.

The year-end roll-over of personal accounts (settlement.rollover) runs here too, on every
worker: each one checks, every ``rollover_check_interval_s`` and just after 00:00 Beijing time
on 1 January, whether the last ended year's roll-over has finished (one primary-key read), and
if not works it in batches of ``rollover_batch`` accounts, one write transaction each. Several
workers (or replicas) working at once only share the work: the database lets each account roll
over once (settlement.rollover). A settlement that reaches an account first rolls it itself, so
how soon this job runs changes no amount. After each check, and whether or not this worker
rolls accounts (``year_end_rollover = false`` leaves the work to ``gateway admin rollover``),
it sets the metrics ``gateway_rollover_pending_accounts`` and
``gateway_rollover_due_timestamp_seconds`` from the database (:func:`observe_rollover`), which
the alert RolloverUnfinished watches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable
from functools import partial
from typing import Final

from dbkit import BEIJING
from gateway import metrics
from gateway.db import Database
from gateway.errors import GatewayError
from gateway.fsi.store import delete_expired_files, delete_expired_presence
from gateway.logs import fields
from gateway.store import delete_expired_nonces
from settlement.errors import SettlementError
from settlement.rollover import (
    RolloverProgress,
    accounts_pending_rollover,
    last_ended_year,
    roll_over_year,
    rollover_completed,
)

__all__ = [
    "observe_rollover",
    "roll_over_ended_year",
    "roll_over_forever",
    "rollover_due_at",
    "seconds_to_next_year",
    "sweep_expired_fsi",
    "sweep_expired_nonces",
    "sweep_nonces_forever",
]

log = logging.getLogger("gateway.housekeeping")

_MAX_BATCHES_PER_SWEEP: Final = 20


async def _swept(db: Database, unit: Callable[..., int], batch: int) -> int:
    """Run a bounded delete ``unit(session, limit=batch)`` until it deletes less than a
    batch, at most ``_MAX_BATCHES_PER_SWEEP`` times; return how many rows went."""
    total = 0
    for _ in range(_MAX_BATCHES_PER_SWEEP):
        deleted = await db.write(partial(unit, limit=batch))
        total += deleted
        if deleted < batch:
            break
    return total


async def sweep_expired_nonces(db: Database, now_s: float, batch: int) -> int:
    """Delete expired nonces in batches of ``batch``; return how many were deleted."""
    total = await _swept(db, partial(delete_expired_nonces, now_s=int(now_s)), batch)
    metrics.NONCES_SWEPT.inc(total)
    return total


async def sweep_expired_fsi(db: Database, now_s: float, batch: int) -> dict[str, int]:
    """Delete the national interface's expired files and card presences, each in batches of
    ``batch`` under the nonce sweep's bound; return how many of each kind went."""
    swept = {
        "file": await _swept(db, partial(delete_expired_files, now_s=int(now_s)), batch),
        # A presence is expired from its expires_at_s on (gateway.fsi.presence).
        "presence": await _swept(
            db, partial(delete_expired_presence, before_s=int(now_s) + 1), batch
        ),
    }
    for kind, deleted in swept.items():
        metrics.FSI_EXPIRED_SWEPT.labels(kind).inc(deleted)
    return swept


async def sweep_nonces_forever(
    db: Database, clock: Callable[[], float], *, interval_s: float, batch: int
) -> None:
    # S311: jitter, not security.
    await asyncio.sleep(random.uniform(0, interval_s))  # noqa: S311
    while True:
        try:
            deleted = await sweep_expired_nonces(db, clock(), batch)
            if deleted:
                log.info("nonces swept", extra=fields(deleted=deleted))
        except GatewayError as exc:
            log.warning("nonce sweep skipped", extra=fields(code=exc.code))
        except Exception:
            log.exception("nonce sweep failed")
        try:
            swept = await sweep_expired_fsi(db, clock(), batch)
            if any(swept.values()):
                log.info("fsi expired rows swept", extra=fields(**swept))
        except GatewayError as exc:
            log.warning("fsi sweep skipped", extra=fields(code=exc.code))
        except Exception:
            log.exception("fsi sweep failed")
        await asyncio.sleep(interval_s)


# A year-end run's bound: this many batches, then the next check carries on.
_MAX_ROLLOVER_BATCHES_PER_RUN: Final = 1000
# After midnight on 1 January, wait up to this long (random) so that workers started together
# do not all reach for SQLite's write lock at the same moment.
_NEW_YEAR_JITTER_S: Final = 5.0


def _instant(clock: Callable[[], float]) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock(), dt.UTC)


def seconds_to_next_year(now: dt.datetime) -> float:
    """Seconds from ``now`` to the next 00:00 Beijing time on 1 January."""
    next_year = dt.datetime(now.astimezone(BEIJING).year + 1, 1, 1, tzinfo=BEIJING)
    return (next_year - now).total_seconds()


async def roll_over_ended_year(
    db: Database, clock: Callable[[], float], *, batch: int
) -> RolloverProgress | None:
    """Work the last ended year's roll-over until it is complete, no account is left that a
    settlement does not hold (PostgreSQL skips those; the next check rolls them), or the run's
    bound. None if it had completed already (one read). The clock is read at each batch: a
    batch is stamped with the time it ran."""
    year = last_ended_year(_instant(clock))
    if await db.read(partial(rollover_completed, year=year)):
        return None
    rolled = amount_fen = 0
    progress = RolloverProgress(year=year, rolled=0, amount_fen=0, completed=False)
    for _ in range(_MAX_ROLLOVER_BATCHES_PER_RUN):
        # concurrent: on PostgreSQL a batch runs in a transaction of its own beside this
        # worker's writer queue, so the requests' writes do not wait behind it.
        progress = await db.write(
            partial(roll_over_year, year=year, now=_instant(clock), batch=batch),
            concurrent=True,
        )
        rolled += progress.rolled
        amount_fen += progress.amount_fen
        if progress.completed or progress.rolled == 0:
            break
    log.info(
        "year-end roll-over",
        extra=fields(
            year=year, accounts=rolled, amount_fen=amount_fen, completed=progress.completed
        ),
    )
    return RolloverProgress(
        year=year, rolled=rolled, amount_fen=amount_fen, completed=progress.completed
    )


def rollover_due_at(now: dt.datetime) -> dt.datetime:
    """When the roll-over of the last ended year at ``now`` fell due: 00:00 Beijing time on
    1 January of ``now``'s Beijing year."""
    return dt.datetime(now.astimezone(BEIJING).year, 1, 1, tzinfo=BEIJING)


async def observe_rollover(db: Database, now: dt.datetime) -> int:
    """Set the roll-over metrics from the database at ``now`` (one read unit:
    settlement.rollover.accounts_pending_rollover); return the accounts pending."""
    pending = await db.read(partial(accounts_pending_rollover, year=last_ended_year(now)))
    metrics.ROLLOVER_DUE.set(rollover_due_at(now).timestamp())
    metrics.ROLLOVER_PENDING_ACCOUNTS.set(pending)
    return pending


async def roll_over_forever(
    db: Database,
    clock: Callable[[], float],
    *,
    interval_s: float,
    batch: int,
    work: bool = True,
) -> None:
    """Every check: roll accounts over if ``work`` (the setting ``year_end_rollover``), then
    observe where the roll-over stands (:func:`observe_rollover`) either way."""
    metrics.ROLLOVER_DUE.set(rollover_due_at(_instant(clock)).timestamp())
    # S311: jitter, not security. At least a second: a worker's first moments are its start-up.
    await asyncio.sleep(random.uniform(1.0, max(1.0, min(interval_s, 60.0))))  # noqa: S311
    while True:
        if work:
            try:
                await roll_over_ended_year(db, clock, batch=batch)
            except (GatewayError, SettlementError) as exc:
                log.warning("year-end roll-over skipped", extra=fields(code=exc.code))
            except Exception:
                log.exception("year-end roll-over failed")
        try:
            await observe_rollover(db, _instant(clock))
        except GatewayError as exc:
            log.warning("year-end roll-over check skipped", extra=fields(code=exc.code))
        except Exception:
            log.exception("year-end roll-over check failed")
        until_new_year_s = seconds_to_next_year(_instant(clock))
        jitter_s = random.uniform(0.0, _NEW_YEAR_JITTER_S)  # noqa: S311
        await asyncio.sleep(min(interval_s, until_new_year_s + jitter_s))
