"""Reconciliation runs (3201 totals, 3202 details) as units of work, and their mismatches.

Each run is compared against the gateway's own figures (settlement.reconciliation) and stored
for operations with the door's rendering of its answer (``render``), so that the mismatch list
shows exactly what the institution was told.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbkit import beijing_date
from settlement import reconciliation as recon
from settlement.store import ReconciliationRun

__all__ = [
    "MAX_MISMATCHES_LISTED",
    "MAX_REPORTED_DIFFERENCES",
    "DetailsOutcome",
    "TotalsOutcome",
    "details",
    "mismatches",
    "totals",
]

# Differences one 3202 answer lists (difference_count says how many there were).
MAX_REPORTED_DIFFERENCES: Final = 1_000
# Mismatching runs one listing shows.
MAX_MISMATCHES_LISTED: Final = 500


@dataclass(frozen=True, slots=True)
class TotalsOutcome:
    matched: bool
    clr_type: str
    stmt_date: dt.date
    institution: recon.Figures
    gateway: recon.Figures


@dataclass(frozen=True, slots=True)
class DetailsOutcome:
    """``differences`` holds at most :data:`MAX_REPORTED_DIFFERENCES`; the count is whole."""

    matched: bool
    clr_type: str
    stmt_date: dt.date
    difference_count: int
    differences: Sequence[recon.DetailDifference]


def _store_run(
    session: Session,
    *,
    fixmedins_code: str,
    day: dt.date,
    clr_type: str,
    kind: str,
    matched: bool,
    figures: str,
    now: dt.datetime,
) -> None:
    session.add(
        ReconciliationRun(
            fixmedins_code=fixmedins_code,
            stmt_date=day,
            clr_type=clr_type,
            kind=kind,
            matched=matched,
            figures=figures,
            created_at=now,
        )
    )
    session.flush()


def totals(
    session: Session,
    *,
    fixmedins_code: str,
    stmt_date: dt.date,
    clr_type: str,
    theirs: recon.Figures,
    now: dt.datetime,
    render: Callable[[TotalsOutcome], str],
) -> TotalsOutcome:
    """3201: the institution's totals of a day and clearing type against the gateway's.
    A statement out of the window or whose figures do not add up is refused (nothing
    stored)."""
    recon.check_statement_date(stmt_date, beijing_date(now))
    recon.check_figures(theirs, where="the totals")
    ours = recon.gateway_totals(
        session, fixmedins_code=fixmedins_code, day=stmt_date, clr_type=clr_type
    )
    outcome = TotalsOutcome(ours == theirs, clr_type, stmt_date, theirs, ours)
    _store_run(
        session,
        fixmedins_code=fixmedins_code,
        day=stmt_date,
        clr_type=clr_type,
        kind="totals",
        matched=outcome.matched,
        figures=render(outcome),
        now=now,
    )
    return outcome


def details(
    session: Session,
    *,
    fixmedins_code: str,
    stmt_date: dt.date,
    clr_type: str,
    theirs: Sequence[tuple[str, recon.Figures]],
    now: dt.datetime,
    render: Callable[[DetailsOutcome], str],
) -> DetailsOutcome:
    """3202: the institution's settlements of a day and clearing type, one by one. Refused
    like 3201's; a setl_id listed twice is compared by its first listing and reported as
    ``listed_twice`` besides."""
    recon.check_statement_date(stmt_date, beijing_date(now))
    by_setl_id: dict[str, recon.Figures] = {}
    repeated: dict[str, recon.Figures] = {}
    for number, (setl_id, figures) in enumerate(theirs, start=1):
        recon.check_figures(figures, where=f"detail row {number}")
        (repeated if setl_id in by_setl_id else by_setl_id).setdefault(setl_id, figures)
    ours = recon.gateway_details(
        session,
        fixmedins_code=fixmedins_code,
        day=stmt_date,
        clr_type=clr_type,
        # More than the institution may send: a day larger than that cannot match anyway.
        limit=len(theirs) + MAX_REPORTED_DIFFERENCES,
    )
    differences = recon.compare_details(by_setl_id, ours, repeated)
    matched = not differences
    outcome = DetailsOutcome(
        matched=matched,
        clr_type=clr_type,
        stmt_date=stmt_date,
        difference_count=len(differences),
        differences=differences[:MAX_REPORTED_DIFFERENCES],
    )
    _store_run(
        session,
        fixmedins_code=fixmedins_code,
        day=stmt_date,
        clr_type=clr_type,
        kind="details",
        matched=matched,
        figures=render(outcome),
        now=now,
    )
    return outcome


def mismatches(
    session: Session, *, day: dt.date, fixmedins_code: str | None
) -> list[ReconciliationRun]:
    """A day's mismatching runs: of one institution, or (``None``) of all of them."""
    query = (
        select(ReconciliationRun)
        .where(ReconciliationRun.stmt_date == day, ReconciliationRun.matched.is_(False))
        .order_by(ReconciliationRun.id)
        .limit(MAX_MISMATCHES_LISTED)
    )
    if fixmedins_code is not None:
        query = query.where(ReconciliationRun.fixmedins_code == fixmedins_code)
    return list(session.scalars(query))
