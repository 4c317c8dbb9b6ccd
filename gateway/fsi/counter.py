"""The counter's transactions on the national door: 1101 person information, pharmacy
2101/2102/2103, outpatient 2201-2208. Each parses its ``input``, finds the card present at the
device (gateway.fsi.presence), calls the same use case as its /v1 twin (docs/national-
interface.md names it) and renders the national ``output``.

Checks that compare the input with what the use case found (``psn_no``, ``medfee_sumamt``) run
in the renderer, inside the unit: a mismatch rolls the whole unit back, so nothing is written.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Final

from pydantic import Field
from sqlalchemy.orm import Session

from gateway.crossprov.hub import HUB
from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.answers import (
    card_of,
    check_person,
    check_total,
    constant,
    empty_answer,
    local_estimate,
    remote_answer,
    remote_cancel_answer,
    settled_answer,
    visit_date,
)
from gateway.fsi.calls import (
    FsiCall,
    InputModel,
    guarded,
    ok,
    parse_input,
    run,
    run_work,
)
from gateway.fsi.envelope import parse_time, yuan
from gateway.fsi.inputs import CardInput, FeeLineIn, fee_lines, optional_fen
from gateway.fsi.views import MED_TYPES
from gateway.state import DATABASE
from settlement.claim import ClaimLine
from settlement.counter import admissions, registered
from settlement.counter import settle as at_counter
from settlement.counter.outcomes import (
    Estimate,
    FeeLinesAdded,
    FeeLinesCancelled,
    PersonInformation,
    Registered,
)
from settlement.counter.persons import person_information
from settlement.crossprov.remote_cancel import cancel_remote, find_remote
from settlement.crossprov.remote_person import RemotePerson, remote_person
from settlement.crossprov.remote_settle import settle_registered_remote, settle_remote
from settlement.crossprov.routing import Route as Way
from settlement.keyed import Answer, Stored

__all__ = [
    "cancel_registration",
    "cancel_settlement",
    "fee_cancel",
    "fee_upload",
    "person_info",
    "pharmacy_pre_settle",
    "pharmacy_settle",
    "register",
    "registered_pre_settle",
    "registered_settle",
    "visit_info",
]


# --- 1101 person information ----------------------------------------------------------------


class PersonQuery(CardInput):
    psn_cert_type: str = Field("", max_length=6)
    certno: str = Field("", max_length=50)
    psn_name: str = Field("", max_length=50)


def _gender(citizen_id: str) -> str:
    # GB 11643: the 17th character is odd for a man. 1 male, 2 female (GB/T 2261.1).
    digit = citizen_id[16:17]
    if len(digit) != 1 or digit not in "0123456789":  # ASCII only: "¹".isdigit() is True
        return ""
    return "1" if int(digit) % 2 else "2"


def _person_answer(person: PersonInformation, *, call: FsiCall, psn_no: str) -> Answer:
    who = person.eligibility
    check_person(who.psn_no, psn_no)
    return ok(
        call,
        {
            "baseinfo": {
                "psn_no": who.psn_no,
                "psn_cert_type": "01",
                "certno": person.citizen_id,
                "psn_name": person.name,
                "gend": _gender(person.citizen_id),
                "brdy": person.birth_date.isoformat(),
                "age": who.age_years,
            },
            "insuinfo": [
                {
                    "insutype": who.insutype,
                    "psn_type": who.psn_type,
                    "psn_insu_stas": "1",
                    "insuplc_admdvs": who.insuplc_admdvs,
                    "balc": yuan(who.current_year_fen + who.past_years_fen),
                    "cvlserv_flag": "0",
                    "emp_name": "",
                }
            ],
            "idetinfo": [],
        },
    )


def _remote_person_answer(person: RemotePerson, *, call: FsiCall) -> Answer:
    return ok(
        call,
        {
            "baseinfo": {"psn_no": person.place.psn_no, "age": person.age_years},
            "insuinfo": [
                {
                    "insutype": item.insutype,
                    "psn_type": item.psn_type,
                    "psn_insu_stas": "1",
                    "insuplc_admdvs": item.insuplc_admdvs,
                    "balc": yuan(item.balc_fen),
                }
                for item in person.insurances
            ],
            "idetinfo": [{"psn_idet_type": kind} for kind in person.filing_types],
        },
    )


async def person_info(call: FsiCall) -> Stored:
    query = parse_input(PersonQuery, call.input)
    card = await card_of(call, query)
    match card.route:
        case Way.LOCAL:
            return await run_work(
                call,
                partial(person_information, at=card.at, now=call.now),
                partial(_person_answer, call=call, psn_no=query.psn_no),
            )
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:  # ask the insured place (1101)
            remote = await remote_person(
                call.app[DATABASE], call.app[HUB], at=card.at, now=call.now
            )
            return await run_work(
                call, partial(constant, remote), partial(_remote_person_answer, call=call)
            )


# --- pharmacy 2101 / 2102 / 2103 --------------------------------------------------------------


class PharmacyInput(CardInput):
    med_type: str = Field("41", max_length=6)
    feedetail: list[FeeLineIn] | None = Field(None, max_length=1000)
    drugdetail: list[FeeLineIn] | None = Field(None, max_length=1000)


def _pharmacy_input(call: FsiCall) -> tuple[PharmacyInput, list[FeeLineIn]]:
    body = parse_input(PharmacyInput, call.input)
    # The lines under data (most) or beside it (some clients), as feedetail or drugdetail.
    raw_lines = body.feedetail or body.drugdetail
    if raw_lines is None:
        outer = parse_input(PharmacyInput, call.input, node=None)
        raw_lines = outer.feedetail or outer.drugdetail or []
    return body, raw_lines


async def pharmacy_pre_settle(call: FsiCall) -> Stored:
    body, raw_lines = _pharmacy_input(call)
    lines = fee_lines(raw_lines)
    card = await card_of(call, body)
    medfee = optional_fen(body.medfee_sumamt, "medfee_sumamt")

    def work(session: Session) -> Estimate:
        read = at_counter.counter_read(
            session,
            nonce=None,
            at=card.at,
            visit_type="pharmacy",
            visit_date=visit_date(call),
            now=call.now,
        )
        return at_counter.estimate(read, lines.claim)

    return await local_estimate(
        call, card, work, settled_by="2102", psn_no=body.psn_no, medfee_fen=medfee, mdtrt_id=None
    )


async def pharmacy_settle(call: FsiCall) -> Stored:
    body, raw_lines = _pharmacy_input(call)
    lines = fee_lines(raw_lines)
    medfee = optional_fen(body.medfee_sumamt, "medfee_sumamt")
    check_total(lines.sum_fen, medfee)
    card = await card_of(call, body)
    match card.route:
        case Way.LOCAL:
            unit = partial(
                at_counter.settle,
                nonce=call.require_guard(),  # the sign-in, first in the one unit
                at=card.at,
                visit_type="pharmacy",
                visit_date=visit_date(call),
                lines=lines.claim,
                render=partial(settled_answer, call=call, psn_no=body.psn_no, medfee_fen=medfee),
            )
            return await run(call, unit, fast=True)
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:
            return await settle_remote(
                call.app[DATABASE],
                call.app[HUB],
                keyed=call.keyed,
                nonce=call.require_guard(),
                at=card.at,
                visit_type="pharmacy",
                visit_date=visit_date(call),
                lines=lines.claim,
                render=partial(remote_answer, call=call),
            )


# The fingerprint's reference in a cancel through the hub's reason (cancel_settlement).
_REQUEST_REF_HEX: Final = 16


class CancelInput(InputModel):
    setl_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9]+$")
    mdtrt_id: str = Field("", max_length=40)
    psn_no: str = Field("", max_length=30)


async def cancel_settlement(call: FsiCall) -> Stored:
    """2103 / 2208 (and 2305): cancel a settlement in full, as /v1's cancel; a settlement
    through the hub is cancelled through the hub."""
    body = parse_input(CancelInput, call.input)
    institution = call.counter.fixmedins_code
    remote = await call.app[DATABASE].read(
        partial(find_remote, fixmedins_code=institution, setl_id=body.setl_id)
    )
    reason = f"national interface {call.envelope.infno} msgid {call.envelope.msgid}"
    if remote is not None:
        # The sign-in is checked before the hub is asked anything.
        await call.app[DATABASE].read(call.require_guard().claim)
        return await cancel_remote(
            call.app[DATABASE],
            call.app[HUB],
            row=remote,
            keyed=call.keyed,
            # cancel_remote fingerprints the msgid by the settlement and the reason alone (so
            # its reversal task can find a stranded key): a reference to the door's fingerprint
            # of the whole envelope goes into the reason, so a resend with another input under
            # this msgid is FSI_MSGID_REUSED, as for a local settlement, not the first answer.
            # Its first 16 hex digits only: the reason is the settlement's cancel_reason, shown
            # to people, and the fingerprint is a SHA-256 over the sign-in's sign_no (a
            # credential) and the person's psn_no; 64 bits tell the few envelopes one msgid
            # sees apart as well as 256 do.
            reason=f"{reason} request {call.keyed.request_hash[:_REQUEST_REF_HEX]}",
            render=partial(remote_cancel_answer, call=call),
        )
    unit = partial(
        guarded,
        guard=call.require_guard(),
        unit=at_counter.cancel,
        fixmedins_code=institution,
        setl_id=body.setl_id,
        reason=reason,
        render=partial(settled_answer, call=call, psn_no=body.psn_no, medfee_fen=None, cancel=True),
    )
    return await run(call, unit)


# --- outpatient 2201-2208 ---------------------------------------------------------------------


class RegisterInput(CardInput):
    begntime: str = Field("", max_length=19)
    ipt_otp_no: str = Field("", max_length=30)
    dept_code: str = Field("", max_length=30)
    dept_name: str = Field("", max_length=100)


def _register_answer(done: Registered, *, call: FsiCall, psn_no: str, ipt_otp_no: str) -> Answer:
    check_person(done.psn_no, psn_no)
    return ok(call, {"data": {"mdtrt_id": done.mdtrt_id, "psn_no": done.psn_no,
                              "ipt_otp_no": ipt_otp_no}})  # fmt: skip


async def register(call: FsiCall) -> Stored:
    body = parse_input(RegisterInput, call.input)
    card = await card_of(call, body)
    begin = _begin_date(call, body.begntime)
    return await run_work(
        call,
        partial(registered.register, at=card.at, begin_date=begin, now=call.now),
        partial(_register_answer, call=call, psn_no=body.psn_no, ipt_otp_no=body.ipt_otp_no),
    )


def _begin_date(call: FsiCall, begntime: str) -> dt.date:
    if not begntime:
        return visit_date(call)
    # "yyyy-MM-dd HH:mm:ss", or the date alone (some clients).
    text = begntime if len(begntime) > 10 else begntime + " 00:00:00"
    return parse_time(text, "begntime").date()


class VisitRef(InputModel):
    mdtrt_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9]+$")
    psn_no: str = Field("", max_length=30)
    ipt_otp_no: str = Field("", max_length=30)
    chrg_bchno: str = Field("", max_length=30)
    feedetl_sn: str = Field("", max_length=30)


async def cancel_registration(call: FsiCall) -> Stored:
    """2202 (and 2404 inpatient): an open visit nothing was settled on is cancelled."""
    visit_type = "inpatient" if call.infno == 2404 else registered.OUTPATIENT
    body = parse_input(VisitRef, call.input)
    return await run_work(
        call,
        partial(
            registered.cancel_registration,
            fixmedins_code=call.counter.fixmedins_code,
            mdtrt_id=body.mdtrt_id,
            visit_type=visit_type,
        ),
        partial(empty_answer, call=call),
    )


async def visit_info(call: FsiCall) -> Stored:
    """2203: the visit's information (diagnoses, doctor) is acknowledged against the open
    visit; the gateway stores none of it (the engine does not price by diagnosis)."""
    raw = call.input.get("mdtrtinfo", call.input.get("data", call.input))
    if not isinstance(raw, dict):
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "input.mdtrtinfo must be an object")
    body = parse_input(VisitRef, raw, node=None)
    return await run_work(
        call,
        partial(
            admissions.open_admission,
            fixmedins_code=call.counter.fixmedins_code,
            admission_id=body.mdtrt_id,
            lock=False,
            visit_type=registered.OUTPATIENT,
        ),
        partial(empty_answer, call=call),
    )


class UploadInput(InputModel):
    feedetail: list[FeeLineIn] = Field(max_length=1000)


def _upload_answer(
    added: FeeLinesAdded, *, call: FsiCall, raw: list[FeeLineIn], lines: list[ClaimLine]
) -> Answer:
    return ok(
        call,
        {
            "result": [
                {
                    "feedetl_sn": sent.feedetl_sn,
                    "med_list_codg": line.catalogue_code,
                    "cnt": line.quantity,
                    "pric": yuan(line.unit_price_fen),
                    "det_item_fee_sumamt": yuan(line.quantity * line.unit_price_fen),
                }
                for sent, line in zip(raw, lines, strict=True)
            ],
            "line_count": added.line_count,
        },
    )


async def fee_upload(call: FsiCall) -> Stored:
    """2204 (outpatient) and 2301 (inpatient): a batch of fee lines onto an open visit."""
    visit_type = "inpatient" if call.infno == 2301 else registered.OUTPATIENT
    body = parse_input(UploadInput, call.input, node=None)
    lines = fee_lines(body.feedetail)
    first = body.feedetail[0]
    if any(
        (line.mdtrt_id, line.chrg_bchno) != (first.mdtrt_id, first.chrg_bchno)
        for line in body.feedetail
    ):
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, "one upload is one visit's one batch (mdtrt_id, "
            "chrg_bchno)"
        )  # fmt: skip
    if not first.mdtrt_id:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "feedetail[0].mdtrt_id is missing")
    unit = partial(
        guarded,
        guard=call.require_guard(),
        unit=admissions.keyed_fee_lines,
        fixmedins_code=call.counter.fixmedins_code,
        admission_id=first.mdtrt_id,
        lines=lines.claim,
        visit_type=visit_type,
        chrg_bchno=first.chrg_bchno or None,
        feedetl_sns=lines.feedetl_sns,
        render=partial(_upload_answer, call=call, raw=body.feedetail, lines=lines.claim),
    )
    return await run(call, unit)


def _fee_cancel_answer(done: FeeLinesCancelled, *, call: FsiCall) -> Answer:
    return ok(call, {"data": {"mdtrt_id": done.admission_id, "cnt": done.cancelled}})


async def fee_cancel(call: FsiCall) -> Stored:
    """2205 (outpatient) and 2302 (inpatient): a batch of fee lines off an open visit;
    ``chrg_bchno`` "0000" (the spec's "all") or empty takes every line. 2302 names a line by
    ``feedetl_sn`` instead (again "0000" or empty: all)."""
    visit_type = "inpatient" if call.infno == 2302 else registered.OUTPATIENT
    body = parse_input(VisitRef, call.input)
    batch = None if body.chrg_bchno in ("", "0000") else body.chrg_bchno
    line = None if body.feedetl_sn in ("", "0000") else body.feedetl_sn
    return await run_work(
        call,
        partial(
            registered.cancel_fee_batch,
            fixmedins_code=call.counter.fixmedins_code,
            mdtrt_id=body.mdtrt_id,
            chrg_bchno=batch,
            visit_type=visit_type,
            feedetl_sn=line,
        ),
        partial(_fee_cancel_answer, call=call),
    )


class SettleVisitInput(CardInput):
    mdtrt_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9]+$")
    med_type: str = Field("11", max_length=6)
    chrg_bchno: str = Field("", max_length=30)
    psn_setlway: str = Field("01", max_length=6)
    acct_used_flag: str = Field("1", max_length=1)


def _settle_visit_input(call: FsiCall) -> SettleVisitInput:
    body = parse_input(SettleVisitInput, call.input)
    if MED_TYPES.get(body.med_type) not in ("outpatient", None):
        raise GatewayError(
            ErrorCode.VISIT_TYPE_NOT_ALLOWED, f"med_type {body.med_type} is not an outpatient one"
        )
    return body


async def registered_pre_settle(call: FsiCall) -> Stored:
    body = _settle_visit_input(call)
    medfee = optional_fen(body.medfee_sumamt, "medfee_sumamt")
    card = await card_of(call, body)

    def work(session: Session) -> Estimate:
        read = registered.registered_read(
            session, nonce=None, at=card.at, mdtrt_id=body.mdtrt_id, now=call.now
        )
        return at_counter.estimate(read.read, read.lines)

    return await local_estimate(
        call,
        card,
        work,
        settled_by="2207",
        psn_no=body.psn_no,
        medfee_fen=medfee,
        mdtrt_id=body.mdtrt_id,
    )


async def registered_settle(call: FsiCall) -> Stored:
    body = _settle_visit_input(call)
    medfee = optional_fen(body.medfee_sumamt, "medfee_sumamt")
    card = await card_of(call, body)
    match card.route:
        case Way.LOCAL:
            unit = partial(
                registered.settle_registered,
                nonce=call.require_guard(),
                at=card.at,
                mdtrt_id=body.mdtrt_id,
                render=partial(settled_answer, call=call, psn_no=body.psn_no, medfee_fen=medfee),
            )
            return await run(call, unit, fast=True)
        case Way.IN_PROVINCE_REMOTE | Way.CROSS_PROVINCE:  # as POST /v1/settlements does
            return await settle_registered_remote(
                call.app[DATABASE],
                call.app[HUB],
                keyed=call.keyed,
                nonce=call.require_guard(),
                at=card.at,
                mdtrt_id=body.mdtrt_id,
                render=partial(remote_answer, call=call),
            )
