"""``python -m gateway admin rollover --year Y``: the year-end roll-over of personal accounts by
hand (settlement.rollover; the workers' housekeeping runs the same use case on its own).

Runs the roll-over of ``Y`` to completion, or reports where it stands with ``--check``
(changes nothing). A year that has not ended in Beijing time is refused, changing nothing.
Safe to run while the gateway serves, and as often as wanted: the database lets each account
roll over once. Exit codes: 0 the roll-over of ``Y`` is complete; 1 it is not (accounts are
left: a settlement held them, or ``--check`` found the job unfinished) or the database is not
usable; 2 the year has not ended.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Final, TextIO

from dbkit import BEIJING
from gateway import migrate
from gateway.db import Database, make_engine
from gateway.settings import Settings
from settlement.errors import RolloverNotDue
from settlement.rollover import RolloverStatus, require_ended, roll_over_year, rollover_status

__all__ = ["MAX_YEAR", "MIN_YEAR", "describe", "run_rollover"]

MIN_YEAR: Final = 2000
MAX_YEAR: Final = 2999  # account years are SMALLINT columns
# The by-hand run gives up after this many batches that rolled nothing while accounts are left
# (a settlement holding them on PostgreSQL), a second apart: run it again later.
_IDLE_BATCHES: Final = 10


def describe(status: RolloverStatus) -> str:
    """One line an operator reads: done or not, when, how many accounts, how much."""
    yuan = f"{status.amount_fen // 100:,}.{status.amount_fen % 100:02d}"
    if status.completed_at is not None:
        at = status.completed_at.astimezone(BEIJING).isoformat(timespec="seconds")
        state = f"complete since {at}"
    else:
        state = "NOT complete"
    return (
        f"year-end roll-over of {status.year}: {state}; {status.accounts:,} accounts rolled, "
        f"{yuan} yuan moved to past-years accounts; {status.remaining:,} accounts still in "
        f"{status.year} or before"
    )


def run_rollover(
    settings: Settings,
    *,
    year: int,
    check: bool = False,
    clock: Callable[[], float] = time.time,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The ``admin rollover`` command (module docstring); ``clock`` is a seam for tests."""
    engine = make_engine(settings)
    try:
        migrate.check_schema_current(engine)
        db = Database(engine, threads=1)
        try:
            return asyncio.run(
                _rollover(
                    db,
                    year=year,
                    check=check,
                    batch=settings.rollover_batch,
                    clock=clock,
                    out=out,
                )
            )
        finally:
            db.close()
    except RolloverNotDue as exc:
        print(f"gateway: {exc.message}; nothing was changed", file=err)
        return 2
    except migrate.SchemaNotCurrent as exc:
        print(f"gateway: {exc}", file=err)
        return 1
    finally:
        engine.dispose()


async def _rollover(
    db: Database,
    *,
    year: int,
    check: bool,
    batch: int,
    clock: Callable[[], float],
    out: TextIO,
) -> int:
    require_ended(year, dt.datetime.fromtimestamp(clock(), dt.UTC))
    if not check:
        idle = 0
        while idle < _IDLE_BATCHES:
            now = dt.datetime.fromtimestamp(clock(), dt.UTC)
            progress = await db.write(
                partial(roll_over_year, year=year, now=now, batch=batch), concurrent=True
            )
            if progress.completed:
                break
            if progress.rolled == 0:
                idle += 1
                await asyncio.sleep(1.0)
    status = await db.read(partial(rollover_status, year=year))
    print(describe(status), file=out)
    return 0 if status.completed_at is not None else 1
