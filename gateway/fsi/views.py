"""How the use cases' outcomes read on the national door: ``setlinfo`` and ``setldetail``
with the national field names, amounts in yuan (JSON numbers), times ``yyyy-MM-dd HH:mm:ss``
Beijing time. The same figures as /v1's (gateway.settlement_api.views), never recomputed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from dbkit import BEIJING
from gateway.fsi.envelope import yuan
from settlement.counter.holders import INSUTYPE_EMPLOYEE
from settlement.counter.outcomes import Estimate, Settled
from settlement.crossprov import wire
from settlement.result import FUND_POOLING, FUND_SUPPLEMENTARY, SettlementResult

__all__ = [
    "CLR_TYPES",
    "MED_TYPES",
    "estimate_setlinfo",
    "remote_setlinfo",
    "setldetail",
    "settled_setlinfo",
    "time_text",
]

# 医疗类别 med_type -> the engine's visit type (the ones this gateway settles).
MED_TYPES: Final = {"11": "outpatient", "13": "emergency", "14": "outpatient", "41": "pharmacy"}
# 清算类别 clr_type by visit type (3201): 11 outpatient, 21 inpatient, 41 pharmacy.
CLR_TYPES: Final = {"outpatient": "11", "emergency": "11", "inpatient": "21", "pharmacy": "41"}
_MED_TYPE_OF: Final = {"outpatient": "11", "emergency": "13", "inpatient": "21", "pharmacy": "41"}


def time_text(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def setldetail(hifp_pay: int, hifob_pay: int) -> list[dict[str, Any]]:
    return [
        {"fund_pay_type": code, "fund_payamt": yuan(amount), "fund_pay_type_name": name}
        for (code, name), amount in ((FUND_POOLING, hifp_pay), (FUND_SUPPLEMENTARY, hifob_pay))
        if amount > 0
    ]


def _amounts(
    *,
    medfee_sumamt: int,
    fulamt_ownpay_amt: int,
    preselfpay_amt: int,
    inscp_scp_amt: int,
    act_pay_dedc: int,
    hifp_pay: int,
    pool_prop_selfpay: int,
    hifob_pay: int,
    fund_pay_sumamt: int,
    acct_pay: int,
    psn_cash_pay: int,
    balc: int,
    cash_name: str,
) -> dict[str, Any]:
    return {
        "medfee_sumamt": yuan(medfee_sumamt),
        "fulamt_ownpay_amt": yuan(fulamt_ownpay_amt),
        "overlmt_selfpay": yuan(0),
        "preselfpay_amt": yuan(preselfpay_amt),
        "inscp_scp_amt": yuan(inscp_scp_amt),
        "act_pay_dedc": yuan(act_pay_dedc),
        "hifp_pay": yuan(hifp_pay),
        "pool_prop_selfpay": yuan(pool_prop_selfpay),
        "cvlserv_pay": yuan(0),
        "hifes_pay": yuan(0),
        "hifmi_pay": yuan(0),
        "hifob_pay": yuan(hifob_pay),
        "maf_pay": yuan(0),
        "oth_pay": yuan(0),
        "fund_pay_sumamt": yuan(fund_pay_sumamt),
        "psn_part_amt": yuan(acct_pay + psn_cash_pay),
        "acct_pay": yuan(acct_pay),
        cash_name: yuan(psn_cash_pay),
        "acct_mulaid_pay": yuan(0),
        "balc": yuan(balc),
    }


def settled_setlinfo(settled: Settled, *, cancel: bool = False) -> dict[str, Any]:
    """A local settlement's ``setlinfo``. A cancel's answer (2103/2208/2305) spells the cash
    field ``pdn_cash_pay``, as the spec does and clients read it (DOMAIN §4)."""
    row = settled.record
    return {
        "setl_id": row.setl_id,
        "mdtrt_id": row.mdtrt_id,
        "psn_no": settled.psn_no,
        "insutype": row.insutype,
        "med_type": _MED_TYPE_OF.get(row.visit_type, "11"),
        "clr_type": CLR_TYPES.get(row.visit_type, "11"),
        "clr_optins": "310000",
        "setl_time": time_text(row.setl_time),
        "refd_setl_flag": "1" if row.cancelled_at is not None else "0",
        **_amounts(
            medfee_sumamt=row.medfee_sumamt,
            fulamt_ownpay_amt=row.fulamt_ownpay_amt,
            preselfpay_amt=row.preselfpay_amt,
            inscp_scp_amt=row.inscp_scp_amt,
            act_pay_dedc=row.act_pay_dedc,
            hifp_pay=row.hifp_pay,
            pool_prop_selfpay=row.pool_prop_selfpay,
            hifob_pay=row.hifob_pay,
            fund_pay_sumamt=row.fund_pay_sumamt,
            acct_pay=row.acct_pay,
            psn_cash_pay=row.psn_cash_pay,
            balc=row.balc,
            cash_name="pdn_cash_pay" if cancel else "psn_cash_pay",
        ),
    }


def estimate_setlinfo(estimate: Estimate, *, mdtrt_id: str | None) -> dict[str, Any]:
    """A pre-settle's ``setlinfo`` (no setl_id: nothing was settled)."""
    result: SettlementResult = estimate.result
    return {
        "mdtrt_id": mdtrt_id,
        "psn_no": estimate.psn_no,
        "insutype": INSUTYPE_EMPLOYEE,
        **_amounts(
            medfee_sumamt=result.medfee_sumamt,
            fulamt_ownpay_amt=result.fulamt_ownpay_amt,
            preselfpay_amt=result.preselfpay_amt,
            inscp_scp_amt=result.inscp_scp_amt,
            act_pay_dedc=result.act_pay_dedc,
            hifp_pay=result.hifp_pay,
            pool_prop_selfpay=result.pool_prop_selfpay,
            hifob_pay=result.hifob_pay,
            fund_pay_sumamt=result.fund_pay_sumamt,
            acct_pay=result.acct_pay,
            psn_cash_pay=result.psn_cash_pay,
            balc=result.balc,
            cash_name="psn_cash_pay",
        ),
    }


def remote_setlinfo(setlinfo: Mapping[str, Any], *, cancel: bool = False) -> dict[str, Any]:
    """The insured place's ``setlinfo`` as the hub answered it (never recomputed): its
    amounts re-spelled as numbers, its other fields as they came."""
    out: dict[str, Any] = {}
    for name, value in setlinfo.items():
        if isinstance(value, str) and name in _MONEY_FIELDS:
            out[name] = yuan(wire.yuan_to_fen(value, field=name))
        else:
            out[name] = value
    if cancel and "psn_cash_pay" in out:
        out["pdn_cash_pay"] = out.pop("psn_cash_pay")
    return out


_MONEY_FIELDS: Final = frozenset(
    {
        "medfee_sumamt",
        "fulamt_ownpay_amt",
        "overlmt_selfpay",
        "preselfpay_amt",
        "inscp_scp_amt",
        "act_pay_dedc",
        "hifp_pay",
        "pool_prop_selfpay",
        "cvlserv_pay",
        "hifes_pay",
        "hifmi_pay",
        "hifob_pay",
        "maf_pay",
        "oth_pay",
        "fund_pay_sumamt",
        "psn_part_amt",
        "acct_pay",
        "psn_cash_pay",
        "balc",
    }
)
