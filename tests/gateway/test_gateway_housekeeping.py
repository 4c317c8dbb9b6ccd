"""Housekeeping sweeps the national interface's expired rows: files kept for 9101/9102
(``fsi_files``) and card presences (``card_presence``), in bounded batches, by a fixed clock,
on the nonce sweeper's round (gateway.housekeeping). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.fsi.store import CardPresence, FsiFile
from gateway.housekeeping import sweep_expired_fsi, sweep_nonces_forever

NOW_S = 1_800_000_000


def _seed(engine: Engine, *, files: list[int], presences: list[int]) -> None:
    """Files and presences expiring at the given instants (seconds)."""
    with Session(engine) as session, session.begin():
        session.add_all(
            FsiFile(
                file_qury_no=f"F{i:06d}",
                fixmedins_code="H31010100001" if i % 2 else "H31010100002",
                filename="a.txt",
                content=b"x",
                size=1,
                created_at_s=at - 86_400,
                expires_at_s=at,
            )
            for i, at in enumerate(files)
        )
        session.add_all(
            CardPresence(
                terminal_id="T-1",
                card_sn=f"SN{i:06d}",
                holder_id=i,
                generation=3,
                route=1,
                expires_at_s=at,
            )
            for i, at in enumerate(presences)
        )


def _left(engine: Engine) -> tuple[list[int], list[int]]:
    with Session(engine) as session:
        files = session.scalars(select(FsiFile.expires_at_s).order_by(FsiFile.expires_at_s))
        presences = session.scalars(
            select(CardPresence.expires_at_s).order_by(CardPresence.expires_at_s)
        )
        return list(files), list(presences)


def _swept(kind: str) -> float:
    value = REGISTRY.get_sample_value("gateway_fsi_expired_swept_total", {"kind": kind})
    return value or 0.0


async def test_expired_files_and_presences_are_swept_in_bounded_batches(engine: Engine) -> None:
    # Files expire at expires_at_s (9102 refuses them from then on), presences likewise.
    expired = [NOW_S - 100 + i for i in range(7)] + [NOW_S]
    alive = [NOW_S + 1, NOW_S + 3_600]
    _seed(engine, files=expired + alive, presences=expired + alive)
    before = (_swept("file"), _swept("presence"))
    db = Database(engine, threads=2)
    try:
        assert await sweep_expired_fsi(db, NOW_S, batch=3) == {"file": 8, "presence": 8}
        assert _left(engine) == (alive, alive)
        assert await sweep_expired_fsi(db, NOW_S, batch=3) == {"file": 0, "presence": 0}
    finally:
        db.close()
    assert (_swept("file") - before[0], _swept("presence") - before[1]) == (8, 8)


async def test_the_periodic_sweeper_sweeps_them_too(engine: Engine) -> None:
    _seed(engine, files=[NOW_S - 1, NOW_S + 60], presences=[NOW_S - 1, NOW_S + 60])
    db = Database(engine, threads=2)
    task = asyncio.create_task(
        sweep_nonces_forever(db, lambda: float(NOW_S), interval_s=0.01, batch=10)
    )
    try:
        for _ in range(500):
            if _left(engine) == ([NOW_S + 60], [NOW_S + 60]):
                break
            await asyncio.sleep(0.01)
        assert _left(engine) == ([NOW_S + 60], [NOW_S + 60])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        db.close()
