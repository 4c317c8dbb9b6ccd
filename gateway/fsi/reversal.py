"""2601 reversal (冲正) by ``omsgid``/``oinfno``: undo a transaction whose answer the HIS never
got, whether or not it committed (DOMAIN §4, §5: a result whose outcome is unknown is
reversed).

* The original committed (its answer is stored under its msgid): a settlement (2102, 2207,
  2304) is cancelled in full, as 2208 would (same use case; a settlement through the hub is
  cancelled through the hub, settlement.crossprov.remote_cancel); an admission (2401) with nothing
  on it is cancelled as 2404 would. A cancel (2103, 2208, 2305) cannot be undone here: the
  ledger never un-reverses, so the reversal is refused and the HIS settles again.
* The original never arrived, or failed (nothing stored): the reversal claims its msgid with a
  tombstone, so when the original arrives late it is refused (FSI_MSGID_REVERSED) and never
  done.

Both in ONE unit with the reversal's own msgid, so a retried reversal answers its first
answer.

* A settle resent under its msgid after a 2601 cancelled its settlement
  (:func:`refuse_reversed_resend`): refused ``FSI_MSGID_REVERSED``, as the late original of
  the second case is, never its stored success. The HIS reversed it because it never got that
  answer; receiving it now it would book a settlement that no longer stands (and collect its
  cash share). The reversal is known by the settlement's ``cancel_reason``, written in the
  cancel's own transaction (:func:`reversal_reason`).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Final

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.crossprov.hub import HUB
from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import CLIENT_PREFIX, FsiCall, InputModel, ok, parse_input, run
from gateway.fsi.envelope import INFCODE_MSGID_CONFLICT, render
from gateway.state import DATABASE
from settlement.counter import registered
from settlement.counter import settle as at_counter
from settlement.crossprov.remote_cancel import cancel_remote, find_remote
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus
from settlement.errors import SettlementAlreadyCancelled
from settlement.idempotency import store_response
from settlement.keyed import Answer, KeyedRequest, Stored, answer, claim_key
from settlement.recording import cancel_settlement
from settlement.store import IdempotencyKey, IdempotencyStatus, SettlementRow, SettlementStatus

__all__ = [
    "REVERSIBLE",
    "TOMBSTONE_SHA256",
    "refuse_reversed_resend",
    "reversal_reason",
    "reverse",
    "reversed_by",
]

# DOMAIN §4: only these may be reversed.
REVERSIBLE: Final = frozenset({2102, 2103, 2207, 2208, 2304, 2305, 2401})
_SETTLES: Final = frozenset({2102, 2207, 2304})
_CANCELS: Final = frozenset({2103, 2208, 2305})
# The request fingerprint of a tombstone: 64 characters as the column requires, none of them a
# lower-case hex digit after the first, so no request's SHA-256 is ever equal to it.
TOMBSTONE_SHA256: Final = "REVERSED-BEFORE-ARRIVAL".ljust(64, "X")
# The cancel_reason of a settlement a 2601 cancelled (local or through the hub): how a resend
# of its settle learns it was reversed, and by which msgid (reversed_by).
_REASON_PREFIX: Final = "2601 reversal msgid "


def reversal_reason(msgid: str) -> str:
    """The ``cancel_reason`` of a settlement cancelled by the 2601 with ``msgid``."""
    return _REASON_PREFIX + msgid


class ReversalInput(InputModel):
    omsgid: str = Field(pattern=r"^[0-9A-Za-z]{1,30}$")
    oinfno: str = Field(pattern=r"^[0-9]{4}$")
    psn_no: str = Field("", max_length=30)


def _refused(detail: str) -> GatewayError:
    return GatewayError(ErrorCode.FSI_REVERSAL_REFUSED, detail)


def _output_of(body: str) -> dict[str, Any]:
    parsed = json.loads(body)
    output = parsed.get("output") if isinstance(parsed, dict) else None
    return output if isinstance(output, dict) else {}


def _reverse_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    call: FsiCall,
    omsgid: str,
    oinfno: int,
) -> Stored:
    call.require_guard().claim(session)
    stored = claim_key(session, keyed)
    if stored is not None:
        return stored
    original = session.get(IdempotencyKey, (keyed.client_id, omsgid), with_for_update=True)
    warn = None
    if original is None:
        # Never arrived (or failed and stored nothing): it never will be done.
        tombstone = render(
            received_at=call.received_at,
            now=call.now,
            infcode=INFCODE_MSGID_CONFLICT,
            output=None,
            err_msg=f"[{ErrorCode.FSI_MSGID_REVERSED}] reversed by 2601 msgid "
            f"{call.envelope.msgid}",
        )
        store_response(
            session,
            client_id=keyed.client_id,
            idempotency_key=omsgid,
            request_sha256=TOMBSTONE_SHA256,
            now=call.now,
            response_status=oinfno,
            response_body=tombstone,
        )
        warn = "the original was not done; it is refused if it arrives"
    elif original.request_sha256 == TOMBSTONE_SHA256:
        warn = "already reversed"
    elif original.status is IdempotencyStatus.IN_PROGRESS:
        raise GatewayError(ErrorCode.FSI_MSGID_IN_USE, "the original is still running")
    elif original.response_status != oinfno:
        raise _refused("oinfno is not the original message's infno")
    elif oinfno in _CANCELS:
        raise _refused("a committed cancel cannot be reversed; settle again instead")
    else:
        output = _output_of(original.response_body or "{}")
        if oinfno in _SETTLES:
            setl_id = (output.get("setlinfo") or {}).get("setl_id")
            if not isinstance(setl_id, str):
                raise _refused("the original answer names no settlement")
            try:
                found = at_counter.find_settlement(
                    session, fixmedins_code=call.counter.fixmedins_code, setl_id=setl_id
                )
                cancel_settlement(session, setl_id=setl_id, now=call.now)
                row = found.record
                assert isinstance(row, SettlementRow)
                row.cancel_reason = reversal_reason(call.envelope.msgid)
                warn = f"settlement {setl_id} cancelled"
            except SettlementAlreadyCancelled:
                warn = "the settlement was already cancelled"
        else:  # 2401: the admission, if nothing was settled on it
            mdtrt_id = (output.get("result") or output.get("data") or {}).get("mdtrt_id")
            if not isinstance(mdtrt_id, str):
                raise _refused("the original answer names no admission")
            registered.cancel_registration(
                session,
                fixmedins_code=call.counter.fixmedins_code,
                mdtrt_id=mdtrt_id,
                visit_type="inpatient",
            )
            warn = f"admission {mdtrt_id} cancelled"
    session.flush()
    return answer(session, keyed, ok(call, {}, warn_msg=warn))


def _remote_original(
    session: Session, *, call: FsiCall, omsgid: str, oinfno: int
) -> RemoteSettlementRow | None:
    """The settlement through the hub that the committed original (a settle) made, if it
    made one: it is cancelled through the hub, as 2208 would, not in the local unit."""
    if oinfno not in _SETTLES:
        return None
    original = session.get(IdempotencyKey, (call.keyed.client_id, omsgid))
    if (
        original is None
        or original.request_sha256 == TOMBSTONE_SHA256
        or original.status is not IdempotencyStatus.DONE
        or original.response_status != oinfno
    ):
        return None  # the local unit answers these cases
    setl_id = (_output_of(original.response_body or "{}").get("setlinfo") or {}).get("setl_id")
    if not isinstance(setl_id, str):
        return None
    return find_remote(session, fixmedins_code=call.counter.fixmedins_code, setl_id=setl_id)


def _reversed_remote(_row: RemoteSettlementRow, *, call: FsiCall) -> Answer:
    return ok(call, {}, warn_msg="the settlement was cancelled through the national hub")


async def reverse(call: FsiCall) -> Stored:
    body = parse_input(ReversalInput, call.input)
    oinfno = int(body.oinfno)
    if oinfno not in REVERSIBLE:
        raise _refused(f"{body.oinfno} cannot be reversed (only {sorted(REVERSIBLE)})")
    if body.omsgid == call.envelope.msgid:
        raise _refused("omsgid is this reversal's own msgid")
    db = call.app[DATABASE]
    remote = await db.read(partial(_remote_original, call=call, omsgid=body.omsgid, oinfno=oinfno))
    if remote is not None:
        await db.read(call.require_guard().claim)  # before the hub is asked anything
        return await cancel_remote(
            db,
            call.app[HUB],
            row=remote,
            keyed=call.keyed,
            reason=reversal_reason(call.envelope.msgid),
            render=partial(_reversed_remote, call=call),
        )
    return await run(call, partial(_reverse_unit, call=call, omsgid=body.omsgid, oinfno=oinfno))


def is_tombstone(session: Session, *, fixmedins_code: str, msgid: str) -> bool:
    row = session.get(IdempotencyKey, (CLIENT_PREFIX + fixmedins_code, msgid))
    return row is not None and row.request_sha256 == TOMBSTONE_SHA256


def reversed_by(session: Session, *, fixmedins_code: str, setl_id: str) -> str | None:
    """The msgid of the 2601 that cancelled this institution's settlement ``setl_id`` (local
    or through the hub), or None: not cancelled, or cancelled otherwise (2103/2208/2305, /v1,
    whose callers had the settlement's answer, since they named its setl_id)."""
    reason = session.scalar(
        select(SettlementRow.cancel_reason).where(
            SettlementRow.setl_id == setl_id,
            SettlementRow.fixmedins_code == fixmedins_code,
            SettlementRow.status == SettlementStatus.CANCELLED,
        )
    )
    if reason is None:
        remote = find_remote(session, fixmedins_code=fixmedins_code, setl_id=setl_id)
        # A cancel through the hub writes its reason before the call; only a booked one counts
        # (until the hub confirms, the settlement stands and its answer is still true).
        if remote is not None and remote.status is RemoteStatus.CANCELLED:
            reason = remote.cancel_reason
    if reason is None or not reason.startswith(_REASON_PREFIX):
        return None
    return reason.removeprefix(_REASON_PREFIX)


async def refuse_reversed_resend(call: FsiCall, stored: Stored) -> None:
    """A settle (2102, 2207, 2304) replayed under its msgid whose settlement a 2601 has
    cancelled since: refused ``FSI_MSGID_REVERSED`` (infcode -2) naming the reversal, not its
    stored success (module docstring; docs/national-interface.md §2). One read, on a replay
    only."""
    if not stored.replayed or call.infno not in _SETTLES:
        return
    setl_id = (_output_of(stored.body).get("setlinfo") or {}).get("setl_id")
    if not isinstance(setl_id, str):
        return
    reversal = await call.app[DATABASE].read(
        partial(reversed_by, fixmedins_code=call.counter.fixmedins_code, setl_id=setl_id)
    )
    if reversal is not None:
        raise GatewayError(
            ErrorCode.FSI_MSGID_REVERSED,
            f"settlement {setl_id} was cancelled by 2601 msgid {reversal}",
        )
