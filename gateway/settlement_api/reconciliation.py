"""Reconciliation routes (对账): 3201 totals, 3202 details, and a day's mismatches, over
settlement.counter.reconcile. Each run is stored with the answer the institution was given."""

from __future__ import annotations

from functools import partial
from typing import Final

from gateway.errors import ErrorCode, GatewayError
from gateway.query import query_date
from gateway.routing import Call, Route
from gateway.settlement_api import calls, views
from gateway.settlement_api.models import (
    DetailRow,
    DetailsRequest,
    DetailsResult,
    MismatchesOut,
    TotalsRequest,
    TotalsResult,
)
from gateway.state import DATABASE, SETTINGS
from settlement.counter import reconcile
from settlement.errors import StatementInvalid
from settlement.reconciliation import Figures

__all__ = ["RECONCILIATION_ROUTES"]

_TAGS: Final = ("settlement",)


async def reconcile_totals(call: Call[TotalsRequest]) -> TotalsResult:
    body = call.body
    outcome = await call.app[DATABASE].write(
        partial(
            reconcile.totals,
            fixmedins_code=calls.terminal_of(call).institution_code,
            stmt_date=body.stmt_date,
            clr_type=body.clr_type,
            theirs=Figures(
                body.fixmedins_setl_cnt,
                body.medfee_sumamt,
                body.fund_pay_sumamt,
                body.acct_pay,
                body.psn_cash_pay,
            ),
            now=calls.now_of(call),
            render=views.figures_json,
        )
    )
    return views.totals_view(outcome)


def _amounts(row: DetailRow) -> tuple[int, int, int, int]:
    return row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay, row.psn_cash_pay


async def reconcile_details(call: Call[DetailsRequest]) -> DetailsResult:
    body = call.body
    outcome = await call.app[DATABASE].write(
        partial(
            reconcile.details,
            fixmedins_code=calls.terminal_of(call).institution_code,
            stmt_date=body.stmt_date,
            clr_type=body.clr_type,
            theirs=[
                (
                    row.setl_id,
                    Figures(
                        1, row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay, row.psn_cash_pay
                    ),
                )
                for row in body.details
            ],
            now=calls.now_of(call),
            render=views.figures_json,
        )
    )
    return views.details_view(outcome)


async def reconciliation_mismatches(call: Call[None]) -> MismatchesOut:
    day = query_date(call)
    institution = calls.terminal_of(call).institution_code
    ops = {
        code.strip()
        for code in call.app[SETTINGS].reconciliation_ops_institutions.split(",")
        if code.strip()
    }
    scope = call.request.query.get("scope", "institution")
    if scope not in ("institution", "all"):
        raise GatewayError(ErrorCode.VALIDATION_FAILED, "scope must be institution or all")
    if scope == "all" and institution not in ops:
        raise GatewayError(
            ErrorCode.RECONCILIATION_FORBIDDEN, "scope=all is for operations terminals"
        )
    runs = await call.app[DATABASE].read(
        partial(
            reconcile.mismatches,
            day=day,
            fixmedins_code=None if scope == "all" else institution,
        )
    )
    return MismatchesOut(
        date=day,
        scope="all" if scope == "all" else "institution",
        items=[views.mismatch_view(run) for run in runs],
    )


RECONCILIATION_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/v1/reconciliation/totals",
        operation_id="reconcile_totals",
        summary="Totals reconciliation (3201) for a day and clr_type.",
        handler=reconcile_totals,
        request_model=TotalsRequest,
        response_model=TotalsResult,
        tags=_TAGS,
        errors=(StatementInvalid,),
    ),
    Route(
        "POST",
        "/v1/reconciliation/details",
        operation_id="reconcile_details",
        summary="Detail reconciliation (3202): the settlements that differ.",
        handler=reconcile_details,
        request_model=DetailsRequest,
        response_model=DetailsResult,
        tags=_TAGS,
        errors=(StatementInvalid,),
        # MAX_DETAIL_ROWS rows must fit: a row is at most ~650 bytes of JSON (a 40-character
        # setl_id written as \u escapes of astral characters is 480), so 2 MiB, not the
        # 64 KiB default that refused about 520 rows and more with 413.
        max_body_bytes=2 * 1024 * 1024,
    ),
    Route(
        "GET",
        "/v1/reconciliation/mismatches",
        operation_id="reconciliation_mismatches",
        summary="A day's reconciliation mismatches (?date=YYYY-MM-DD[&scope=all]).",
        description="Any terminal lists its own institution's mismatching runs. `scope=all` "
        "lists every institution's and is for operations terminals only: those of the "
        "institutions in the `reconciliation_ops_institutions` setting (else 403).",
        handler=reconciliation_mismatches,
        response_model=MismatchesOut,
        tags=_TAGS,
        errors=(ErrorCode.VALIDATION_FAILED, ErrorCode.RECONCILIATION_FORBIDDEN),
    ),
)
