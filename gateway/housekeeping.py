"""Background upkeep inside each worker: sweeping expired request nonces.

Every worker sweeps; the delete is idempotent, so several sweepers only share the work. The
first sweep is delayed by a random part of the interval so that workers started together do
not all take SQLite's write lock at the same moment. Each sweep deletes in bounded batches
(``nonce_sweep_batch``) and at most ``_MAX_BATCHES_PER_SWEEP`` of them, so one sweep never holds
the write lock for long; a backlog is worked off over the next sweeps.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from functools import partial
from typing import Final

from gateway import metrics
from gateway.db import Database
from gateway.errors import GatewayError
from gateway.logs import fields
from gateway.store import delete_expired_nonces

__all__ = ["sweep_expired_nonces", "sweep_nonces_forever"]

log = logging.getLogger("gateway.housekeeping")

_MAX_BATCHES_PER_SWEEP: Final = 20


async def sweep_expired_nonces(db: Database, now_s: float, batch: int) -> int:
    """Delete expired nonces in batches of ``batch``; return how many were deleted."""
    total = 0
    for _ in range(_MAX_BATCHES_PER_SWEEP):
        deleted = await db.write(partial(delete_expired_nonces, now_s=int(now_s), limit=batch))
        total += deleted
        if deleted < batch:
            break
    metrics.NONCES_SWEPT.inc(total)
    return total


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
        await asyncio.sleep(interval_s)
