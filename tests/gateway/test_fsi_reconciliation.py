"""Reconciliation on the national door: 3201 totals and 3202 details give the same figures
as /v1/reconciliation; 3202's detail file uploaded by 9101 (plain or zipped) or sent inline;
its differences downloaded by 9102; bad input and bad files refused, writing nothing."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest
from card_auth_testkit import CardTerminal
from fsi_flows import CARD, card_input, settled_stay
from fsi_testkit import His, refused_code, register_operators
from gateway_testkit import PHARMACY, Client, FakeClock, Signer
from settlement_api_testkit import TODAY, Till, load_insured_world, snapshot
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.fsi import files
from gateway.fsi.store import FsiFile


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}  # the demo card PKI on every backend (PostgreSQL too)


@pytest.fixture
def world(engine: Engine) -> Engine:
    load_insured_world(engine)
    register_operators(engine)
    return engine


@pytest.fixture
async def his(world: Engine, client: Client, clock: FakeClock, signer: Signer) -> His:
    response = await CardTerminal(signer).authenticate(CARD)  # at the hospital's terminal
    assert response.status == 200, await response.text()
    his = His(client, clock)
    await his.sign_in()
    return his


def _written(world: Engine) -> dict[str, Any]:
    counts = snapshot(world)
    with Session(world) as session:
        counts["fsi_files"] = session.scalar(select(func.count()).select_from(FsiFile))
    return counts


async def _outpatient(his: His) -> dict[str, Any]:
    registered = await his.ok("2201", {"data": {**card_input(), "begntime": f"{TODAY} 09:00:00"}})
    mdtrt_id = registered["data"]["mdtrt_id"]
    line = {"med_list_codg": "DEMO-A-002", "cnt": 3, "pric": "25.00", "mdtrt_id": mdtrt_id}
    await his.ok("2204", {"feedetail": [line]})
    info: dict[str, Any] = (await his.ok("2207", {"data": {**card_input(), "mdtrt_id": mdtrt_id}}))[
        "setlinfo"
    ]
    return info


def _row(info: dict[str, Any]) -> str:
    cells = [info["setl_id"], info["mdtrt_id"], info["psn_no"]]
    cells += [f"{info[name]:.2f}" for name in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")]
    return "\t".join([*cells, "0"])


def _totals(infos: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    return {"data": {
        "insutype": "310", "clr_type": "11", "setl_optins": "310000",
        "stmt_begndate": TODAY, "stmt_enddate": f"{TODAY} 23:59:59",
        "medfee_sumamt": f"{sum(i['medfee_sumamt'] for i in infos):.2f}",
        "fund_pay_sumamt": sum(i["fund_pay_sumamt"] for i in infos),
        "acct_pay": f"{sum(i['acct_pay'] for i in infos):.2f}",
        "cash_payamt": f"{sum(i['psn_cash_pay'] for i in infos):.2f}",
        "fixmedins_setl_cnt": len(infos), **over,
    }}  # fmt: skip


async def _upload(his: His, content: bytes, filename: str = "3202.txt") -> str:
    encoded = base64.b64encode(content).decode()
    upload = {"in": encoded, "filename": filename, "fixmedins_code": his.fixmedins_code}
    output = await his.ok("9101", {"fsUploadIn": upload})
    assert output["file_size"] == len(content)
    file_qury_no: str = output["file_qury_no"]
    return file_qury_no


def _zip(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("3202.txt", text)
    return buffer.getvalue()


async def test_totals_and_details_match_like_v1(his: His, world: Engine, signer: Signer) -> None:
    first, second = await _outpatient(his), await _outpatient(his)
    _stay_id, stay = await settled_stay(his)
    # 3201: outpatient (11) and inpatient (21) each match.
    matched = (await his.ok("3201", _totals([first, second])))["stmtinfo"]
    assert matched["stmt_rslt"] == "0"
    assert matched["gateway"]["fixmedins_setl_cnt"] == 2
    stay_info = stay["setlinfo"]
    inpatient = await his.ok("3201", _totals([stay_info], clr_type="21"))
    assert inpatient["stmtinfo"]["stmt_rslt"] == "0"
    # The same figures as /v1/reconciliation/totals.
    till = Till(signer)
    v1 = await till.post("/v1/reconciliation/totals", {
        "clr_type": "11", "stmt_date": TODAY, "fixmedins_setl_cnt": 2,
        "medfee_sumamt": round((first["medfee_sumamt"] + second["medfee_sumamt"]) * 100),
        "fund_pay_sumamt": round((first["fund_pay_sumamt"] + second["fund_pay_sumamt"]) * 100),
        "acct_pay": round((first["acct_pay"] + second["acct_pay"]) * 100),
        "psn_cash_pay": round((first["psn_cash_pay"] + second["psn_cash_pay"]) * 100),
    })  # fmt: skip
    assert v1.status == 200, await v1.text()
    v1_body = await v1.json()
    assert v1_body["stmt_rslt"] == "0"
    assert v1_body["gateway"]["count"] == matched["gateway"]["fixmedins_setl_cnt"]
    assert v1_body["gateway"]["medfee_sumamt"] == round(matched["gateway"]["medfee_sumamt"] * 100)
    # Off by a fen: a mismatch, answered with the gateway's figures.
    off = await his.ok("3201", _totals([first, second], acct_pay="0.01", cash_payamt=None))
    assert off["stmtinfo"]["stmt_rslt"] == "1"
    # 3202 by a file uploaded with 9101: plain text with a header, then zipped.
    text = ("setl_id\tmdtrt_id\tpsn_no\tmedfee_sumamt\tfund_pay_sumamt\tacct_pay\trefd_setl_flag\n"
            + _row(first) + "\n" + _row(second) + "\n").encode()  # fmt: skip
    header = {k: v for k, v in _totals([first, second])["data"].items() if k != "insutype"}
    for content in (text, _zip(text)):
        number = await _upload(his, content)
        same = await his.ok("3202", {"data": {**header, "file_qury_no": number}})
        assert same["stmtinfo"]["stmt_rslt"] == "0"
        assert same["differences"] == []
        assert "fileinfo" not in same
    # Inline, beside the data node, with a cancelled settlement flagged (left out).
    rows = [{"setl_id": i["setl_id"], "medfee_sumamt": i["medfee_sumamt"],
             "fund_pay_sumamt": i["fund_pay_sumamt"], "acct_pay": i["acct_pay"]}
            for i in (first, second)]  # fmt: skip
    rows.append({**rows[0], "setl_id": "S-cancelled", "refd_setl_flag": "1"})
    inline = await his.ok("3202", {"data": {**header}, "detail": rows})
    assert inline["stmtinfo"]["stmt_rslt"] == "0"
    # One settlement missing from the file: a difference, listed and as a file for 9102.
    short = await _upload(his, (_row(first) + "\n").encode())
    header_one = {k: v for k, v in _totals([first])["data"].items() if k != "insutype"}
    differ = await his.ok("3202", {"data": {**header_one, "file_qury_no": short}})
    assert differ["stmtinfo"]["stmt_rslt"] == "1"
    assert differ["stmtinfo"]["difference_count"] == 1
    assert differ["differences"][0]["setl_id"] == second["setl_id"]
    assert differ["differences"][0]["reason"] == "missing_at_institution"
    fileinfo = differ["fileinfo"]
    wanted = {"file_qury_no": fileinfo["file_qury_no"], "filename": fileinfo["filename"]}
    download = await his.ok("9102", {"fsDownloadIn": wanted})
    lines = base64.b64decode(download["file_data"]).decode().splitlines()
    assert lines[0].startswith("setl_id\treason")
    assert lines[1].split("\t")[:2] == [second["setl_id"], "missing_at_institution"]
    # The same detail on /v1 gives the same difference.
    v1_details = await till.post("/v1/reconciliation/details", {
        "clr_type": "11", "stmt_date": TODAY,
        "details": [{"setl_id": first["setl_id"],
                     **{n: round(first[n] * 100) for n in ("medfee_sumamt", "fund_pay_sumamt",
                                                           "acct_pay", "psn_cash_pay")}}],
    })  # fmt: skip
    assert v1_details.status == 200, await v1_details.text()
    v1_differences = (await v1_details.json())["differences"]
    assert [(d["setl_id"], d["reason"]) for d in v1_differences] == [
        (second["setl_id"], "missing_at_institution")
    ]
    # Another institution cannot download it.
    pharmacy = His(his.client, his.clock, fixmedins_code=PHARMACY)
    await pharmacy.sign_in()
    theirs = await pharmacy.call(
        "9102", {"fsDownloadIn": {"file_qury_no": fileinfo["file_qury_no"]}}
    )
    assert refused_code(theirs) == "FSI_FILE_NOT_FOUND"


BAD = "FSI_ENVELOPE_INVALID"
FILE = "FSI_FILE_INVALID"


def _header(**over: Any) -> dict[str, Any]:
    return {"data": {"clr_type": "11", "stmt_begndate": TODAY, **over}}


@pytest.mark.parametrize(
    ("infno", "body", "code"),
    [
        # missing fields
        ("3201", lambda i, f: {"data": {**_totals([i])["data"], "clr_type": None}}, BAD),
        ("3201", lambda i, f: {"data": {k: v for k, v in _totals([i])["data"].items()
                                        if k != "acct_pay"}}, BAD),
        ("3202", lambda i, f: _header(), BAD),
        ("9101", lambda i, f: {"fsUploadIn": {"in": "YQ=="}}, BAD),
        ("9101", lambda i, f: {"fsUploadIn": {"filename": "a.txt"}}, BAD),
        ("9102", lambda i, f: {"fsDownloadIn": {}}, BAD),
        # wrong types and forms
        ("3201", lambda i, f: _totals([i], clr_type="99"), BAD),
        ("3201", lambda i, f: _totals([i], insutype="390"), BAD),
        ("3201", lambda i, f: _totals([i], stmt_enddate="2027-01-16"), BAD),
        ("3201", lambda i, f: _totals([i], stmt_begndate="15/01/2027"), BAD),
        ("3201", lambda i, f: _totals([i], medfee_sumamt="lots"), BAD),
        ("3201", lambda i, f: _totals([i], fixmedins_setl_cnt="one"), BAD),
        ("3201", lambda i, f: _totals([i], psn_cash_pay="0.01"), "FSI_AMOUNT_MISMATCH"),
        ("3202", lambda i, f: _header(file_qury_no=f, clr_type="12"), BAD),
        ("3202", lambda i, f: _header(detail=[{"setl_id": "S1", "medfee_sumamt": 1}]), BAD),
        ("9101", lambda i, f: {"fsUploadIn": {"in": "not base64!", "filename": "a.txt"}}, FILE),
        ("9101", lambda i, f: {"fsUploadIn": {"in": 12, "filename": "a.txt"}}, BAD),
        ("9101", lambda i, f: {"fsUploadIn": {"in": [1, 300], "filename": "a.txt"}}, FILE),
        ("9101", lambda i, f: {"fsUploadIn": {"in": "YQ==", "filename": "../a.txt"}}, BAD),
        ("9101", lambda i, f: {"fsUploadIn": {"in": "", "filename": "a.txt"}}, FILE),
        # unknown ids
        ("3202", lambda i, f: _header(file_qury_no="F0"), "FSI_FILE_NOT_FOUND"),
        ("9102", lambda i, f: {"fsDownloadIn": {"file_qury_no": "F0"}}, "FSI_FILE_NOT_FOUND"),
        ("9102", lambda i, f: {"fsDownloadIn": {"file_qury_no": f, "filename": "b.txt"}},
         "FSI_FILE_NOT_FOUND"),
        # the file's rows do not add up to what the header says
        ("3202", lambda i, f: _header(file_qury_no=f, medfee_sumamt="0.01"), FILE),
        ("3202", lambda i, f: _header(file_qury_no=f, fixmedins_setl_cnt=2), FILE),
        ("3202", lambda i, f: _header(file_qury_no=f, cash_payamt=i["psn_cash_pay"] + 1), FILE),
        ("3201", lambda i, f: _totals([i], cash_payamt="0.01"), "FSI_AMOUNT_MISMATCH"),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_and_writes_nothing(
    his: His, world: Engine, infno: str, body: Any, code: str
) -> None:
    info = await _outpatient(his)
    file_qury_no = await _upload(his, (_row(info) + "\n").encode(), filename="a.txt")
    before = _written(world)
    answer = await his.call(infno, body(info, file_qury_no))
    assert answer["infcode"] == -1
    assert refused_code(answer) == code, answer["err_msg"]
    assert answer["output"] == {}
    assert _written(world) == before


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"S1\tM1\tP1\t10.00\t5.00\n", "7 tab-separated fields"),
        (b"S1\tM1\tP1\t10.00\t5.00\t1.00\t2\n", "refd_setl_flag"),
        (b"S1\tM1\tP1\t10.001\t5.00\t1.00\t0\n", "line 1"),
        (b"S1\tM1\tP1\t10.00\t9.00\t2.00\t0\n", "exceed"),
        (b"\xff\xfe\x00", "UTF-8"),
        (b"PK\x03\x04 not a zip", "ZIP"),
        (_zip(b"\n" * (5 * 1024 * 1024)), "unzipped"),
    ],
)
async def test_a_bad_detail_file_is_refused_and_writes_nothing(
    his: His, world: Engine, content: bytes, detail: str
) -> None:
    file_qury_no = await _upload(his, content)
    before = _written(world)
    answer = await his.call("3202", _header(file_qury_no=file_qury_no))
    assert refused_code(answer) == FILE
    assert detail in answer["err_msg"]
    assert _written(world) == before


async def test_upload_bounds(his: His, world: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "FILE_MAX_BYTES", 16)
    before = _written(world)
    big = base64.b64encode(b"x" * 17).decode()
    answer = await his.call("9101", {"fsUploadIn": {"in": big, "filename": "a.txt"}})
    assert refused_code(answer) == FILE
    monkeypatch.setattr(files, "FILES_KEPT", 1)
    await _upload(his, b"one")
    answer = await his.call("9101", {"fsUploadIn": {"in": "YQ==", "filename": "b.txt"}})
    assert refused_code(answer) == FILE
    assert "keeps 1 files" in answer["err_msg"]
    assert _written(world)["fsi_files"] == before["fsi_files"] + 1


async def test_a_resent_upload_and_detail_answer_the_same(his: His, world: Engine) -> None:
    """A 9101 or 3202 resent under its msgid (its answer lost) keeps one file, one run."""
    info = await _outpatient(his)
    upload = {"fsUploadIn": {"in": base64.b64encode(_row(info).encode()).decode(),
                             "filename": "3202.txt"}}  # fmt: skip
    msgid = his.msgid()
    first = await his.post_raw(his.envelope("9101", upload, msgid=msgid))
    before = _written(world)
    again = await his.post_raw(his.envelope("9101", upload, msgid=msgid))
    assert await again.text() == await first.text()
    assert _written(world) == before
    number = (await first.json())["output"]["file_qury_no"]
    detail = _header(file_qury_no=number, clr_type="21")  # another clearing type: differences
    msgid = his.msgid()
    first = await his.post_raw(his.envelope("3202", detail, msgid=msgid))
    assert (await first.json())["output"]["stmtinfo"]["stmt_rslt"] == "1"
    before = _written(world)
    again = await his.post_raw(his.envelope("3202", detail, msgid=msgid))
    assert await again.text() == await first.text()
    assert _written(world) == before
