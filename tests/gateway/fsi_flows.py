"""Shared by the national-door transaction tests (inpatient, queries, reconciliation,
filings): the signed-in HIS at the hospital with holder 0's card read at its device, and the
flows several of them start from. (A uniquely named module: every test directory has its own
conftest.)"""

from __future__ import annotations

from typing import Any

from card_auth_testkit import NEW_ACTIVE
from fsi_testkit import His, card_of
from settlement_api_testkit import TODAY

CARD = NEW_ACTIVE  # holder 0's active third-generation card
ADMITTED_ON = "2027-01-10"
STAY_LINES = [
    {"med_list_codg": "DEMO-A-004", "cnt": 5, "pric": "80.00", "feedetl_sn": "1"},
    {"med_list_codg": "DEMO-B-003", "cnt": 1, "pric": 30000, "feedetl_sn": "2"},
    {"med_list_codg": "DEMO-C-002", "cnt": "2", "pric": "500.00", "feedetl_sn": "3"},
]
STAY_TOTAL = 400 + 30000 + 1000  # yuan


def card_input(**extra: Any) -> dict[str, Any]:
    card_sn, card_no = card_of(CARD)
    return {"mdtrt_cert_type": "03", "mdtrt_cert_no": card_no, "card_sn": card_sn, **extra}


async def admitted(his: His) -> str:
    """2401 on ADMITTED_ON and 2301 of STAY_LINES: the stay's mdtrt_id."""
    result = await his.ok(
        "2401", {"mdtrtinfo": {**card_input(), "begntime": f"{ADMITTED_ON} 08:30:00",
                               "ipt_no": "ZY0001", "med_type": "21"}, "diseinfo": []},
    )  # fmt: skip
    mdtrt_id: str = result["result"]["mdtrt_id"]
    await his.ok("2301", {"feedetail": [{**line, "mdtrt_id": mdtrt_id} for line in STAY_LINES]})
    return mdtrt_id


def settle_input(mdtrt_id: str, **extra: Any) -> dict[str, Any]:
    return {"data": {**card_input(), "mdtrt_id": mdtrt_id, "medfee_sumamt": STAY_TOTAL,
                     "med_type": "21", "mid_setl_flag": "0", **extra}}  # fmt: skip


async def settled_stay(his: His) -> tuple[str, dict[str, Any]]:
    """A stay admitted, its lines uploaded, discharged today (2402) and settled (2304)."""
    mdtrt_id = await admitted(his)
    await his.ok("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "endtime": f"{TODAY} 10:00:00"}})
    output = await his.ok("2304", settle_input(mdtrt_id))
    return mdtrt_id, output
