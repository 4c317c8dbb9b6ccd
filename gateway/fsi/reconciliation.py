"""Reconciliation on the national door: 3201 totals and 3202 details, the same use cases and
figures as /v1/reconciliation (settlement.counter.reconcile; each run stored for operations
with the /v1 rendering, so the mismatch list reads alike whichever door ran it).

3202's detail arrives as a file uploaded by 9101 and named by ``file_qury_no`` (most clients),
or inline (``detail[]``). The file's form (docs/national-interface.md §3 "Reconciliation"):
UTF-8 text, or a ZIP holding one such text file; one settlement a line, tab-separated
``setl_id, mdtrt_id, psn_no, medfee_sumamt, fund_pay_sumamt, acct_pay, refd_setl_flag``; a
first line starting ``setl_id`` is a header. Rows flagged ``refd_setl_flag`` 1 (cancelled) are
left out, as the gateway's side leaves cancelled settlements out (settlement.reconciliation).
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from pydantic import Field
from sqlalchemy.orm import Session

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import FsiCall, InputModel, ok, parse_input, run_work
from gateway.fsi.envelope import parse_time, to_fen, yuan
from gateway.fsi.files import KeptFile, file_content, keep_file
from gateway.fsi.views import time_text
from gateway.settlement_api.views import figures_json
from settlement.counter import reconcile
from settlement.keyed import Answer, Stored
from settlement.reconciliation import CLR_TYPE_VISIT_TYPES, DetailDifference, Figures

__all__ = ["MAX_FILE_ROWS", "MAX_INLINE_ROWS", "MAX_UNZIPPED_BYTES", "details", "totals"]

# 3202's bounds: rows in a detail file, its text once unzipped, rows sent inline (as /v1).
MAX_FILE_ROWS: Final = 20_000
MAX_UNZIPPED_BYTES: Final = 4 * 1024 * 1024
MAX_INLINE_ROWS: Final = 2_000
_COLUMNS: Final = 7


def _day(begin: str, end: str) -> dt.date:
    """One statement day: ``stmt_begndate`` (and ``stmt_enddate``, if sent, the same day),
    ``yyyy-MM-dd`` or with a time."""
    first = parse_time(begin if len(begin) > 10 else begin + " 00:00:00", "stmt_begndate")
    if end:
        last = parse_time(end if len(end) > 10 else end + " 00:00:00", "stmt_enddate")
        if last.date() != first.date():
            raise GatewayError(
                ErrorCode.FSI_ENVELOPE_INVALID,
                "one statement day a call: stmt_enddate must be stmt_begndate's day",
            )
    return first.date()


def _clr_type(value: str) -> str:
    if value not in CLR_TYPE_VISIT_TYPES:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID,
            f"clr_type must be one of {', '.join(sorted(CLR_TYPE_VISIT_TYPES))}",
        )
    return value


def _count(value: object, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, f"{field} must be a whole count")


def _figures_out(figures: Figures) -> dict[str, Any]:
    return {
        "fixmedins_setl_cnt": figures.count,
        "medfee_sumamt": yuan(figures.medfee_sumamt),
        "fund_pay_sumamt": yuan(figures.fund_pay_sumamt),
        "acct_pay": yuan(figures.acct_pay),
        "psn_cash_pay": yuan(figures.psn_cash_pay),
    }


# --- 3201 totals --------------------------------------------------------------------------------


class TotalsInput(InputModel):
    insutype: str = Field("", max_length=6)
    clr_type: str = Field(max_length=6)
    setl_optins: str = Field("", max_length=6)
    stmt_begndate: str = Field(min_length=10, max_length=19)
    stmt_enddate: str = Field("", max_length=19)
    medfee_sumamt: Any
    fund_pay_sumamt: Any
    acct_pay: Any
    psn_cash_pay: Any = None
    cash_payamt: Any = None  # the cash total's name in some clients' 3201/3202
    fixmedins_setl_cnt: Any


def _totals_answer(outcome: reconcile.TotalsOutcome, *, call: FsiCall, optins: str) -> Answer:
    matched = outcome.matched
    return ok(
        call,
        {
            "stmtinfo": {
                "setl_optins": optins,
                "clr_type": outcome.clr_type,
                "stmt_date": outcome.stmt_date.isoformat(),
                "stmt_rslt": "0" if matched else "1",
                "stmt_rslt_dscr": "对账一致 totals match"
                if matched
                else "对账不一致 totals differ",
                "gateway": _figures_out(outcome.gateway),
            }
        },
    )


async def totals(call: FsiCall) -> Stored:
    """3201: the institution's totals of a day and clearing type against the gateway's
    (POST /v1/reconciliation/totals)."""
    body = parse_input(TotalsInput, call.input)
    if body.insutype not in ("", "310"):
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, "insutype: only 310 (employee insurance) is settled"
        )
    medfee = to_fen(body.medfee_sumamt, "medfee_sumamt")
    fund = to_fen(body.fund_pay_sumamt, "fund_pay_sumamt")
    acct = to_fen(body.acct_pay, "acct_pay")
    # The spec's 3201 has no cash total: it is what the fund and the account did not pay.
    cash = medfee - fund - acct
    sent_cash = body.psn_cash_pay if body.psn_cash_pay is not None else body.cash_payamt
    if sent_cash not in (None, "") and to_fen(sent_cash, "psn_cash_pay") != cash:
        raise GatewayError(
            ErrorCode.FSI_AMOUNT_MISMATCH,
            "medfee_sumamt is not fund_pay_sumamt + acct_pay + psn_cash_pay",
        )
    if cash < 0:
        raise GatewayError(
            ErrorCode.FSI_AMOUNT_MISMATCH, "fund_pay_sumamt + acct_pay exceed medfee_sumamt"
        )
    theirs = Figures(
        _count(body.fixmedins_setl_cnt, "fixmedins_setl_cnt"), medfee, fund, acct, cash
    )
    return await run_work(
        call,
        partial(
            reconcile.totals,
            fixmedins_code=call.counter.fixmedins_code,
            stmt_date=_day(body.stmt_begndate, body.stmt_enddate),
            clr_type=_clr_type(body.clr_type),
            theirs=theirs,
            now=call.now,
            render=figures_json,
        ),
        partial(_totals_answer, call=call, optins=body.setl_optins),
    )


# --- 3202 details -------------------------------------------------------------------------------


class DetailRowIn(InputModel):
    setl_id: str = Field(min_length=1, max_length=40)
    mdtrt_id: str = Field("", max_length=40)
    psn_no: str = Field("", max_length=30)
    medfee_sumamt: Any
    fund_pay_sumamt: Any
    acct_pay: Any
    refd_setl_flag: str = Field("0", max_length=1)


class DetailsInput(InputModel):
    clr_type: str = Field(max_length=6)
    setl_optins: str = Field("", max_length=6)
    stmt_begndate: str = Field(min_length=10, max_length=19)
    stmt_enddate: str = Field("", max_length=19)
    file_qury_no: str = Field("", max_length=40, pattern=r"^[A-Za-z0-9]*$")
    medfee_sumamt: Any = None
    fund_pay_sumamt: Any = None
    acct_pay: Any = None
    cash_payamt: Any = None
    psn_cash_pay: Any = None
    fixmedins_setl_cnt: Any = None
    detail: list[DetailRowIn] | None = Field(None, max_length=MAX_INLINE_ROWS)


def _row_figures(
    where: str, setl_id: str, medfee: object, fund: object, acct: object
) -> tuple[str, Figures]:
    medfee_fen = to_fen(medfee, f"{where}.medfee_sumamt")
    fund_fen = to_fen(fund, f"{where}.fund_pay_sumamt")
    acct_fen = to_fen(acct, f"{where}.acct_pay")
    cash = medfee_fen - fund_fen - acct_fen
    if cash < 0:
        raise GatewayError(
            ErrorCode.FSI_AMOUNT_MISMATCH, f"{where}: fund and account exceed medfee_sumamt"
        )
    return setl_id, Figures(1, medfee_fen, fund_fen, acct_fen, cash)


def _text_of(content: bytes) -> str:
    if content[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                members = [info for info in archive.infolist() if not info.is_dir()]
                if len(members) != 1:
                    raise GatewayError(
                        ErrorCode.FSI_FILE_INVALID, "a ZIP must hold exactly one text file"
                    )
                if members[0].file_size > MAX_UNZIPPED_BYTES:
                    raise GatewayError(
                        ErrorCode.FSI_FILE_INVALID,
                        f"the unzipped file is over {MAX_UNZIPPED_BYTES} bytes",
                    )
                with archive.open(members[0]) as member:
                    # Read one byte past the bound: the header's size may lie.
                    content = member.read(MAX_UNZIPPED_BYTES + 1)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError):
            raise GatewayError(ErrorCode.FSI_FILE_INVALID, "not a readable ZIP") from None
        if len(content) > MAX_UNZIPPED_BYTES:
            raise GatewayError(
                ErrorCode.FSI_FILE_INVALID, f"the unzipped file is over {MAX_UNZIPPED_BYTES} bytes"
            )
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise GatewayError(ErrorCode.FSI_FILE_INVALID, "the file is not UTF-8 text") from None


def parse_detail_file(content: bytes) -> list[tuple[str, Figures]]:
    """The valid settlements a detail file lists (docstring of this module)."""
    lines = _text_of(content).splitlines()
    if lines and lines[0].split("\t", 1)[0].strip().lower() == "setl_id":
        lines = lines[1:]
    rows: list[tuple[str, Figures]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if number > MAX_FILE_ROWS:
            raise GatewayError(
                ErrorCode.FSI_FILE_INVALID, f"a detail file has at most {MAX_FILE_ROWS} rows"
            )
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != _COLUMNS or not fields[0] or len(fields[0]) > 40:
            raise GatewayError(
                ErrorCode.FSI_FILE_INVALID,
                f"line {number}: {_COLUMNS} tab-separated fields expected, setl_id first",
            )
        if fields[6] not in ("0", "1"):
            raise GatewayError(
                ErrorCode.FSI_FILE_INVALID, f"line {number}: refd_setl_flag must be 0 or 1"
            )
        if fields[6] == "1":
            continue
        try:
            rows.append(_row_figures(f"line {number}", fields[0], *fields[3:6]))
        except GatewayError as exc:
            raise GatewayError(ErrorCode.FSI_FILE_INVALID, exc.detail) from None
    return rows


def _check_sums(body: DetailsInput, rows: Sequence[tuple[str, Figures]]) -> None:
    """The header's totals, when sent, are the rows' sums: a file cut short or another day's
    file is refused before anything is compared."""
    sent = (
        ("medfee_sumamt", body.medfee_sumamt, sum(f.medfee_sumamt for _, f in rows)),
        ("fund_pay_sumamt", body.fund_pay_sumamt, sum(f.fund_pay_sumamt for _, f in rows)),
        ("acct_pay", body.acct_pay, sum(f.acct_pay for _, f in rows)),
        ("cash_payamt", body.cash_payamt, sum(f.psn_cash_pay for _, f in rows)),
        ("psn_cash_pay", body.psn_cash_pay, sum(f.psn_cash_pay for _, f in rows)),
    )
    for name, value, total in sent:
        if value is not None and value != "" and to_fen(value, name) != total:
            raise GatewayError(
                ErrorCode.FSI_FILE_INVALID, f"the detail rows do not add up to {name}"
            )
    if body.fixmedins_setl_cnt not in (None, "") and _count(
        body.fixmedins_setl_cnt, "fixmedins_setl_cnt"
    ) != len(rows):
        raise GatewayError(
            ErrorCode.FSI_FILE_INVALID, "the detail rows are not fixmedins_setl_cnt settlements"
        )


class _Rows(InputModel):
    detail: list[DetailRowIn] = Field(max_length=MAX_INLINE_ROWS)


@dataclass(frozen=True, slots=True)
class DetailsDone:
    outcome: reconcile.DetailsOutcome
    differences_file: KeptFile | None


_REASONS: Final = {
    "missing_at_gateway": "1",  # the institution has it, the gateway has not
    "missing_at_institution": "2",
    "amounts_differ": "3",
}


def _amount_cells(figures: Figures | None) -> list[str]:
    if figures is None:
        return ["", "", ""]
    return [f"{yuan(x):.2f}" for x in (figures.medfee_sumamt, figures.fund_pay_sumamt,
                                        figures.acct_pay)]  # fmt: skip


def differences_text(differences: Sequence[DetailDifference]) -> bytes:
    header = "setl_id\treason\tmedfee_sumamt\tfund_pay_sumamt\tacct_pay\tgw_medfee_sumamt\t"
    header += "gw_fund_pay_sumamt\tgw_acct_pay"
    lines = [header]
    for difference in differences:
        cells = [difference.setl_id, difference.reason]
        cells += _amount_cells(difference.institution) + _amount_cells(difference.gateway)
        lines.append("\t".join(cells))
    return ("\n".join(lines) + "\n").encode()


def _details_unit(
    session: Session,
    *,
    call: FsiCall,
    body: DetailsInput,
    stmt_date: dt.date,
    clr_type: str,
) -> DetailsDone:
    code = call.counter.fixmedins_code
    if body.detail is not None:
        rows = [
            _row_figures(f"detail[{n}]", r.setl_id, r.medfee_sumamt, r.fund_pay_sumamt, r.acct_pay)
            for n, r in enumerate(body.detail)
            if r.refd_setl_flag != "1"
        ]
    else:
        kept = file_content(
            session, fixmedins_code=code, file_qury_no=body.file_qury_no, now=call.now
        )
        rows = parse_detail_file(bytes(kept.content))
    _check_sums(body, rows)
    outcome = reconcile.details(
        session,
        fixmedins_code=code,
        stmt_date=stmt_date,
        clr_type=clr_type,
        theirs=rows,
        now=call.now,
        render=figures_json,
    )
    file = None
    if outcome.differences:
        file = keep_file(
            session,
            fixmedins_code=code,
            filename=f"3202_{code}_{stmt_date:%Y%m%d}_{clr_type}_differences.txt",
            content=differences_text(outcome.differences),
            now=call.now,
        )
    return DetailsDone(outcome, file)


def _details_answer(done: DetailsDone, *, call: FsiCall, optins: str) -> Answer:
    outcome = done.outcome
    matched = outcome.matched
    output: dict[str, Any] = {
        "stmtinfo": {
            "setl_optins": optins,
            "clr_type": outcome.clr_type,
            "stmt_date": outcome.stmt_date.isoformat(),
            "stmt_rslt": "0" if matched else "1",
            "stmt_rslt_dscr": "明细一致 details match" if matched else "明细不一致 details differ",
            "difference_count": outcome.difference_count,
        },
        "differences": [
            {
                "setl_id": difference.setl_id,
                "reason": difference.reason,
                "institution": None
                if difference.institution is None
                else _figures_out(difference.institution),
                "gateway": None if difference.gateway is None else _figures_out(difference.gateway),
            }
            for difference in outcome.differences
        ],
    }
    if done.differences_file is not None:
        kept = done.differences_file
        output["fileinfo"] = {
            "file_qury_no": kept.file_qury_no,
            "filename": kept.filename,
            "dld_endtime": time_text(kept.expires_at),
        }
    return ok(call, output)


async def details(call: FsiCall) -> Stored:
    """3202: the institution's settlements of a day and clearing type, one by one, against
    the gateway's (POST /v1/reconciliation/details)."""
    body = parse_input(DetailsInput, call.input)
    if body.detail is None and "detail" in call.input and "data" in call.input:
        # The rows beside the data node (some clients).
        rows = parse_input(_Rows, call.input, node=None).detail
        body = body.model_copy(update={"detail": rows})
    if body.detail is None and not body.file_qury_no:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID,
            "input: file_qury_no (from 9101) or detail[] is required",
        )
    return await run_work(
        call,
        partial(
            _details_unit,
            call=call,
            body=body,
            stmt_date=_day(body.stmt_begndate, body.stmt_enddate),
            clr_type=_clr_type(body.clr_type),
        ),
        partial(_details_answer, call=call, optins=body.setl_optins),
    )
