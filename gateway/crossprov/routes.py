"""Cross-province routes: filings (备案, as 2501), ops listings of remote settlements and of
the reversal queue, and clearing statements (清算) against the hub's 3201/3202.

Every route is signed and for hospital and pharmacy terminals. Filings: any of them registers
and lists (its institution is recorded as the registrant). Listings: a terminal sees its own
institution's remote settlements; ``scope=all``, the reversal queue and clearing statements
are for operations terminals (institutions in the ``reconciliation_ops_institutions``
setting), else 403 RECONCILIATION_FORBIDDEN, as for the reconciliation mismatches.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from functools import partial
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbkit import as_utc, day_bounds_utc
from gateway.crossprov import models
from gateway.crossprov.hub import HUB
from gateway.errors import ErrorCode, GatewayError
from gateway.params import ascii_int
from gateway.query import query_date
from gateway.routing import Call, Route
from gateway.state import CLOCK, DATABASE, SETTINGS
from gateway.store import MEDICAL_KINDS
from settlement.crossprov import clearing, remote, remote_clearing, wire
from settlement.crossprov.filings import FilingNotCrossProvince, register_filing
from settlement.crossprov.store import (
    FilingRow,
    FilingType,
    HubReversalRow,
    RemoteSettlementRow,
    ReversalStatus,
)

__all__ = ["CROSSPROV_ROUTES"]

PAGE_SIZE: Final = 200
_PSN_NO: Final = re.compile(r"[0-9]{15,30}")
_ADMDVS: Final = re.compile(r"[1-9][0-9]{5}")
_TAGS: Final = ("cross-province",)


def _institution(call: Call[Any]) -> str:
    assert call.terminal is not None
    return call.terminal.institution_code


def _now(call: Call[Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(call.app[CLOCK](), dt.UTC)


def _is_ops(call: Call[Any]) -> bool:
    ops = {
        code.strip()
        for code in call.app[SETTINGS].reconciliation_ops_institutions.split(",")
        if code.strip()
    }
    return _institution(call) in ops


def _require_ops(call: Call[Any]) -> None:
    if not _is_ops(call):
        raise GatewayError(
            ErrorCode.RECONCILIATION_FORBIDDEN, "cross-province operations views are for ops"
        )


def _query(call: Call[Any], name: str, pattern: re.Pattern[str], what: str) -> str:
    value = call.request.query.get(name, "")
    if not pattern.fullmatch(value):
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            f"query parameter {name} must be {what}",
            errors=[{"field": name, "problem": f"must be {what}", "type": "value_error"}],
        )
    return value


# --- filings ----------------------------------------------------------------------------------


def _filing_view(row: FilingRow) -> models.FilingOut:
    return models.FilingOut(
        filing_id=row.filing_id,
        psn_no=row.psn_no,
        insuplc_admdvs=row.insuplc_admdvs,
        filing_type=row.filing_type.value,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        target_fixmedins_code=row.target_fixmedins_code,
        registered_by=row.registered_by,
    )


def _register_unit(
    session: Session, *, body: models.FilingIn, institution: str, now: dt.datetime
) -> models.FilingOut:
    row = register_filing(
        session,
        psn_no=body.psn_no,
        insuplc_admdvs=body.insuplc_admdvs,
        filing_type=FilingType(body.filing_type),
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        target_fixmedins_code=body.target_fixmedins_code,
        registered_by=institution,
        now=now,
    )
    return _filing_view(row)


async def register(call: Call[models.FilingIn]) -> models.FilingOut:
    try:
        return await call.app[DATABASE].write(
            partial(_register_unit, body=call.body, institution=_institution(call), now=_now(call))
        )
    except FilingNotCrossProvince as exc:
        # The rule is the use case's; this door names the field as its other field errors do.
        raise GatewayError(
            ErrorCode.VALIDATION_FAILED,
            exc.message,
            errors=[{"field": exc.field, "problem": "not another province", "type": "value"}],
        ) from None


def _filings_unit(session: Session, *, psn_no: str) -> models.FilingList:
    rows = session.scalars(
        select(FilingRow).where(FilingRow.psn_no == psn_no).order_by(FilingRow.id).limit(PAGE_SIZE)
    )
    return models.FilingList(psn_no=psn_no, items=[_filing_view(row) for row in rows])


async def list_filings(call: Call[None]) -> models.FilingList:
    psn_no = _query(call, "psn_no", _PSN_NO, "a psn_no (15-30 digits)")
    return await call.app[DATABASE].read(partial(_filings_unit, psn_no=psn_no))


# --- ops listings -----------------------------------------------------------------------------


def _settlements_unit(
    session: Session, *, day: dt.date, institution: str | None, after_id: int
) -> models.RemoteSettlementList:
    start, end = day_bounds_utc(day)
    query = (
        select(RemoteSettlementRow)
        .where(
            RemoteSettlementRow.created_at >= start,
            RemoteSettlementRow.created_at < end,
            RemoteSettlementRow.id > after_id,
        )
        .order_by(RemoteSettlementRow.id)
        .limit(PAGE_SIZE + 1)
    )
    if institution is not None:
        query = query.where(RemoteSettlementRow.fixmedins_code == institution)
    rows = session.scalars(query).all()
    page = rows[:PAGE_SIZE]
    return models.RemoteSettlementList(
        date=day,
        scope="all" if institution is None else "institution",
        items=[
            models.RemoteSettlementRowOut(
                msgid=r.msgid,
                infno=r.infno,
                route=r.route,
                status=r.status.value,
                insuplc_admdvs=r.insuplc_admdvs,
                fixmedins_code=r.fixmedins_code,
                visit_type=r.visit_type,
                visit_date=r.visit_date,
                filing_type=r.filing_type,
                setl_id=r.setl_id,
                medfee_sumamt=r.medfee_sumamt,
                fund_pay_sumamt=r.fund_pay_sumamt,
                acct_pay=r.acct_pay,
                psn_cash_pay=r.psn_cash_pay,
                err_code=r.err_code,
                err_msg=r.err_msg,
                created_at=as_utc(r.created_at),
                resolved_at=None if r.resolved_at is None else as_utc(r.resolved_at),
            )
            for r in page
        ],
        next_cursor=str(page[-1].id) if len(rows) > PAGE_SIZE else None,
    )


async def list_remote_settlements(call: Call[None]) -> models.RemoteSettlementList:
    day = query_date(call, "date")
    scope = call.request.query.get("scope", "institution")
    if scope not in ("institution", "all"):
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "scope must be institution or all")
    if scope == "all":
        _require_ops(call)
    after_id = ascii_int(call.request.query.get("cursor", "0"), max_digits=18)
    if after_id is None:
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "cursor must be a next_cursor value")
    return await call.app[DATABASE].read(
        partial(
            _settlements_unit,
            day=day,
            institution=None if scope == "all" else _institution(call),
            after_id=after_id,
        )
    )


def _reversals_unit(
    session: Session, *, status: ReversalStatus, now: dt.datetime
) -> models.ReversalList:
    rows = session.scalars(
        select(HubReversalRow)
        .where(HubReversalRow.status == status)
        .order_by(HubReversalRow.id.desc() if status is ReversalStatus.DONE else HubReversalRow.id)
        .limit(PAGE_SIZE)
    )
    return models.ReversalList(
        status=status.value,
        depth=remote.queue_depth(session),
        items=[
            models.ReversalOut(
                omsgid=r.omsgid,
                oinfno=r.oinfno,
                kind="cancel_check" if r.oinfno in wire.CANCEL_INFNOS else "reversal",
                insuplc_admdvs=r.insuplc_admdvs,
                status=r.status.value,
                attempts=r.attempts,
                next_attempt_at=as_utc(r.next_attempt_at),
                leased=r.lease_until is not None and as_utc(r.lease_until) > now,
                last_error=r.last_error,
                hub_reversed=r.hub_reversed,
                created_at=as_utc(r.created_at),
                done_at=None if r.done_at is None else as_utc(r.done_at),
            )
            for r in rows
        ],
    )


async def list_reversals(call: Call[None]) -> models.ReversalList:
    _require_ops(call)
    raw = call.request.query.get("status", "pending")
    if raw not in ("pending", "done"):
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "status must be pending or done")
    return await call.app[DATABASE].read(
        partial(_reversals_unit, status=ReversalStatus(raw), now=_now(call))
    )


# --- clearing ---------------------------------------------------------------------------------


def _figures_out(figures: clearing.Figures | None) -> models.FiguresOut | None:
    return None if figures is None else models.FiguresOut(**figures.as_dict())


async def clearing_statement(call: Call[None]) -> models.ClearingOut:
    _require_ops(call)
    admdvs = _query(call, "insuplc_admdvs", _ADMDVS, "an admdvs code (6 digits)")
    begin, end = query_date(call, "begin"), query_date(call, "end")
    if end < begin or (end - begin).days > 31:
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "begin..end must span 1 to 32 days")
    statement, reversed_raw = await remote_clearing.clearing_statement(
        call.app[DATABASE],
        call.app[HUB],
        fixmedins_code=_institution(call),
        insuplc_admdvs=admdvs,
        begin=begin,
        end=end,
    )
    return models.ClearingOut(
        insuplc_admdvs=admdvs,
        begin=begin,
        end=end,
        matched=statement.matched,
        settled=models.FiguresOut(**statement.settled.as_dict()),
        cancelled=models.FiguresOut(**statement.cancelled.as_dict()),
        reversed_count=statement.reversed_count,
        unresolved_count=statement.unresolved_count,
        hub_settled=_figures_out(statement.hub_settled),
        hub_reversed=reversed_raw,
        mismatch_count=len(statement.mismatches),
        mismatches=[
            models.MismatchOut(
                msgid=m.msgid,
                reason=m.reason,
                gateway_status=m.gateway_status,
                hub_status=m.hub_status,
                gateway=_figures_out(m.gateway),
                hub=_figures_out(m.hub),
            )
            for m in statement.mismatches[:1000]
        ],
    )


_OPS: Final = (ErrorCode.RECONCILIATION_FORBIDDEN, ErrorCode.VALIDATION_FAILED)

_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/v1/crossprov/filings",
        operation_id="register_filing",
        summary="Register a cross-province filing (备案, as 2501).",
        description="`referral` needs `valid_to` (at most a year) and names its target "
        "institution (default: the registering one). `emergency` needs no filing at all.",
        handler=register,
        request_model=models.FilingIn,
        response_model=models.FilingOut,
        response_status=201,
        tags=_TAGS,
        errors=(ErrorCode.VALIDATION_FAILED,),
    ),
    Route(
        "GET",
        "/v1/crossprov/filings",
        operation_id="list_filings",
        summary="A person's filings (?psn_no=).",
        handler=list_filings,
        response_model=models.FilingList,
        tags=_TAGS,
        errors=(ErrorCode.VALIDATION_FAILED,),
    ),
    Route(
        "GET",
        "/v1/crossprov/settlements",
        operation_id="list_remote_settlements",
        summary="Settlements through the hub of a day (?date=YYYY-MM-DD[&scope=all]), every "
        "status (intent, confirmed, failed, unknown, reversed, cancelled).",
        handler=list_remote_settlements,
        response_model=models.RemoteSettlementList,
        tags=_TAGS,
        errors=_OPS,
    ),
    Route(
        "GET",
        "/v1/crossprov/reversals",
        operation_id="list_reversals",
        summary="The reversal queue (?status=pending|done), for operations terminals.",
        handler=list_reversals,
        response_model=models.ReversalList,
        tags=_TAGS,
        errors=_OPS,
    ),
    Route(
        "GET",
        "/v1/crossprov/clearing",
        operation_id="clearing_statement",
        summary="Clearing statement of a province and period "
        "(?insuplc_admdvs=&begin=&end=, Beijing dates) against the hub's 3201/3202.",
        handler=clearing_statement,
        response_model=models.ClearingOut,
        tags=_TAGS,
        errors=(*_OPS, ErrorCode.HUB_UNAVAILABLE, ErrorCode.HUB_REFUSED),
    ),
)

# Hospitals and pharmacies only, as the settlement routes: a bank's or employer's terminal
# (issuance) is refused with 403 INSTITUTION_KIND_NOT_ALLOWED before any handler runs.
CROSSPROV_ROUTES: Final[tuple[Route, ...]] = tuple(
    dataclasses.replace(route, institution_kinds=frozenset(MEDICAL_KINDS)) for route in _ROUTES
)
