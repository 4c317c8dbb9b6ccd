"""Clearing (清算) per insured province and period: what Shanghai fronted for that province,
what was cancelled or reversed, and whether it matches the hub's own totals (3201) and
details (3202), message by message.

Counting rules (the hub's, docs/cross-province.md): by settle date in Beijing time; a settled
message counts under ``settled`` unless cancelled or reversed. On the gateway side a message
counts as settled when it is ``confirmed``; ``cancelled`` and ``reversed`` are listed
separately; ``intent`` and ``unknown`` are not final yet and are reported as unresolved, and so
is a ``confirmed`` message with a cancel in doubt that the hub already lists as cancelled.

:func:`compare` is pure: both sides' per-message records in, the mismatches out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Final

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from dbkit import BEIJING
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus

__all__ = [
    "Figures",
    "HubMessage",
    "Mismatch",
    "Statement",
    "compare",
    "gateway_messages",
    "period_bounds_utc",
]

# Messages one statement covers at most (a bound on one read; a longer period is split).
MAX_STATEMENT_MESSAGES: Final = 200_000
# Gateway status -> the hub statuses that agree with it.
_AGREES: Final[Mapping[str, frozenset[str]]] = {
    RemoteStatus.CONFIRMED.value: frozenset({"settled"}),
    RemoteStatus.CANCELLED.value: frozenset({"cancelled"}),
    # A reversal the hub confirmed leaves "reversed" (or nothing at all if it never committed).
    RemoteStatus.REVERSED.value: frozenset({"reversed", "none"}),
    RemoteStatus.FAILED.value: frozenset({"none"}),
}


@dataclass(frozen=True, slots=True)
class Figures:
    count: int = 0
    medfee_sumamt: int = 0
    fund_pay_sumamt: int = 0
    acct_pay: int = 0
    psn_cash_pay: int = 0

    def plus(self, other: Figures) -> Figures:
        return Figures(
            self.count + other.count,
            self.medfee_sumamt + other.medfee_sumamt,
            self.fund_pay_sumamt + other.fund_pay_sumamt,
            self.acct_pay + other.acct_pay,
            self.psn_cash_pay + other.psn_cash_pay,
        )

    @property
    def fronted_fen(self) -> int:
        """What Shanghai fronted for the insured province: the fund and account shares."""
        return self.fund_pay_sumamt + self.acct_pay

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "fronted_fen": self.fronted_fen}


@dataclass(frozen=True, slots=True)
class HubMessage:
    """One message as a side records it: status and amounts (zero when nothing settled)."""

    msgid: str
    status: str  # gateway: RemoteStatus value; hub: settled | cancelled | reversed | none
    setl_id: str | None = None
    figures: Figures = Figures()
    # Gateway side: confirmed with a cancel msgid written whose outcome is not booked yet (a
    # cancel in flight, or one the reversal task is resolving).
    cancel_in_doubt: bool = False


@dataclass(frozen=True, slots=True)
class Mismatch:
    msgid: str
    reason: str  # missing_at_gateway | missing_at_hub | status_differs | amounts_differ
    gateway_status: str | None
    hub_status: str | None
    gateway: Figures | None = None
    hub: Figures | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    insuplc_admdvs: str
    begin: dt.date
    end: dt.date
    settled: Figures
    cancelled: Figures
    reversed_count: int
    unresolved_count: int
    hub_settled: Figures | None
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return (
            self.hub_settled is not None
            and self.hub_settled == self.settled
            and not self.mismatches
            and self.unresolved_count == 0
        )


def period_bounds_utc(begin: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[begin 00:00, end+1 00:00) in Beijing time, as UTC instants."""
    start = dt.datetime.combine(begin, dt.time(), BEIJING).astimezone(dt.UTC)
    stop = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), BEIJING).astimezone(dt.UTC)
    return start, stop


def _figures(row: RemoteSettlementRow) -> Figures:
    if row.medfee_sumamt is None:
        return Figures()
    assert row.fund_pay_sumamt is not None
    assert row.acct_pay is not None
    assert row.psn_cash_pay is not None
    return Figures(1, row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay, row.psn_cash_pay)


def gateway_messages(
    session: Session, *, insuplc_admdvs: str, begin: dt.date, end: dt.date
) -> list[HubMessage]:
    """The gateway's messages to the province in the period: by the hub's settle time when
    it answered one, else by when the intent was written."""
    start, stop = period_bounds_utc(begin, end)
    rows = session.scalars(
        select(RemoteSettlementRow)
        .where(
            RemoteSettlementRow.insuplc_admdvs == insuplc_admdvs,
            or_(
                and_(
                    RemoteSettlementRow.setl_time.is_not(None),
                    RemoteSettlementRow.setl_time >= start,
                    RemoteSettlementRow.setl_time < stop,
                ),
                and_(
                    RemoteSettlementRow.setl_time.is_(None),
                    RemoteSettlementRow.created_at >= start,
                    RemoteSettlementRow.created_at < stop,
                ),
            ),
        )
        .order_by(RemoteSettlementRow.id)
        .limit(MAX_STATEMENT_MESSAGES)
    )
    return [
        HubMessage(
            r.msgid,
            r.status.value,
            r.setl_id,
            _figures(r),
            cancel_in_doubt=r.status is RemoteStatus.CONFIRMED and r.cancel_msgid is not None,
        )
        for r in rows
    ]


def compare(
    *,
    insuplc_admdvs: str,
    begin: dt.date,
    end: dt.date,
    ours: Iterable[HubMessage],
    hub_settled: Figures | None,
    hub_details: Iterable[HubMessage],
) -> Statement:
    """The statement: our totals by status, and every message the two sides disagree on."""
    ours_by_id = {m.msgid: m for m in ours}
    theirs_by_id: dict[str, HubMessage] = {m.msgid: m for m in hub_details}
    settled = cancelled = Figures()
    reversed_count = unresolved = 0
    mismatches: list[Mismatch] = []
    for msgid in sorted(set(ours_by_id) | set(theirs_by_id)):
        mine, theirs = ours_by_id.get(msgid), theirs_by_id.get(msgid)
        if mine is not None:
            if mine.status == RemoteStatus.CONFIRMED.value:
                settled = settled.plus(mine.figures)
            elif mine.status == RemoteStatus.CANCELLED.value:
                cancelled = cancelled.plus(mine.figures)
            elif mine.status == RemoteStatus.REVERSED.value:
                reversed_count += 1
            elif mine.status in (RemoteStatus.INTENT.value, RemoteStatus.UNKNOWN.value):
                unresolved += 1
                continue  # not final: the reversal queue decides it
        hub_status = "none" if theirs is None else theirs.status
        if mine is not None and mine.cancel_in_doubt and hub_status == "cancelled":
            unresolved += 1
            continue  # not final: the cancel's outcome is being written or resolved
        if mine is None:
            if hub_status in ("settled", "cancelled"):
                mismatches.append(
                    Mismatch(msgid, "missing_at_gateway", None, hub_status, None, theirs.figures)  # type: ignore[union-attr]
                )
            continue
        if hub_status not in _AGREES[mine.status]:
            reason = "missing_at_hub" if theirs is None else "status_differs"
            mismatches.append(
                Mismatch(
                    msgid,
                    reason,
                    mine.status,
                    hub_status,
                    mine.figures,
                    None if theirs is None else theirs.figures,
                )
            )
        elif (
            theirs is not None
            and hub_status in ("settled", "cancelled")
            and _amounts(theirs.figures) != _amounts(mine.figures)
        ):
            mismatches.append(
                Mismatch(
                    msgid,
                    "amounts_differ",
                    mine.status,
                    hub_status,
                    mine.figures,
                    theirs.figures,
                )
            )
    return Statement(
        insuplc_admdvs=insuplc_admdvs,
        begin=begin,
        end=end,
        settled=settled,
        cancelled=cancelled,
        reversed_count=reversed_count,
        unresolved_count=unresolved,
        hub_settled=hub_settled,
        mismatches=mismatches,
    )


def _amounts(figures: Figures) -> tuple[int, int, int, int]:
    return (figures.medfee_sumamt, figures.fund_pay_sumamt, figures.acct_pay, figures.psn_cash_pay)
