"""The cross-province tests' insured person: demo holder 0 (cardholder id 1), moved to Jiangsu
(320000) and filed there as a resettled retiree, so that the hub settles for them."""

from __future__ import annotations

import datetime as dt

from gateway_testkit import HOSPITAL
from settlement_api_testkit import load_insured_world
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from settlement.crossprov.store import FilingRow, FilingType
from settlement.store import Insurance, InsuredPersonRow

PSN_NO = "320000000000001"
INSURED_PLACE = "320000"


def load_jiangsu_world(engine: Engine) -> Engine:
    """The insured demo world, with holder 0 insured in Jiangsu under a standing filing."""
    load_insured_world(engine)
    with Session(engine) as session, session.begin():
        person_id = session.scalar(
            select(InsuredPersonRow.id).where(InsuredPersonRow.holder_id == 1)
        )
        session.execute(
            update(InsuredPersonRow).where(InsuredPersonRow.id == person_id).values(psn_no=PSN_NO)
        )
        session.execute(
            update(Insurance)
            .where(Insurance.person_id == person_id)
            .values(insuplc_admdvs=INSURED_PLACE)
        )
        session.add(
            FilingRow(
                filing_id="F1",
                psn_no=PSN_NO,
                insuplc_admdvs=INSURED_PLACE,
                filing_type=FilingType.RESETTLED_RETIREE,
                valid_from=dt.date(2020, 1, 1),
                valid_to=None,
                target_fixmedins_code=None,
                registered_by=HOSPITAL,
                created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            )
        )
    return engine
