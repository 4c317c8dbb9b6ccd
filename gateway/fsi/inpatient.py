"""The inpatient transactions on the national door: 2401 admission, 2402 discharge, 2404
cancel admission, 2405 cancel discharge, 2303 pre-settle and 2304 settle at discharge (2301,
2302 and 2305 share the outpatient handlers in gateway.fsi.counter: fee lines and a cancel are
the same use cases for a stay).

Each parses, calls the use case its /v1 twin calls (settlement.counter.admissions: admit,
discharge; through the hub settlement.crossprov.remote_settle.discharge_remote) or the stay's
discharge units (settlement.counter.stays), and renders the national ``output``.
"""

from __future__ import annotations

import datetime as dt
from functools import partial

from pydantic import Field
from sqlalchemy.orm import Session

from gateway.crossprov.hub import HUB
from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.answers import (
    card_of,
    check_person,
    empty_answer,
    local_estimate,
    remote_answer,
    settled_answer,
    visit_date,
)
from gateway.fsi.calls import FsiCall, InputModel, guarded, ok, parse_input, run, run_work
from gateway.fsi.envelope import parse_time
from gateway.fsi.inputs import CardInput, optional_fen
from gateway.state import DATABASE
from settlement.counter import admissions, stays
from settlement.counter import settle as at_counter
from settlement.counter.outcomes import Estimate, Registered
from settlement.crossprov.remote_settle import discharge_remote
from settlement.crossprov.routing import Route as Way
from settlement.keyed import Answer, Stored

__all__ = [
    "admit",
    "cancel_discharge",
    "discharge",
    "stay_pre_settle",
    "stay_settle",
]

_ID_PATTERN = r"^[A-Za-z0-9]+$"


def _date_of(call: FsiCall, text: str, field: str) -> dt.date:
    """``yyyy-MM-dd HH:mm:ss`` or the date alone (some clients); empty: today (Beijing)."""
    if not text:
        return visit_date(call)
    return parse_time(text if len(text) > 10 else text + " 00:00:00", field).date()


# --- 2401 admission -----------------------------------------------------------------------------


class AdmitInput(CardInput):
    begntime: str = Field("", max_length=19)
    ipt_no: str = Field("", max_length=30)
    ipt_otp_no: str = Field("", max_length=30)
    med_type: str = Field("21", max_length=6)


def _admit_answer(done: Registered, *, call: FsiCall, psn_no: str, ipt_no: str) -> Answer:
    check_person(done.psn_no, psn_no)
    return ok(call, {"result": {"mdtrt_id": done.mdtrt_id, "psn_no": done.psn_no,
                                "ipt_otp_no": ipt_no}})  # fmt: skip


async def admit(call: FsiCall) -> Stored:
    """2401: open a stay for the card's holder (POST /v1/admissions), on ``begntime``'s date."""
    raw = call.input.get("mdtrtinfo", call.input.get("data", call.input))
    body = parse_input(AdmitInput, {"data": raw})
    admission_date = _date_of(call, body.begntime, "begntime")
    card = await card_of(call, body)
    return await run_work(
        call,
        partial(
            stays.admit_stay,
            holder_id=card.at.holder_id,
            counter=call.counter,
            admission_date=admission_date,
            now=call.now,
        ),
        partial(
            _admit_answer, call=call, psn_no=body.psn_no, ipt_no=body.ipt_no or body.ipt_otp_no
        ),
    )


# --- 2402 discharge / 2405 cancel discharge -----------------------------------------------------


class DischargeInput(InputModel):
    mdtrt_id: str = Field(min_length=1, max_length=40, pattern=_ID_PATTERN)
    psn_no: str = Field("", max_length=30)
    endtime: str = Field(min_length=10, max_length=19)
    dscg_way: str = Field("", max_length=6)


async def discharge(call: FsiCall) -> Stored:
    """2402: record the stay's discharge on ``endtime``'s date; its settlement (2304) settles
    on that date. Under ``dscginfo`` (the spec) or ``mdtrtinfo`` or ``data`` (some clients)."""
    raw = call.input.get("dscginfo", call.input.get("mdtrtinfo", call.input.get("data")))
    body = parse_input(DischargeInput, {"data": raw if raw is not None else call.input})
    discharge_date = _date_of(call, body.endtime, "endtime")
    return await run_work(
        call,
        partial(
            stays.record_discharge,
            fixmedins_code=call.counter.fixmedins_code,
            admission_id=body.mdtrt_id,
            discharge_date=discharge_date,
            now=call.now,
        ),
        partial(empty_answer, call=call),
    )


class StayRef(InputModel):
    mdtrt_id: str = Field(min_length=1, max_length=40, pattern=_ID_PATTERN)
    psn_no: str = Field("", max_length=30)


def _cancel_discharge_answer(done: stays.Discharge, *, call: FsiCall) -> Answer:
    warn = (
        "the stay is open again: change its fee lines and settle it again"
        if done.reopened
        else None
    )
    return ok(call, {}, warn_msg=warn)


async def cancel_discharge(call: FsiCall) -> Stored:
    """2405: forget an open stay's discharge, or reopen a stay whose settlement was
    cancelled (2305)."""
    body = parse_input(StayRef, call.input)
    return await run_work(
        call,
        partial(
            stays.cancel_discharge,
            fixmedins_code=call.counter.fixmedins_code,
            admission_id=body.mdtrt_id,
        ),
        partial(_cancel_discharge_answer, call=call),
    )


# --- 2303 pre-settle / 2304 settle at discharge -----------------------------------------------


class StaySettleInput(CardInput):
    mdtrt_id: str = Field(min_length=1, max_length=40, pattern=_ID_PATTERN)
    med_type: str = Field("21", max_length=6)
    mid_setl_flag: str = Field("0", max_length=1)
    psn_setlway: str = Field("01", max_length=6)
    acct_used_flag: str = Field("1", max_length=1)


def _stay_settle_input(call: FsiCall) -> StaySettleInput:
    body = parse_input(StaySettleInput, call.input)
    if body.mid_setl_flag not in ("", "0"):
        raise GatewayError(
            ErrorCode.VISIT_TYPE_NOT_ALLOWED,
            "no interim settlement (mid_setl_flag 1): a stay is settled once, at discharge",
        )
    return body


async def stay_pre_settle(call: FsiCall) -> Stored:
    """2303: the stay's discharge settlement estimated (the engine on its lines, on the date
    2304 would use); nothing is written."""
    body = _stay_settle_input(call)
    medfee = optional_fen(body.medfee_sumamt, "medfee_sumamt")
    card = await card_of(call, body)

    def work(session: Session) -> Estimate:
        read = stays.stay_read(session, at=card.at, admission_id=body.mdtrt_id, now=call.now)
        return at_counter.estimate(read.read, read.lines)

    return await local_estimate(
        call,
        card,
        work,
        settled_by="2304",
        psn_no=body.psn_no,
        medfee_fen=medfee,
        mdtrt_id=body.mdtrt_id,
    )


async def stay_settle(call: FsiCall) -> Stored:
    """2304: settle every fee line of the stay and close it (POST /v1/admissions/{id}/
    discharge): on the discharge date 2402 recorded, else today; through the hub for a person
    insured elsewhere."""
    body = _stay_settle_input(call)
    medfee = optional_fen(body.medfee_sumamt, "medfee_sumamt")
    card = await card_of(call, body)
    match card.route:
        case Way.LOCAL:
            unit = partial(
                guarded,
                guard=call.require_guard(),
                unit=admissions.discharge,
                at=card.at,
                admission_id=body.mdtrt_id,
                discharge_date=None,
                render=partial(settled_answer, call=call, psn_no=body.psn_no, medfee_fen=medfee),
            )
            return await run(call, unit)
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:
            return await discharge_remote(
                call.app[DATABASE],
                call.app[HUB],
                keyed=call.keyed,
                nonce=call.require_guard(),
                at=card.at,
                admission_id=body.mdtrt_id,
                discharge_date=None,
                render=partial(remote_answer, call=call),
            )
