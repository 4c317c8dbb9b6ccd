"""Issuance at programme scale: N applications (default 100,000) taken, grouped into
production batches, and a sample of them produced (new SM2 key pair and certificate per card).

Runs in process on a fresh migrated SQLite database (WAL, the gateway's engine) in a temporary
directory, or on ``--db URL``. Three timed phases:

* apply      ``issuance.service.apply`` per application (eligibility, window, bank rule, holder,
             history rows), ``--chunk`` applications per transaction, as counters would send;
* batch      ``create_batches``: every collected application into (channel, day) batches of at
             most 10,000, one transaction, with its history rows;
* produce    ``produce_batch`` for the first ``--produce`` cards (keys + certificates dominate).

Peak memory: the batch step's Python allocations (tracemalloc, on for that phase only: it slows
what it traces) and the process's peak RSS (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from issuance import service
from issuance.access import Agent, Role
from issuance.production import InMemoryPersonaliser, demo_issuing_ca
from issuance.programme import Channel, PhotoSource, default_programme
from issuance.store import Application, ProductionBatch
from sscard.layout import citizen_id_check_digit

T = TypeVar("T")

CENTRE = Agent("BENCH-CENTRE", Role.CENTRE, terminal_id="bench")
_CHANNELS = (Channel.BANK_BRANCH, Channel.COMMUNITY_CENTRE)
_BANKS = ("BOSH", "SPDB", "SRCB", "ICBC", "ABC", "CCB", "PSBC", "BOCOM", "BOC", "CMB", "CEB")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--applications", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1_000, help="applications per transaction")
    parser.add_argument("--produce", type=int, default=500, help="cards to personalise")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: temp SQLite)")


def _citizen_id(n: int) -> str:
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=n % 7000)
    # Unique per n: 7,000 birth days times 1,000 sequence numbers.
    assert n < 7_000_000
    first17 = f"310104{birth:%Y%m%d}{n // 7000:03d}"
    return first17 + citizen_id_check_digit(first17)


def _request(n: int) -> service.ApplicationRequest:
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=n % 7000)
    return service.ApplicationRequest(
        applicant=service.Applicant(
            citizen_id=_citizen_id(n),
            name=f"测试{n % 100}",
            birth_date=birth,
            gender="1" if n % 2 else "2",
            area_code="310104",
            hukou_shanghai=True,
            insured_in_shanghai=True,
        ),
        cohort="retiree",
        channel=_CHANNELS[n % 2],
        photo_source=PhotoSource.ID_CARD_SHARED,
        backup_centre="C31010400001",
        pension_bank=_BANKS[n % 11],
    )


def _phase(name: str, work: Callable[[], T], *, trace: bool) -> tuple[T, dict[str, Any]]:
    """Time ``work``; with ``trace``, also its peak Python heap (tracemalloc slows it ~2x)."""
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - started
    figures: dict[str, Any] = {"seconds": round(elapsed, 3)}
    line = f"{name:8s} {elapsed:8.2f} s"
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures["peak_python_mib"] = round(peak / 2**20, 1)
        line += f"   peak Python heap {peak / 2**20:7.1f} MiB (tracemalloc on)"
    print(line, flush=True)
    return result, figures


def _engine(url: str | None, data_dir: Path) -> Engine:
    from gateway import migrate
    from gateway.db import for_writes, make_engine
    from gateway.settings import load_settings

    db_url = url or f"sqlite:///{data_dir / 'issuance-bench.sqlite3'}"
    settings = load_settings(environ={}, overrides={"data_dir": data_dir, "db_url": db_url})
    engine = make_engine(settings)
    migrate.upgrade(engine)
    return for_writes(engine)


def run(args: argparse.Namespace) -> dict[str, Any]:
    count, chunk = int(args.applications), max(1, int(args.chunk))
    programme = default_programme()
    ca = demo_issuing_ca("ssc-demo-2019")
    now = dt.datetime(2019, 3, 1, 2, tzinfo=dt.UTC)
    with tempfile.TemporaryDirectory(prefix="issuance-bench-") as tmp:
        engine = _engine(args.db, Path(tmp))

        def apply_all() -> int:
            for start in range(0, count, chunk):
                with Session(engine) as session, session.begin():
                    for n in range(start, min(count, start + chunk)):
                        service.apply(session, programme, CENTRE, _request(n), now)
            return count

        def batch_all() -> list[int]:
            with Session(engine) as session, session.begin():
                return service.create_batches(session, CENTRE, now)

        _, apply_figures = _phase("apply", apply_all, trace=False)
        batches, batch_figures = _phase("batch", batch_all, trace=True)

        def produce_sample() -> int:
            personaliser = InMemoryPersonaliser(limit=1)
            with Session(engine) as session, session.begin():
                ids = session.execute(
                    select(Application.id)
                    .where(Application.batch_id == batches[0])
                    .order_by(Application.id)
                    .offset(args.produce)
                ).scalars()
                # Produce only the first --produce cards of the first batch: move the rest to a
                # batch of their own so produce_batch works on exactly the sample.
                rest = ProductionBatch(
                    channel="bench_rest", collected_on=now.date(), seq=1, size=0, created_at=now
                )
                session.add(rest)
                session.flush()
                session.execute(
                    Application.__table__.update()  # type: ignore[attr-defined]
                    .where(Application.id.in_(list(ids)))
                    .values(batch_id=rest.id)
                )
            with Session(engine) as session, session.begin():
                report = service.produce_batch(
                    session, CENTRE, batches[0], ca=ca, personaliser=personaliser, now=now
                )
            return report.by_stage.get("mailed", 0)

        produced, produce_figures = _phase("produce", produce_sample, trace=False)
        engine.dispose()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        rss_kib //= 1024
    result = {
        "applications": count,
        "batches": len(batches),
        "produced": produced,
        "apply": {**apply_figures, "per_second": round(count / apply_figures["seconds"], 1)},
        "batch": {**batch_figures, "per_second": round(count / batch_figures["seconds"], 1)},
        "produce": {
            **produce_figures,
            "per_second": round(produced / produce_figures["seconds"], 1) if produced else 0.0,
        },
        "peak_rss_mib": round(rss_kib / 1024, 1),
    }
    print(
        f"{count} applications -> {len(batches)} batches; produced {produced} cards; "
        f"peak RSS {result['peak_rss_mib']} MiB"
    )
    return result
