"""What the national door's transactions share: the card at the device, the checks that
compare an input with what the use case found (run in the renderer, inside the unit, so a
mismatch rolls the unit back and nothing is written), and the settlement answers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from dbkit import beijing_date
from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import FsiCall, ok, run_estimate
from gateway.fsi.inputs import CardInput
from gateway.fsi.presence import CardAtCounter, card_at_counter
from gateway.fsi.views import estimate_setlinfo, remote_setlinfo, setldetail, settled_setlinfo
from settlement.counter.outcomes import Estimate, Settled
from settlement.crossprov.remote_settle import RemoteSettled
from settlement.crossprov.routing import Route as Way
from settlement.crossprov.store import RemoteSettlementRow
from settlement.keyed import Answer, Stored

__all__ = [
    "card_of",
    "check_person",
    "check_total",
    "constant",
    "empty_answer",
    "estimate_answer",
    "remote_answer",
    "remote_cancel_answer",
    "settled_answer",
    "visit_date",
]


async def card_of(call: FsiCall, card: CardInput) -> CardAtCounter:
    return await card_at_counter(
        call,
        mdtrt_cert_type=card.mdtrt_cert_type,
        mdtrt_cert_no=card.mdtrt_cert_no,
        card_sn=card.card_sn or None,
    )


def check_person(psn_no: str, sent: str) -> None:
    if sent and sent != psn_no:
        raise GatewayError(ErrorCode.FSI_CARD_MISMATCH, "psn_no is not the card holder's")


def check_total(total_fen: int, sent_fen: int | None) -> None:
    if sent_fen is not None and sent_fen != total_fen:
        raise GatewayError(
            ErrorCode.FSI_AMOUNT_MISMATCH, "medfee_sumamt is not the sum of the fee lines"
        )


def visit_date(call: FsiCall) -> dt.date:
    return beijing_date(call.now)


def settled_answer(
    settled: Settled, *, call: FsiCall, psn_no: str, medfee_fen: int | None, cancel: bool = False
) -> Answer:
    check_person(settled.psn_no, psn_no)
    check_total(settled.record.medfee_sumamt, medfee_fen)
    row = settled.record
    return ok(
        call,
        {
            "setlinfo": settled_setlinfo(settled, cancel=cancel),
            "setldetail": setldetail(row.hifp_pay, row.hifob_pay),
        },
    )


def remote_answer(settled: RemoteSettled, *, call: FsiCall) -> Answer:
    return ok(call, {"setlinfo": remote_setlinfo(settled.setlinfo)})


def remote_cancel_answer(row: RemoteSettlementRow, *, call: FsiCall) -> Answer:
    """A cancel through the hub (2103/2208/2305): the cancelled settlement's ``setlinfo`` as
    the insured place answered it, ``refd_setl_flag`` "1", cash as ``pdn_cash_pay`` (as a
    local cancel answers)."""
    assert row.setlinfo_json is not None  # only a confirmed settlement is cancelled
    setlinfo = remote_setlinfo(json.loads(row.setlinfo_json), cancel=True)
    setlinfo["refd_setl_flag"] = "1"
    return ok(call, {"setlinfo": setlinfo})


def estimate_answer(
    estimate: Estimate,
    *,
    call: FsiCall,
    psn_no: str,
    medfee_fen: int | None,
    mdtrt_id: str | None,
) -> Answer:
    check_person(estimate.psn_no, psn_no)
    check_total(estimate.result.medfee_sumamt, medfee_fen)
    result = estimate.result
    return ok(
        call,
        {
            "setlinfo": estimate_setlinfo(estimate, mdtrt_id=mdtrt_id),
            "setldetail": setldetail(result.hifp_pay, result.hifob_pay),
        },
    )


def empty_answer(_done: Any, *, call: FsiCall) -> Answer:
    return ok(call, {})


def constant(value: Any, _session: Session) -> Any:
    return value


async def local_estimate(
    call: FsiCall,
    card: CardAtCounter,
    work: Callable[[Session], Estimate],
    *,
    settled_by: str,
    psn_no: str,
    medfee_fen: int | None,
    mdtrt_id: str | None,
) -> Stored:
    """A pre-settle (2101, 2206, 2303): the engine on ``work``'s reads, under the msgid as
    /v1's pre-settle is (:func:`run_estimate`). Only for a person insured here: the hub gives
    no estimate, so a person insured elsewhere settles (``settled_by``) directly."""
    if card.route is not Way.LOCAL:
        raise GatewayError(
            ErrorCode.VISIT_TYPE_NOT_ALLOWED,
            f"no estimate through the hub: settle ({settled_by}) a person insured elsewhere "
            "directly",
        )
    render = partial(
        estimate_answer, call=call, psn_no=psn_no, medfee_fen=medfee_fen, mdtrt_id=mdtrt_id
    )
    return await run_estimate(call, work, render)
