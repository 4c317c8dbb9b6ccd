"""Writing the outcome of a cancel that the reversal task resolved, for the terminal too.

A cancel request whose worker died while it held the cancel's lease (SIGKILL between the hub's
answer and our commit) leaves its Idempotency-Key in progress: the terminal's retry with that
key would get ``409 IDEMPOTENCY_KEY_IN_USE`` until the key expires. No column names that key,
but its fingerprint is known: the remote cancel path fingerprints a request by the settlement
and the reason only (:func:`cancel_request_sha256`), and the lease holder's reason is the
settlement's ``cancel_reason``. So when the task books the cancellation it stores the 200
answer under every such key still in progress (the retry then replays it), and when it finds
the cancel not done it releases them (the retry cancels afresh). While the task holds the
lease, a key in progress with that fingerprint cannot be a live request's: a live one either
holds the lease itself or rolled its key back when it found the lease taken.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.crossprov.views import remote_view
from gateway.settlement_api.service import request_sha256
from settlement.crossprov import remote
from settlement.crossprov.store import RemoteSettlementRow
from settlement.idempotency import finish_request, release_request
from settlement.store import IdempotencyKey, IdempotencyStatus

__all__ = ["booked_unit", "cancel_request_sha256", "not_done_unit"]


def cancel_request_sha256(setl_id: str, reason: str) -> str:
    """The fingerprint of ``POST /v1/settlements/{setl_id}/cancel`` through the hub."""
    return request_sha256(f"POST /v1/settlements/{setl_id}/cancel", None, {"reason": reason})


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
) -> bool:
    """The hub cancelled: book it (:func:`remote.cancel_booked`) and answer stranded keys."""
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
    body = remote_view(row).model_dump_json()
    for key in _stranded_keys(session, row):
        finish_request(
            session,
            client_id=row.fixmedins_code,
            idempotency_key=key,
            response_status=200,
            response_body=body,
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
