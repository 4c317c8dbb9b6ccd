"""Cancelling a settlement made through the hub (2208/2103/2305), and the answers the reversal
task owes a cancel request that died mid-call.

The cancel msgid is written before the call and reused by every retry, so the hub cancels at
most once, and the settlement's cancel check is leased to the request meanwhile (another
attempt gets 503 HUB_UNAVAILABLE + Retry-After). A refusal is final for that msgid: 422
HUB_REFUSED, the settlement stays settled. With no usable answer (timeout, dropped, 5xx, or
nothing sent, which may follow an earlier attempt that did reach the hub) the answer is 503
HUB_UNAVAILABLE: a retry resends the same msgid, and if none comes the reversal task resolves
the cancel by itself.

Stranded keys. A cancel request whose worker died while it held the lease (SIGKILL between the
hub's answer and our commit) leaves its Idempotency-Key in progress: the retry with that key
would get 409 IDEMPOTENCY_KEY_IN_USE until the key expires. No column names that key, but its
fingerprint is known: a cancel through the hub is fingerprinted by the settlement and the
reason only (:func:`cancel_request_sha256`), and the lease holder's reason is the settlement's
``cancel_reason``. So when the task books the cancellation it stores the door's answer under
every such key still in progress (the retry then replays it), and when it finds the cancel
not done it releases them (the retry cancels afresh). While the task holds the lease, a key in
progress with that fingerprint cannot be a live request's: a live one either holds the lease
itself or rolled its key back when it found the lease taken.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from settlement.crossprov import remote, wire
from settlement.crossprov.ports import Hub, Units, require_client, unavailable
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus
from settlement.errors import (
    HubRefused,
    HubUnavailable,
    SettlementAlreadyCancelled,
    SettlementNotFound,
)
from settlement.idempotency import begin_request, finish_request, release_request
from settlement.keyed import (
    KeyedRequest,
    Render,
    Stored,
    answer_owned,
    request_sha256,
)
from settlement.store import IdempotencyKey, IdempotencyStatus

__all__ = [
    "booked_unit",
    "cancel_remote",
    "cancel_request_sha256",
    "find_remote",
    "not_done_unit",
]


def cancel_request_sha256(setl_id: str, reason: str) -> str:
    """The fingerprint of a cancel through the hub: the settlement and the reason only (the
    same on every door), so the reversal task can find a stranded key by it."""
    return request_sha256(f"POST /v1/settlements/{setl_id}/cancel", None, {"reason": reason})


def find_remote(
    session: Session, *, fixmedins_code: str, setl_id: str
) -> RemoteSettlementRow | None:
    """This institution's settlement through the hub with ``setl_id``, if there is one."""
    return session.scalar(
        select(RemoteSettlementRow).where(
            RemoteSettlementRow.setl_id == setl_id,
            RemoteSettlementRow.fixmedins_code == fixmedins_code,
        )
    )


def _begin_cancel_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    msgid: str,
    new_msgid: str,
    reason: str,
    owner: str,
    lease: dt.timedelta,
) -> Stored | str:
    outcome = begin_request(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        request_sha256=keyed.request_hash,
        now=keyed.now,
    )
    if outcome.replay:
        assert outcome.response_status is not None
        assert outcome.response_body is not None
        return Stored(outcome.response_status, outcome.response_body, replayed=True)
    row = session.scalar(
        select(RemoteSettlementRow).where(RemoteSettlementRow.msgid == msgid).with_for_update()
    )
    assert row is not None
    if row.status is RemoteStatus.CANCELLED:
        raise SettlementAlreadyCancelled(f"settlement {row.setl_id} is already cancelled")
    if row.status is not RemoteStatus.CONFIRMED:
        raise SettlementNotFound("this institution has no settlement with this setl_id")
    return remote.begin_cancel(
        session,
        row=row,
        cancel_msgid=new_msgid,
        reason=reason,
        owner=owner,
        now=keyed.now,
        lease=lease,
    )


def _cancel_booked_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    msgid: str,
    cancel_msgid: str,
    owner: str,
    cancel_json: str,
    render: Render[RemoteSettlementRow],
) -> Stored | None:
    row = remote.cancel_booked(
        session,
        msgid=msgid,
        cancel_msgid=cancel_msgid,
        owner=owner,
        cancel_json=cancel_json,
        now=keyed.now,
    )
    if row is None:  # the lease ran out mid-call: the reversal task decides
        release_request(session, client_id=keyed.client_id, idempotency_key=keyed.idempotency_key)
        return None
    key = session.get(
        IdempotencyKey, (keyed.client_id, keyed.idempotency_key), with_for_update=True
    )
    if key is not None and key.status is IdempotencyStatus.DONE:
        # The lease ran out mid-call and the reversal task booked this very cancel and
        # answered under this key already (:func:`booked_unit`).
        assert key.response_status is not None
        assert key.response_body is not None
        return Stored(key.response_status, key.response_body)
    return answer_owned(session, keyed, render(row))


def _cancel_refused_unit(
    session: Session, *, keyed: KeyedRequest, msgid: str, cancel_msgid: str, owner: str
) -> None:
    """The hub refused the cancel msgid (final for that msgid): not done, key released."""
    remote.cancel_not_done(
        session, msgid=msgid, cancel_msgid=cancel_msgid, owner=owner, now=keyed.now
    )
    release_request(session, client_id=keyed.client_id, idempotency_key=keyed.idempotency_key)


def _cancel_unresolved_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    msgid: str,
    owner: str,
    error: str,
    next_attempt_at: dt.datetime,
) -> None:
    """No answer: the cancel msgid is kept (a retry resends it), the key released (the retry
    runs afresh) and the cancel check handed to the reversal task."""
    remote.cancel_unresolved(
        session, msgid=msgid, owner=owner, error=error, next_attempt_at=next_attempt_at
    )
    release_request(session, client_id=keyed.client_id, idempotency_key=keyed.idempotency_key)


async def cancel_remote(
    units: Units,
    hub: Hub,
    *,
    row: RemoteSettlementRow,
    keyed: KeyedRequest,
    reason: str,
    render: Render[RemoteSettlementRow],
) -> Stored:
    """Cancel a confirmed settlement through the hub (module docstring). ``keyed`` is
    fingerprinted by :func:`cancel_request_sha256` here, whatever the door gave."""
    client = require_client(hub)
    assert row.setl_id is not None
    keyed = dataclasses.replace(keyed, request_hash=cancel_request_sha256(row.setl_id, reason))
    owner = f"{hub.owner}:cancel:{secrets.token_hex(4)}"
    try:
        started = await units.write(
            partial(
                _begin_cancel_unit,
                keyed=keyed,
                msgid=row.msgid,
                new_msgid=client.msgids.next(row.fixmedins_code, odd=True),
                reason=reason,
                owner=owner,
                lease=hub.lease,
            )
        )
    except remote.CancelBusy as busy:
        raise HubUnavailable(busy.message, retry_after_s=busy.retry_after_s) from None
    if isinstance(started, Stored):
        return started
    cancel_msgid = started
    outcome = await client.call(
        infno=wire.CANCEL_FOR_SETTLE[row.infno],
        msgid=cancel_msgid,
        insuplc_admdvs=row.insuplc_admdvs,
        fixmedins_code=row.fixmedins_code,
        payload={"psn_no": row.psn_no, "setl_id": row.setl_id},
    )
    if outcome.outcome == "ok":
        assert outcome.answer is not None
        cancel_json = json.dumps(
            outcome.answer.output.get("setlinfo"), ensure_ascii=False, separators=(",", ":")
        )
        stored = await units.write(
            partial(
                _cancel_booked_unit,
                keyed=keyed,
                msgid=row.msgid,
                cancel_msgid=cancel_msgid,
                owner=owner,
                cancel_json=cancel_json,
                render=render,
            )
        )
        if stored is not None:
            return stored
        raise HubUnavailable(
            "the hub answered too late; the cancel is being resolved", retry_after_s=1
        )
    if outcome.outcome == "refused":
        assert outcome.answer is not None
        await units.write(
            partial(
                _cancel_refused_unit,
                keyed=keyed,
                msgid=row.msgid,
                cancel_msgid=cancel_msgid,
                owner=owner,
            )
        )
        raise HubRefused(f"{outcome.answer.err_code}: {outcome.answer.err_msg}"[:300])
    await units.write(
        partial(
            _cancel_unresolved_unit,
            keyed=keyed,
            msgid=row.msgid,
            owner=owner,
            error=outcome.error or outcome.outcome,
            # A breath for the terminal's own retry (same msgid, answered at once) before the
            # reversal task asks the hub itself.
            next_attempt_at=keyed.now + hub.backoff(0),
        )
    )
    raise unavailable(hub, outcome.error)


# --- the reversal task's side: answers for stranded keys -------------------------------------


def _stranded_keys(session: Session, row: RemoteSettlementRow) -> list[str]:
    if row.setl_id is None or row.cancel_reason is None:
        return []
    return list(
        session.scalars(
            select(IdempotencyKey.idempotency_key).where(
                IdempotencyKey.client_id == row.fixmedins_code,
                IdempotencyKey.request_sha256
                == cancel_request_sha256(row.setl_id, row.cancel_reason),
                IdempotencyKey.status == IdempotencyStatus.IN_PROGRESS,
            )
        )
    )


def booked_unit(
    session: Session,
    *,
    msgid: str,
    cancel_msgid: str,
    owner: str,
    cancel_json: str,
    now: dt.datetime,
    render: Render[RemoteSettlementRow],
) -> bool:
    """The hub cancelled: book it (:func:`remote.cancel_booked`) and answer stranded keys
    with the door's rendering of the cancelled settlement."""
    row = remote.cancel_booked(
        session,
        msgid=msgid,
        cancel_msgid=cancel_msgid,
        owner=owner,
        cancel_json=cancel_json,
        now=now,
    )
    if row is None:
        return False
    answered = render(row)
    for key in _stranded_keys(session, row):
        finish_request(
            session,
            client_id=row.fixmedins_code,
            idempotency_key=key,
            response_status=answered.status,
            response_body=answered.body,
        )
    return True


def not_done_unit(
    session: Session,
    *,
    msgid: str,
    cancel_msgid: str | None,
    owner: str,
    now: dt.datetime,
    hub_reversed: bool,
) -> bool:
    """The hub did not cancel: :func:`remote.cancel_not_done`, and free stranded keys."""
    row = session.scalar(
        select(RemoteSettlementRow).where(RemoteSettlementRow.msgid == msgid).with_for_update()
    )
    assert row is not None
    stranded = _stranded_keys(session, row)  # before the reason is forgotten
    if not remote.cancel_not_done(
        session,
        msgid=msgid,
        cancel_msgid=cancel_msgid,
        owner=owner,
        now=now,
        hub_reversed=hub_reversed,
    ):
        return False
    for key in stranded:
        release_request(session, client_id=row.fixmedins_code, idempotency_key=key)
    return True
