"""The queries on the national door: 5201 visits, 5203 a settlement, 5204 fee lines, 5206 a
person's year-to-date totals. Each parses, calls the read the /v1 twin calls
(settlement.counter.queries: GET /v1/settlements/{setl_id}; settlement.counter.settle.
eligibility: POST /v1/eligibility) or the visit reads beside them, and renders. A query is
answered under its msgid like any transaction (a resend answers the same)."""

from __future__ import annotations

import datetime as dt
import json
from functools import partial
from typing import Any, Final

from pydantic import Field
from sqlalchemy.orm import Session

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.answers import card_of, check_person, visit_date
from gateway.fsi.calls import FsiCall, InputModel, ok, parse_input, run_work
from gateway.fsi.envelope import parse_time, yuan
from gateway.fsi.inputs import CardInput
from gateway.fsi.views import remote_setlinfo, setldetail, settled_setlinfo
from settlement.counter import queries
from settlement.counter import settle as at_counter
from settlement.counter.outcomes import Eligibility, Settled
from settlement.crossprov.remote_cancel import find_remote
from settlement.crossprov.routing import Route as Way
from settlement.crossprov.store import RemoteSettlementRow
from settlement.errors import SettlementNotFound
from settlement.keyed import Answer, Stored

__all__ = ["CUM_TYPES", "cumulative", "fee_detail", "settlement", "visits"]

_ID_PATTERN: Final = r"^[A-Za-z0-9]+$"
_MED_TYPE_OF: Final = {"outpatient": "11", "emergency": "13", "inpatient": "21", "pharmacy": "41"}
# 累计类别 (5206) of the totals the engine keeps (docs/national-interface.md, our codes).
CUM_TYPES: Final = (
    ("S001", "self_pay_band_consumed_fen", "自负段累计"),
    ("D001", "deductible_consumed_fen", "起付线累计"),
    ("F001", "pooling_fund_paid_fen", "统筹基金支付累计"),
)
_EARLIEST: Final = dt.date(2000, 1, 1)


def _date(text: str, field: str) -> dt.date:
    return parse_time(text if len(text) > 10 else text + " 00:00:00", field).date()


# --- 5201 visits -------------------------------------------------------------------------------


class VisitQuery(InputModel):
    psn_no: str = Field(min_length=1, max_length=30)
    begntime: str = Field("", max_length=19)
    endtime: str = Field("", max_length=19)
    mdtrt_id: str = Field("", max_length=40, pattern=r"^[A-Za-z0-9]*$")
    med_type: str = Field("", max_length=6)


def _visits_answer(found: list[queries.VisitSummary], *, call: FsiCall, med_type: str) -> Answer:
    rows = [
        {
            "mdtrt_id": visit.mdtrt_id,
            "psn_no": visit.psn_no,
            "med_type": _MED_TYPE_OF.get(visit.visit_type, "11"),
            "begntime": f"{visit.begin_date.isoformat()} 00:00:00",
            "endtime": None if visit.end_date is None else f"{visit.end_date.isoformat()} 00:00:00",
            "setl_id": visit.setl_id,
            "mdtrt_stas": visit.state,
        }
        for visit in found
    ]
    if med_type:
        rows = [row for row in rows if row["med_type"] == med_type]
    return ok(call, {"mdtrtinfo": rows})


async def visits(call: FsiCall) -> Stored:
    body = parse_input(VisitQuery, call.input)
    begin = _date(body.begntime, "begntime") if body.begntime else _EARLIEST
    end = _date(body.endtime, "endtime") if body.endtime else visit_date(call)
    if end < begin:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "endtime is before begntime")
    return await run_work(
        call,
        partial(
            queries.visits_of,
            fixmedins_code=call.counter.fixmedins_code,
            psn_no=body.psn_no,
            begin=begin,
            end=end,
            mdtrt_id=body.mdtrt_id or None,
        ),
        partial(_visits_answer, call=call, med_type=body.med_type),
    )


# --- 5203 one settlement ----------------------------------------------------------------------


class SettlementQuery(InputModel):
    setl_id: str = Field(min_length=1, max_length=40, pattern=_ID_PATTERN)
    mdtrt_id: str = Field("", max_length=40)
    psn_no: str = Field("", max_length=30)


def _one_settlement(
    session: Session, *, fixmedins_code: str, setl_id: str
) -> Settled | RemoteSettlementRow:
    """GET /v1/settlements/{setl_id}'s reads: a local settlement, else one through the hub."""
    try:
        return queries.get_settlement(session, fixmedins_code=fixmedins_code, setl_id=setl_id)
    except SettlementNotFound:
        remote = find_remote(session, fixmedins_code=fixmedins_code, setl_id=setl_id)
        if remote is None or remote.setlinfo_json is None:
            raise
        return remote


def _settlement_answer(
    found: Settled | RemoteSettlementRow, *, call: FsiCall, body: SettlementQuery
) -> Answer:
    if isinstance(found, RemoteSettlementRow):
        psn_no, mdtrt_id = found.psn_no, found.mdtrt_id
        assert found.setlinfo_json is not None
        info: dict[str, Any] = remote_setlinfo(json.loads(found.setlinfo_json))
        info["refd_setl_flag"] = "1" if found.cancelled_at is not None else "0"
        detail: list[dict[str, Any]] = []
    else:
        row = found.record
        psn_no, mdtrt_id = found.psn_no, row.mdtrt_id
        info = settled_setlinfo(found)
        detail = setldetail(row.hifp_pay, row.hifob_pay)
    # A psn_no or mdtrt_id that is not the settlement's: answered like a missing settlement.
    if (body.psn_no and body.psn_no != psn_no) or (body.mdtrt_id and body.mdtrt_id != mdtrt_id):
        raise SettlementNotFound("no settlement with this setl_id for this person and visit")
    return ok(call, {"setlinfo": info, "setldetail": detail})


async def settlement(call: FsiCall) -> Stored:
    body = parse_input(SettlementQuery, call.input)
    return await run_work(
        call,
        partial(_one_settlement, fixmedins_code=call.counter.fixmedins_code, setl_id=body.setl_id),
        partial(_settlement_answer, call=call, body=body),
    )


# --- 5204 fee lines -----------------------------------------------------------------------------


class FeeQuery(InputModel):
    setl_id: str = Field("", max_length=40, pattern=r"^[A-Za-z0-9]*$")
    mdtrt_id: str = Field("", max_length=40, pattern=r"^[A-Za-z0-9]*$")
    psn_no: str = Field("", max_length=30)


def _fee_answer(found: queries.FeeLines, *, call: FsiCall, psn_no: str) -> Answer:
    if psn_no and psn_no != found.psn_no:
        raise SettlementNotFound("no such visit or settlement for this person")
    return ok(
        call,
        {
            "feedetail": [
                {
                    "feedetl_sn": sn if sn is not None else str(number),
                    "mdtrt_id": found.mdtrt_id,
                    "setl_id": found.setl_id,
                    "psn_no": found.psn_no,
                    "med_list_codg": line.catalogue_code,
                    "cnt": line.quantity,
                    "pric": yuan(line.unit_price_fen),
                    "det_item_fee_sumamt": yuan(line.quantity * line.unit_price_fen),
                }
                for number, (line, sn) in enumerate(
                    zip(found.lines, found.feedetl_sns, strict=True), start=1
                )
            ]
        },
    )


async def fee_detail(call: FsiCall) -> Stored:
    body = parse_input(FeeQuery, call.input)
    if not body.setl_id and not body.mdtrt_id:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "input: setl_id or mdtrt_id is required")
    return await run_work(
        call,
        partial(
            queries.fee_lines_of,
            fixmedins_code=call.counter.fixmedins_code,
            setl_id=body.setl_id or None,
            mdtrt_id=body.mdtrt_id or None,
        ),
        partial(_fee_answer, call=call, psn_no=body.psn_no),
    )


# --- 5206 year-to-date totals -----------------------------------------------------------------


class CumulativeQuery(CardInput):
    cum_ym: str = Field("", max_length=6, pattern=r"^([0-9]{6})?$")


def _cumulative_answer(person: Eligibility, *, call: FsiCall, psn_no: str, year: int) -> Answer:
    check_person(person.psn_no, psn_no)
    totals = person.year_to_date
    return ok(
        call,
        {
            "cuminfo": [
                {
                    "insutype": person.insutype,
                    "year": year,
                    "cum_type_code": code,
                    "cum_type_name": name,
                    "cum": yuan(getattr(totals, field)),
                }
                for code, field, name in CUM_TYPES
            ]
        },
    )


async def cumulative(call: FsiCall) -> Stored:
    """5206: this year's totals (as POST /v1/eligibility reports them), for the card present;
    ``cum_ym`` may only name a month of this year."""
    body = parse_input(CumulativeQuery, call.input)
    year = visit_date(call).year
    if body.cum_ym and int(body.cum_ym[:4]) != year:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, f"cum_ym: only this year's totals ({year}) are kept"
        )
    card = await card_of(call, body)
    if card.route is not Way.LOCAL:
        raise GatewayError(
            ErrorCode.FSI_INFNO_UNSUPPORTED,
            "the totals of a person insured elsewhere are kept by the insured place",
        )
    return await run_work(
        call,
        partial(at_counter.eligibility, at=card.at, now=call.now),
        partial(_cumulative_answer, call=call, psn_no=body.psn_no, year=year),
    )
