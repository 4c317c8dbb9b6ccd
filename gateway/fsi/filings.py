"""Cross-province filings (备案) on the national door, where they map onto the filings
settlement.crossprov keeps (POST /v1/crossprov/filings, the same register_filing): 2501
referral (转诊转院备案) and 2505 designated-place filing (人员定点备案: a resettled retiree or a
long-term resident), and their cancels 2502 and 2506 (settlement.crossprov.filings.
cancel_filing). Chronic-disease (2503/2504) and other filings have no counterpart in the
settlement rules and stay refused (gateway.fsi.door: FSI_INFNO_UNSUPPORTED)."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Final

from pydantic import Field
from sqlalchemy.orm import Session

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import FsiCall, InputModel, ok, parse_input, run_work
from gateway.fsi.envelope import parse_time
from settlement.crossprov.filings import FilingNotCrossProvince, cancel_filing, register_filing
from settlement.crossprov.store import FilingRow, FilingType
from settlement.keyed import Answer, Stored

__all__ = ["DESIGNATED_TYPES", "cancel", "designated", "referral"]

# 2505's biz_appy_type (our codes: the national code list is not in our sources).
DESIGNATED_TYPES: Final = {
    "01": FilingType.RESETTLED_RETIREE,
    "02": FilingType.LONG_TERM_RESIDENT,
}
_PSN_NO: Final = r"^[0-9]{15,30}$"
_ADMDVS: Final = r"^([1-9][0-9]{5})?$"


def _date(text: str, field: str) -> dt.date:
    return parse_time(text if len(text) > 10 else text + " 00:00:00", field).date()


def _insured_place(call: FsiCall, sent: str) -> str:
    """The person's insured place: the input's ``insuplc_admdvs``, else the envelope's. That
    it is another province is the use case's rule (register_filing), mapped by
    :func:`_filed`."""
    admdvs = sent or call.envelope.insuplc_admdvs or ""
    if not admdvs:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "insuplc_admdvs is missing")
    return admdvs


def _filed_answer(row: FilingRow, *, call: FsiCall) -> Answer:
    return ok(call, {"result": {"trt_dcla_detl_sn": row.filing_id}})


async def _filed(call: FsiCall, work: partial[FilingRow]) -> Stored:
    """Run a registration under the msgid. A person not insured in another province is
    refused as a bad envelope field naming it (``FSI_ENVELOPE_INVALID``, infcode -1): the
    envelope's or the input's ``insuplc_admdvs`` is what the HIS fixes."""
    try:
        return await run_work(call, work, partial(_filed_answer, call=call))
    except FilingNotCrossProvince as exc:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, f"{exc.field}: {exc.message}") from None


def _register(
    call: FsiCall,
    *,
    psn_no: str,
    insuplc_admdvs: str,
    filing_type: FilingType,
    valid_from: dt.date,
    valid_to: dt.date | None,
    target: str | None,
) -> partial[FilingRow]:
    return partial(
        register_filing,
        psn_no=psn_no,
        insuplc_admdvs=insuplc_admdvs,
        filing_type=filing_type,
        valid_from=valid_from,
        valid_to=valid_to,
        target_fixmedins_code=target,
        registered_by=call.counter.fixmedins_code,
        now=call.now,
    )


class ReferralInput(InputModel):
    psn_no: str = Field(pattern=_PSN_NO)
    insuplc_admdvs: str = Field("", pattern=_ADMDVS)
    begndate: str = Field(min_length=10, max_length=19)
    enddate: str = Field(min_length=10, max_length=19)
    reflin_medins_no: str = Field("", pattern=r"^([A-Z0-9]{12})?$")


async def referral(call: FsiCall) -> Stored:
    """2501: a referral to ``reflin_medins_no`` (else to this institution), valid from
    ``begndate`` to ``enddate``."""
    raw = call.input.get("refmedin", call.input.get("data", call.input))
    body = parse_input(ReferralInput, {"data": raw})
    work = _register(
        call,
        psn_no=body.psn_no,
        insuplc_admdvs=_insured_place(call, body.insuplc_admdvs),
        filing_type=FilingType.REFERRAL,
        valid_from=_date(body.begndate, "begndate"),
        valid_to=_date(body.enddate, "enddate"),
        target=body.reflin_medins_no or None,
    )
    return await _filed(call, work)


class DesignatedInput(InputModel):
    psn_no: str = Field(pattern=_PSN_NO)
    insuplc_admdvs: str = Field("", pattern=_ADMDVS)
    biz_appy_type: str = Field(max_length=2)
    begndate: str = Field(min_length=10, max_length=19)
    enddate: str = Field("", max_length=19)


async def designated(call: FsiCall) -> Stored:
    """2505: a long-term filing (resettled retiree 01, long-term resident 02) from
    ``begndate``, until ``enddate`` or, without one, until cancelled."""
    body = parse_input(DesignatedInput, call.input)
    filing_type = DESIGNATED_TYPES.get(body.biz_appy_type)
    if filing_type is None:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID,
            "biz_appy_type must be 01 (resettled retiree) or 02 (long-term resident)",
        )
    work = _register(
        call,
        psn_no=body.psn_no,
        insuplc_admdvs=_insured_place(call, body.insuplc_admdvs),
        filing_type=filing_type,
        valid_from=_date(body.begndate, "begndate"),
        valid_to=_date(body.enddate, "enddate") if body.enddate else None,
        target=None,
    )
    return await _filed(call, work)


class CancelInput(InputModel):
    trt_dcla_detl_sn: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9]+$")
    psn_no: str = Field("", max_length=30)
    memo: str = Field("", max_length=500)


def _cancelled_answer(_filing_id: str, *, call: FsiCall) -> Answer:
    return ok(call, {})


async def cancel(call: FsiCall) -> Stored:
    """2502 / 2506: cancel a filing this institution registered."""
    body = parse_input(CancelInput, call.input)

    def work(session: Session) -> str:
        return cancel_filing(
            session,
            filing_id=body.trt_dcla_detl_sn,
            psn_no=body.psn_no,
            registered_by=call.counter.fixmedins_code,
        )

    return await run_work(call, work, partial(_cancelled_answer, call=call))
