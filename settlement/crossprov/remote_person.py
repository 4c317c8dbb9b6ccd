"""Person information (1101) of a person insured elsewhere: asked of the insured place.

Read only: nothing is written, so nothing has to be reversed. The same local checks run first
(card usable, a person linked and insured today), then the hub is asked, then the filings that
cover today at this institution are added.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.orm import Session

from dbkit import beijing_date
from settlement.counter.holders import insured_place, read_holder
from settlement.counter.ports import AtCounter
from settlement.crossprov import wire
from settlement.crossprov.filings import filings_of
from settlement.crossprov.ports import Hub, Units, require_client, unavailable
from settlement.crossprov.routing import InsuredPlace
from settlement.errors import HubRefused

__all__ = ["RemoteInsurance", "RemotePerson", "remote_person"]


@dataclass(frozen=True, slots=True)
class RemoteInsurance:
    insutype: str
    insuplc_admdvs: str
    psn_type: str
    balc_fen: int  # the insured place's account, not split into years on the wire


@dataclass(frozen=True, slots=True)
class RemotePerson:
    place: InsuredPlace
    age_years: int
    retired: bool
    insurances: Sequence[RemoteInsurance]
    filing_types: Sequence[str]


def _place_unit(session: Session, *, at: AtCounter, today: dt.date) -> InsuredPlace:
    at.card_check(session, today)
    return insured_place(read_holder(session, at.holder_id, today.year), today)


def _filings_today_unit(
    session: Session, *, psn_no: str, fixmedins_code: str, today: dt.date
) -> list[str]:
    return sorted(
        {
            f.filing_type.value
            for f in filings_of(session, psn_no)
            if f.covers(today, fixmedins_code)
        }
    )


async def remote_person(
    units: Units,
    hub: Hub,
    *,
    at: AtCounter,
    now: dt.datetime,
) -> RemotePerson:
    """Person information from the insured place (1101)."""
    today = beijing_date(now)
    fixmedins_code = at.counter.fixmedins_code
    place = await units.read(partial(_place_unit, at=at, today=today))
    client = require_client(hub)
    outcome = await client.call(
        infno=wire.INFNO_PERSON_INFO,
        msgid=client.msgids.next(fixmedins_code, odd=True),
        insuplc_admdvs=place.insuplc_admdvs,
        fixmedins_code=fixmedins_code,
        payload={"psn_no": place.psn_no},
    )
    if outcome.outcome == "refused":
        assert outcome.answer is not None
        raise HubRefused(f"{outcome.answer.err_code}: {outcome.answer.err_msg}"[:300])
    if outcome.outcome != "ok" or outcome.answer is None:
        raise unavailable(hub, outcome.error)
    filing_types = await units.read(
        partial(
            _filings_today_unit, psn_no=place.psn_no, fixmedins_code=fixmedins_code, today=today
        )
    )
    output = outcome.answer.output
    try:
        age = int(output["baseinfo"]["age"])
        insurances = [
            RemoteInsurance(
                insutype=str(item["insutype"]),
                insuplc_admdvs=str(item["insuplc_admdvs"]),
                psn_type=str(item["psn_type"]),
                balc_fen=wire.yuan_to_fen(item["balc"], field="balc"),
            )
            for item in output["insuinfo"]
        ]
    except (KeyError, TypeError, ValueError):
        raise unavailable(hub, "unreadable 1101 answer") from None
    return RemotePerson(
        place=place,
        age_years=age,
        retired=any(item.psn_type.startswith("2") for item in insurances),
        insurances=insurances,
        filing_types=filing_types,
    )
