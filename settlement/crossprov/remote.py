"""The remote-settlement state machine and the reversal queue, in the caller's session.

::

    intent ──hub settled──────────► confirmed ──hub cancelled──► cancelled
       │ ──hub refused / not sent─► failed
       │ ──no answer (timeout, dropped, 5xx), or stale after a crash──► unknown
                                                                     │ (reversal queued)
                                                       2601 confirmed ▼
                                                                  reversed

Every arrow is one transaction that checks the status it leaves (row locked where the
database can), so a late answer cannot overtake a decision already written: if a stale
``intent`` was turned into ``unknown`` (and queued for reversal) while its call was still
running, the call's success is NOT recorded (:class:`OutcomeOverridden`) and the reversal
undoes it at the hub. The ledger is posted only on ``confirmed`` (and mirrored on
``cancelled``); ``failed``, ``unknown`` and ``reversed`` post nothing.

Ledger accounts (beside settlement.ledger's chart)::

    receivable:province:<insuplc_admdvs>   应收参保省   what Shanghai fronted for that province
                                                        (fund_pay_sumamt + acct_pay)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from settlement.crossprov.store import (
    HubReversalRow,
    RemoteSettlementRow,
    RemoteStatus,
    ReversalStatus,
)
from settlement.errors import SettlementError
from settlement.idempotency import release_request
from settlement.ledger import Posting, institution_account, post_transaction, reversal_postings
from settlement.store import LedgerSide

__all__ = [
    "HubSettlement",
    "OutcomeOverridden",
    "PendingWork",
    "ReversalJob",
    "begin_cancel",
    "begin_intent",
    "claim_due_reversals",
    "confirm",
    "confirm_cancel",
    "fail",
    "mark_unknown",
    "pending_work",
    "province_receivable",
    "queue_depth",
    "reversal_done",
    "reversal_retry",
    "stale_intents_to_unknown",
]

KIND_SETTLE: Final = "hub_settle"
KIND_CANCEL: Final = "hub_cancel"
MAX_ERROR_CHARS: Final = 200


class OutcomeOverridden(SettlementError):
    """The row left ``intent`` while its call ran (found stale, queued for reversal)."""

    code = "HUB_OUTCOME_UNKNOWN"


def province_receivable(insuplc_admdvs: str) -> str:
    return f"receivable:province:{insuplc_admdvs}"


@dataclass(frozen=True, slots=True)
class HubSettlement:
    """The parts of a hub ``setlinfo`` the gateway books, in fen (parsed, never computed)."""

    setl_id: str
    setl_time: dt.datetime
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int

    def __post_init__(self) -> None:
        for amount in (self.medfee_sumamt, self.fund_pay_sumamt, self.acct_pay, self.psn_cash_pay):
            assert type(amount) is int, amount
            assert amount >= 0, amount
        assert self.setl_time.tzinfo is not None


def _locked(session: Session, msgid: str) -> RemoteSettlementRow:
    row = session.scalar(
        select(RemoteSettlementRow).where(RemoteSettlementRow.msgid == msgid).with_for_update()
    )
    assert row is not None, f"no remote settlement {msgid}"
    return row


def begin_intent(session: Session, row: RemoteSettlementRow) -> None:
    """Write the intent (the caller commits BEFORE calling the hub)."""
    assert row.status is RemoteStatus.INTENT
    session.add(row)
    session.flush()


def _postings(row: RemoteSettlementRow, settled: HubSettlement) -> list[Posting]:
    fronted_fen = settled.fund_pay_sumamt + settled.acct_pay
    debits = (
        (province_receivable(row.insuplc_admdvs), fronted_fen),
        (institution_account(row.fixmedins_code, "cash"), settled.psn_cash_pay),
    )
    postings = [Posting(account, LedgerSide.DEBIT, fen) for account, fen in debits if fen]
    if settled.medfee_sumamt:
        postings.append(
            Posting(
                institution_account(row.fixmedins_code, "fees"),
                LedgerSide.CREDIT,
                settled.medfee_sumamt,
            )
        )
    return postings


def confirm(
    session: Session,
    *,
    msgid: str,
    setlinfo_json: str,
    settled: HubSettlement,
    now: dt.datetime,
) -> RemoteSettlementRow:
    """intent → confirmed: store the hub's setlinfo verbatim and post the ledger."""
    row = _locked(session, msgid)
    if row.status is not RemoteStatus.INTENT:
        raise OutcomeOverridden(f"message {msgid} is {row.status.value}, not intent")
    if settled.medfee_sumamt != settled.fund_pay_sumamt + settled.acct_pay + settled.psn_cash_pay:
        # The hub's figures do not add up: never book them. Left as intent, the row turns
        # unknown when stale and is reversed at the hub.
        raise OutcomeOverridden(f"message {msgid}: the hub's setlinfo does not add up")
    row.status = RemoteStatus.CONFIRMED
    row.setlinfo_json = setlinfo_json
    row.setl_id = settled.setl_id
    row.setl_time = settled.setl_time
    row.medfee_sumamt = settled.medfee_sumamt
    row.fund_pay_sumamt = settled.fund_pay_sumamt
    row.acct_pay = settled.acct_pay
    row.psn_cash_pay = settled.psn_cash_pay
    row.resolved_at = now
    session.flush()
    postings = _postings(row, settled)
    if postings:
        post_transaction(
            session,
            txn_id=f"{KIND_SETTLE}:{msgid}",
            kind=KIND_SETTLE,
            postings=postings,
            posted_at=now,
        )
    return row


def fail(session: Session, *, msgid: str, err_code: str, err_msg: str, now: dt.datetime) -> None:
    """intent → failed (refused by the hub, or nothing was sent). Nothing is posted."""
    row = _locked(session, msgid)
    if row.status is not RemoteStatus.INTENT:
        raise OutcomeOverridden(f"message {msgid} is {row.status.value}, not intent")
    row.status = RemoteStatus.FAILED
    row.err_code = err_code[:40]
    row.err_msg = err_msg[:MAX_ERROR_CHARS]
    row.resolved_at = now
    session.flush()


def _to_unknown(session: Session, row: RemoteSettlementRow, now: dt.datetime, error: str) -> None:
    row.status = RemoteStatus.UNKNOWN
    row.err_msg = error[:MAX_ERROR_CHARS]
    session.add(
        HubReversalRow(
            omsgid=row.msgid,
            oinfno=row.infno,
            insuplc_admdvs=row.insuplc_admdvs,
            status=ReversalStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    if row.client_id is not None and row.idempotency_key is not None:
        # The terminal's retry with the same key must settle afresh (with a new msgid).
        release_request(session, client_id=row.client_id, idempotency_key=row.idempotency_key)
    session.flush()


def mark_unknown(session: Session, *, msgid: str, error: str, now: dt.datetime) -> bool:
    """intent → unknown, and queue its reversal, in one transaction. False if the row had
    already left intent (a sweeper got there first: it queued the reversal)."""
    row = _locked(session, msgid)
    if row.status is not RemoteStatus.INTENT:
        return False
    _to_unknown(session, row, now, error)
    return True


def stale_intents_to_unknown(
    session: Session, *, older_than: dt.datetime, now: dt.datetime, limit: int
) -> list[str]:
    """Intents left behind by a crash (older than the longest a call may take) → unknown,
    each queued for reversal and its idempotency key released. Returns their msgids."""
    rows = session.scalars(
        select(RemoteSettlementRow)
        .where(
            RemoteSettlementRow.status == RemoteStatus.INTENT,
            RemoteSettlementRow.created_at < older_than,
        )
        .order_by(RemoteSettlementRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        _to_unknown(session, row, now, "no outcome recorded (gateway restarted mid-call)")
    return [row.msgid for row in rows]


@dataclass(frozen=True, slots=True)
class ReversalJob:
    omsgid: str
    oinfno: str
    insuplc_admdvs: str
    fixmedins_code: str
    attempts: int


def claim_due_reversals(
    session: Session, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[ReversalJob]:
    """Lease up to ``limit`` due reversals to ``owner``. A lease that ran out (its worker
    died) is due again; a live lease keeps other workers away."""
    rows = session.execute(
        select(HubReversalRow, RemoteSettlementRow.fixmedins_code)
        .join(RemoteSettlementRow, RemoteSettlementRow.msgid == HubReversalRow.omsgid)
        .where(
            HubReversalRow.status == ReversalStatus.PENDING,
            HubReversalRow.next_attempt_at <= now,
            or_(HubReversalRow.lease_until.is_(None), HubReversalRow.lease_until <= now),
        )
        .order_by(HubReversalRow.next_attempt_at, HubReversalRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=HubReversalRow)
    ).all()
    for row, _ in rows:
        row.lease_owner = owner
        row.lease_until = now + lease
    session.flush()
    return [
        ReversalJob(row.omsgid, row.oinfno, row.insuplc_admdvs, code, row.attempts)
        for row, code in rows
    ]


def _leased(session: Session, omsgid: str, owner: str) -> HubReversalRow | None:
    return session.scalar(
        select(HubReversalRow)
        .where(
            HubReversalRow.omsgid == omsgid,
            HubReversalRow.status == ReversalStatus.PENDING,
            HubReversalRow.lease_owner == owner,
        )
        .with_for_update()
    )


def reversal_done(
    session: Session, *, omsgid: str, owner: str, hub_reversed: bool, now: dt.datetime
) -> bool:
    """The hub confirmed the reversal: queue row done, settlement reversed. False if this
    owner no longer holds the lease (another worker took over; 2601 is idempotent)."""
    job = _leased(session, omsgid, owner)
    if job is None:
        return False
    job.status = ReversalStatus.DONE
    job.done_at = now
    job.hub_reversed = hub_reversed
    job.attempts += 1
    job.lease_owner = None
    job.lease_until = None
    row = _locked(session, omsgid)
    assert row.status is RemoteStatus.UNKNOWN, row.status
    row.status = RemoteStatus.REVERSED
    row.resolved_at = now
    session.flush()
    return True


def reversal_retry(
    session: Session,
    *,
    omsgid: str,
    owner: str,
    error: str,
    next_attempt_at: dt.datetime,
) -> None:
    """The 2601 failed: count the attempt, give the lease back, try again later."""
    job = _leased(session, omsgid, owner)
    if job is None:
        return
    job.attempts += 1
    job.last_error = error[:MAX_ERROR_CHARS]
    job.next_attempt_at = next_attempt_at
    job.lease_owner = None
    job.lease_until = None
    session.flush()


@dataclass(frozen=True, slots=True)
class PendingWork:
    stale_intents: bool
    due_reversals: bool
    queue_depth: int


def pending_work(session: Session, *, older_than: dt.datetime, now: dt.datetime) -> PendingWork:
    """Is there anything for the reversal task to write? Read only, so an idle gateway's
    task never takes the database's write lock."""
    stale = session.scalar(
        select(RemoteSettlementRow.id)
        .where(
            RemoteSettlementRow.status == RemoteStatus.INTENT,
            RemoteSettlementRow.created_at < older_than,
        )
        .limit(1)
    )
    due = session.scalar(
        select(HubReversalRow.id)
        .where(
            HubReversalRow.status == ReversalStatus.PENDING,
            HubReversalRow.next_attempt_at <= now,
            or_(HubReversalRow.lease_until.is_(None), HubReversalRow.lease_until <= now),
        )
        .limit(1)
    )
    return PendingWork(stale is not None, due is not None, queue_depth(session))


def queue_depth(session: Session) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(HubReversalRow)
        .where(HubReversalRow.status == ReversalStatus.PENDING)
    )
    return int(count or 0)


def begin_cancel(
    session: Session, *, row: RemoteSettlementRow, cancel_msgid: str, reason: str
) -> str:
    """Write the cancel message id before the call (reused by every retry of the cancel);
    returns the msgid to send."""
    if row.cancel_msgid is None:
        row.cancel_msgid = cancel_msgid
        row.cancel_reason = reason
        session.flush()
    return row.cancel_msgid


def confirm_cancel(
    session: Session, *, msgid: str, cancel_json: str, now: dt.datetime
) -> RemoteSettlementRow:
    """confirmed → cancelled: the mirror ledger transaction."""
    row = _locked(session, msgid)
    if row.status is RemoteStatus.CANCELLED:
        return row
    assert row.status is RemoteStatus.CONFIRMED, row.status
    row.status = RemoteStatus.CANCELLED
    row.cancel_json = cancel_json
    row.cancelled_at = now
    session.flush()
    original = f"{KIND_SETTLE}:{msgid}"
    postings = reversal_postings(session, original)
    if postings:
        post_transaction(
            session,
            txn_id=f"{KIND_CANCEL}:{msgid}",
            kind=KIND_CANCEL,
            postings=postings,
            posted_at=now,
            reverses_txn_id=original,
        )
    return row


def unresolved(session: Session, *, limit: int) -> Sequence[RemoteSettlementRow]:
    """Rows not yet final (intent or unknown), oldest first: for ops listings."""
    return session.scalars(
        select(RemoteSettlementRow)
        .where(RemoteSettlementRow.status.in_((RemoteStatus.INTENT, RemoteStatus.UNKNOWN)))
        .order_by(RemoteSettlementRow.id)
        .limit(limit)
    ).all()
