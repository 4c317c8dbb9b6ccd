"""DEMO ONLY: insured persons, insurance and personal accounts for the demo cardholders.

A :class:`gateway.demo.DemoPart` after the cards: every cardholder in issuance's registry
becomes an insured person (``insured_persons.holder_id`` = the cardholder id, which is what a
card session names), insured in Shanghai (310000) under employee insurance (310): retired if
at the reference date a man is 60 or older, a woman 55 or older (Shanghai's usual ages
[weak]), else in service. Balances follow from the seed (HMAC-free SHA-256 of seed and holder
id), so every run, test and tool sees the same money: current-year account 0–3,000 yuan,
past-years account 0–20,000 yuan.

Speed: three executemany inserts (persons, then insurance and accounts keyed by the ids the
database gave the persons); 20,000 holders load in well under a second on SQLite.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Final

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from issuance.store import Cardholder
from settlement.engine import age_on
from settlement.store import Insurance, InsuredPersonRow, PersonalAccount

__all__ = ["DemoSettlementPersons", "demo_balances_fen", "demo_psn_no", "demo_retired"]

INSURED_PLACE: Final = "310000"
INSUTYPE: Final = "310"
# National person types (人员类别) for in-service employees and retirees [weak: our mapping].
PSN_TYPE_EMPLOYEE: Final = "1101"
PSN_TYPE_RETIREE: Final = "1102"
INSURED_FROM: Final = dt.date(2019, 1, 1)
RETIREMENT_AGE: Final = {"1": 60, "2": 55}  # GB/T 2261.1 gender code → age [weak]
MAX_CURRENT_YEAR_FEN: Final = 300_000
MAX_PAST_YEARS_FEN: Final = 2_000_000


def demo_psn_no(holder_id: int) -> str:
    """人员编号 of a demo holder (made up: 31 + 13 digits)."""
    return f"31{holder_id:013d}"


def demo_retired(birth_date: dt.date, gender: str, on: dt.date) -> bool:
    return age_on(birth_date, on) >= RETIREMENT_AGE.get(gender, 60)


def demo_balances_fen(seed: str, holder_id: int) -> tuple[int, int]:
    """(current-year, past-years) balance of a demo holder's personal account, in fen."""
    digest = hashlib.sha256(f"{seed}\nsettlement-account\n{holder_id}".encode()).digest()
    current = int.from_bytes(digest[:8], "big") % (MAX_CURRENT_YEAR_FEN + 1)
    past = int.from_bytes(digest[8:16], "big") % (MAX_PAST_YEARS_FEN + 1)
    return current, past


class DemoSettlementPersons:
    """DEMO ONLY part: loaded when no person is linked to a cardholder yet."""

    name: Final = "settlement_persons"

    def __init__(self, *, reference_date: dt.date | None = None) -> None:
        # The day retirement is judged and the account year. Default: today (start-up).
        self.reference_date = reference_date

    def is_loaded(self, session: Session) -> bool:
        linked = session.execute(
            select(func.count())
            .select_from(InsuredPersonRow)
            .where(InsuredPersonRow.holder_id.is_not(None))
        ).scalar_one()
        return (
            linked > 0
            or session.execute(select(func.count()).select_from(Cardholder)).scalar_one() == 0
        )

    def load(self, session: Session, seed: str) -> int:
        on = self.reference_date or dt.date.today()
        holders = session.execute(
            select(
                Cardholder.id,
                Cardholder.citizen_id,
                Cardholder.name,
                Cardholder.birth_date,
                Cardholder.gender,
            ).order_by(Cardholder.id)
        ).all()
        retired = {h.id: demo_retired(h.birth_date, h.gender, on) for h in holders}
        session.execute(
            insert(InsuredPersonRow.__table__),  # type: ignore[arg-type]
            [
                {
                    "psn_no": demo_psn_no(h.id),
                    "citizen_id": h.citizen_id,
                    "name": h.name[:30],
                    "birth_date": h.birth_date,
                    "retired": retired[h.id],
                    "holder_id": h.id,
                }
                for h in holders
            ],
        )
        linked = select(InsuredPersonRow.holder_id, InsuredPersonRow.id).where(
            InsuredPersonRow.holder_id.is_not(None)
        )
        person_ids: dict[int, int] = {row.holder_id: row.id for row in session.execute(linked)}
        insurances: list[dict[str, Any]] = []
        accounts: list[dict[str, Any]] = []
        for h in holders:
            person_id = person_ids[h.id]
            insurances.append(
                {
                    "person_id": person_id,
                    "insutype": INSUTYPE,
                    "insuplc_admdvs": INSURED_PLACE,
                    "psn_type": PSN_TYPE_RETIREE if retired[h.id] else PSN_TYPE_EMPLOYEE,
                    "valid_from": INSURED_FROM,
                    "valid_to": None,
                }
            )
            current_fen, past_fen = demo_balances_fen(seed, h.id)
            accounts.append(
                {
                    "person_id": person_id,
                    "account_year": on.year,
                    "current_year_fen": current_fen,
                    "past_years_fen": past_fen,
                }
            )
        session.execute(insert(Insurance.__table__), insurances)  # type: ignore[arg-type]
        session.execute(insert(PersonalAccount.__table__), accounts)  # type: ignore[arg-type]
        return len(holders) * 3
