"""The remote-settlement state machine and the reversal queue, in the caller's session.

::

    intent ──hub settled──────────► confirmed ──hub cancelled──► cancelled
       │ ──hub refused / not sent─► failed
       │ ──no answer (timeout, dropped, 5xx), or stale after a crash──► unknown
                                                                     │ (reversal queued)
                                                       2601 confirmed ▼
                                                                  reversed

A cancel (confirmed → cancelled) has its own message id (``cancel_msgid``) and a job in the
same queue (``hub_reversals``, keyed by the SETTLE msgid, ``oinfno`` the cancel's infno: a
*cancel check*), written with the cancel msgid BEFORE the call and leased to the request that
sends it. Whoever holds the lease (the terminal's request, or the reversal task once the
lease ran out or the outcome was unknown) is the only one that may send that cancel msgid,
query it (5201) or tombstone it (2601), and the only one that may write its outcome:

* the hub cancelled under it → ``cancelled`` + the mirror ledger posting (exactly once);
* the hub holds no cancellation under it and never will (refused, or tombstoned by 2601) →
  the settlement stays ``confirmed`` and the cancel msgid is forgotten, so a later cancel
  draws a new one.

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

from dbkit import as_utc
from settlement.crossprov import wire
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
    "CancelBusy",
    "HubSettlement",
    "OutcomeOverridden",
    "PendingWork",
    "ReversalJob",
    "begin_cancel",
    "begin_intent",
    "cancel_booked",
    "cancel_not_done",
    "cancel_unresolved",
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


class CancelBusy(SettlementError):
    """Another attempt at this cancel holds its lease (a terminal's request in flight, or the
    reversal task resolving an unknown outcome): sending the same cancel msgid now could race
    with a 5201/2601 about it. Answered 503 with Retry-After; nothing was written."""

    code = "HUB_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
    # The hub's Beijing time is stored as UTC by the column type (dbkit.UtcDateTime).
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
    """A leased queue row: a reversal of the settle ``omsgid`` (2601), or, when ``oinfno`` is
    a cancel infno, a cancel check of that settlement's ``cancel_msgid``."""

    omsgid: str
    oinfno: str
    insuplc_admdvs: str
    fixmedins_code: str
    attempts: int
    cancel_msgid: str | None = None

    @property
    def is_cancel_check(self) -> bool:
        return self.oinfno in wire.CANCEL_INFNOS


def claim_due_reversals(
    session: Session, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[ReversalJob]:
    """Lease up to ``limit`` due reversals to ``owner``. A lease that ran out (its worker
    died) is due again; a live lease keeps other workers away."""
    rows = session.execute(
        select(HubReversalRow, RemoteSettlementRow.fixmedins_code, RemoteSettlementRow.cancel_msgid)
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
    for row, _, _ in rows:
        row.lease_owner = owner
        row.lease_until = now + lease
    session.flush()
    return [
        ReversalJob(row.omsgid, row.oinfno, row.insuplc_admdvs, code, row.attempts, cancel_msgid)
        for row, code, cancel_msgid in rows
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


def _cancel_check(session: Session, msgid: str) -> HubReversalRow | None:
    return session.scalar(
        select(HubReversalRow).where(HubReversalRow.omsgid == msgid).with_for_update()
    )


def begin_cancel(
    session: Session,
    *,
    row: RemoteSettlementRow,
    cancel_msgid: str,
    reason: str,
    owner: str,
    now: dt.datetime,
    lease: dt.timedelta,
) -> str:
    """Before the cancel call: write the cancel msgid (kept by every retry until the hub's
    answer about it is known) and lease the settlement's cancel check to ``owner``. If the
    caller dies, the lease runs out and the reversal task resolves the cancel. Returns the
    msgid to send; :class:`CancelBusy` while another attempt holds the lease."""
    assert row.status is RemoteStatus.CONFIRMED, row.status
    check = _cancel_check(session, row.msgid)
    if (
        check is not None
        and check.status is ReversalStatus.PENDING
        and check.lease_until is not None
        and as_utc(check.lease_until) > now
    ):
        wait_s = (as_utc(check.lease_until) - now).total_seconds()
        raise CancelBusy(
            "this settlement's cancel is being resolved with the hub; retry shortly",
            retry_after_s=max(1, min(int(wait_s) + 1, 60)),
        )
    if row.cancel_msgid is None:
        row.cancel_msgid = cancel_msgid
    # The reason of the request holding the lease (the gateway finds a dead holder's
    # Idempotency-Key by it).
    row.cancel_reason = reason
    until = now + lease
    if check is None:
        check = HubReversalRow(
            omsgid=row.msgid,
            oinfno=wire.CANCEL_FOR_SETTLE[row.infno],
            insuplc_admdvs=row.insuplc_admdvs,
            status=ReversalStatus.PENDING,
            attempts=0,
            created_at=now,
        )
        session.add(check)
    else:
        # A confirmed settlement's queue row can only be its cancel check (a settle that
        # had a reversal queued was never confirmed).
        assert check.oinfno in wire.CANCEL_INFNOS, check.oinfno
        if check.status is ReversalStatus.DONE:  # an earlier cancel was not done: a new one
            check.status = ReversalStatus.PENDING
            check.attempts = 0
            check.done_at = None
            check.hub_reversed = None
            check.last_error = None
    check.next_attempt_at = until
    check.lease_owner = owner
    check.lease_until = until
    session.flush()
    return row.cancel_msgid


def _close_check(check: HubReversalRow, now: dt.datetime, *, hub_reversed: bool) -> None:
    check.status = ReversalStatus.DONE
    check.done_at = now
    check.hub_reversed = hub_reversed
    check.lease_owner = None
    check.lease_until = None


def cancel_booked(
    session: Session,
    *,
    msgid: str,
    cancel_msgid: str,
    owner: str,
    cancel_json: str,
    now: dt.datetime,
) -> RemoteSettlementRow | None:
    """The hub cancelled under ``cancel_msgid`` (its answer, or 5201 ``cancelled``): book it
    and close the cancel check, in one transaction. None if ``owner`` no longer holds the
    lease and the cancel was not booked by the holder: the holder decides (it may have
    tombstoned the msgid). Booking twice is impossible: the row is locked, a cancelled row is
    returned as it is and the mirror transaction has a unique id."""
    check = _leased(session, msgid, owner)
    row = _locked(session, msgid)
    if check is None:
        if row.status is RemoteStatus.CANCELLED and row.cancel_msgid == cancel_msgid:
            return row  # the lease holder booked this very cancel already
        return None
    assert row.cancel_msgid == cancel_msgid, (row.cancel_msgid, cancel_msgid)
    row = confirm_cancel(session, msgid=msgid, cancel_json=cancel_json, now=now)
    check.attempts += 1
    _close_check(check, now, hub_reversed=False)
    session.flush()
    return row


def cancel_not_done(
    session: Session,
    *,
    msgid: str,
    cancel_msgid: str | None,
    owner: str,
    now: dt.datetime,
    hub_reversed: bool = False,
    error: str | None = None,
) -> bool:
    """The hub holds no cancellation under ``cancel_msgid`` and never will (it refused it,
    and a msgid's refusal is final; or 2601 tombstoned it): the settlement stays confirmed,
    the cancel msgid is forgotten (a later cancel draws a new one) and the check is closed.
    ``hub_reversed``: the 2601 undid a cancellation the hub had committed. False if
    ``owner`` no longer holds the lease (nothing written)."""
    check = _leased(session, msgid, owner)
    if check is None:
        return False
    row = _locked(session, msgid)
    assert row.status is RemoteStatus.CONFIRMED, (msgid, row.status)
    if cancel_msgid is not None and row.cancel_msgid == cancel_msgid:
        row.cancel_msgid = None
        row.cancel_reason = None
    check.attempts += 1
    if error is not None:
        check.last_error = error[:MAX_ERROR_CHARS]
    _close_check(check, now, hub_reversed=hub_reversed)
    session.flush()
    return True


def cancel_unresolved(
    session: Session, *, msgid: str, owner: str, error: str, next_attempt_at: dt.datetime
) -> None:
    """No usable answer about the cancel: give the lease back; the reversal task resolves it
    from ``next_attempt_at`` on (unless a retry of the terminal takes the lease first)."""
    check = _leased(session, msgid, owner)
    if check is None:
        return
    check.last_error = error[:MAX_ERROR_CHARS]
    check.next_attempt_at = next_attempt_at
    check.lease_owner = None
    check.lease_until = None
    session.flush()


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
