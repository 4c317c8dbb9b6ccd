"""How a remote settlement reads in the API: the local ``SettlementOut`` fields, in int fen
parsed from the hub's ``setlinfo`` (never recomputed), plus the hub's own fields."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from gateway.crossprov.models import RemoteEligibilityOut, RemoteSettlementOut
from gateway.settlement_api.models import InsuranceOut
from gateway.settlement_api.views import fund_rows
from settlement.crossprov import wire
from settlement.crossprov.remote_person import RemotePerson
from settlement.crossprov.remote_settle import RemoteSettled
from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus
from settlement.keyed import Answer

__all__ = [
    "remote_cancel_answer",
    "remote_person_view",
    "remote_settled_answer",
    "remote_view",
    "settlement_view",
]


def _fen(setlinfo: Mapping[str, Any], name: str) -> int:
    value = setlinfo.get(name)
    return wire.yuan_to_fen(value, field=name) if isinstance(value, str) else 0


def settlement_view(
    row: RemoteSettlementRow, setlinfo: Mapping[str, Any], route: str
) -> RemoteSettlementOut:
    assert row.setl_id is not None
    assert row.setl_time is not None
    acct_pay = _fen(setlinfo, "acct_pay")
    hifp_pay, hifob_pay = _fen(setlinfo, "hifp_pay"), _fen(setlinfo, "hifob_pay")
    return RemoteSettlementOut(
        setl_id=row.setl_id,
        mdtrt_id=row.mdtrt_id,
        psn_no=row.psn_no,
        fixmedins_code=row.fixmedins_code,
        status="cancelled" if row.status is RemoteStatus.CANCELLED else "settled",
        visit_type=row.visit_type,
        visit_date=row.visit_date,
        setl_time=row.setl_time.astimezone(dt.UTC),
        policy_id=f"hub:{row.insuplc_admdvs}",
        medfee_sumamt=_fen(setlinfo, "medfee_sumamt"),
        fulamt_ownpay_amt=_fen(setlinfo, "fulamt_ownpay_amt"),
        preselfpay_amt=_fen(setlinfo, "preselfpay_amt"),
        inscp_scp_amt=_fen(setlinfo, "inscp_scp_amt"),
        act_pay_dedc=_fen(setlinfo, "act_pay_dedc"),
        hifp_pay=hifp_pay,
        pool_prop_selfpay=_fen(setlinfo, "pool_prop_selfpay"),
        hifob_pay=hifob_pay,
        fund_pay_sumamt=_fen(setlinfo, "fund_pay_sumamt"),
        psn_part_amt=_fen(setlinfo, "psn_part_amt"),
        acct_pay=acct_pay,
        # The insured place's account is not split into years on the wire.
        acct_pay_current_year_fen=acct_pay,
        acct_pay_past_years_fen=0,
        psn_cash_pay=_fen(setlinfo, "psn_cash_pay"),
        balc=_fen(setlinfo, "balc"),
        setldetail=fund_rows(hifp_pay, hifob_pay),
        cancelled_at=None if row.cancelled_at is None else row.cancelled_at.astimezone(dt.UTC),
        cancel_reason=row.cancel_reason,
        explanation=None,
        route=route,  # type: ignore[arg-type]
        msgid=row.msgid,
        insuplc_admdvs=row.insuplc_admdvs,
        filing_type=row.filing_type,
        setlinfo=dict(setlinfo),
    )


def remote_view(row: RemoteSettlementRow) -> RemoteSettlementOut:
    assert row.setlinfo_json is not None
    return settlement_view(row, json.loads(row.setlinfo_json), row.route)


def remote_settled_answer(settled: RemoteSettled) -> Answer:
    """A settle or discharge through the hub, as the ``/v1`` door stores and answers it."""
    return Answer(
        201, settlement_view(settled.row, settled.setlinfo, settled.route).model_dump_json()
    )


def remote_cancel_answer(row: RemoteSettlementRow) -> Answer:
    """A cancel through the hub, as the ``/v1`` door stores and answers it."""
    return Answer(200, remote_view(row).model_dump_json())


def remote_person_view(person: RemotePerson) -> RemoteEligibilityOut:
    return RemoteEligibilityOut(
        psn_no=person.place.psn_no,
        age_years=person.age_years,
        retired=person.retired,
        benefit_category="insured_place",
        insuinfo=[
            InsuranceOut(
                insutype=item.insutype,
                insuplc_admdvs=item.insuplc_admdvs,
                psn_type=item.psn_type,
                balc=item.balc_fen,
                current_year_balance_fen=item.balc_fen,
                past_years_balance_fen=0,
            )
            for item in person.insurances
        ],
        self_pay_band_consumed_fen=0,
        deductible_consumed_fen=0,
        pooling_fund_paid_fen=0,
        route=person.place.route.value,  # type: ignore[arg-type]
        filing_types=list(person.filing_types),
    )
