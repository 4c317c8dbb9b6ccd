"""DEMO ONLY: the demo cardholders as insured persons — linked by holder id, Shanghai-insured,
retirees by age, balances from the seed, loaded fast and once."""

from __future__ import annotations

import datetime as dt

from gateway_testkit import counted_statements
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.card_auth.demo_cards import DemoCards
from gateway.demo import DEMO_PARTS, InstitutionsAndTerminals, load_demo_world
from gateway.settlement_api.demo import (
    DemoSettlementPersons,
    demo_balances_fen,
    demo_psn_no,
    demo_retired,
)
from issuance.store import Cardholder
from settlement.store import Insurance, InsuredPersonRow, PersonalAccount

SEED = "test-seed"
ON = dt.date(2027, 1, 15)


def test_part_is_registered_after_the_cards():
    names = [part.name for part in DEMO_PARTS]
    assert names.index("settlement_persons") > names.index("cardholders_and_cards")


def test_balances_are_deterministic_and_bounded():
    assert demo_balances_fen(SEED, 7) == demo_balances_fen(SEED, 7)
    assert demo_balances_fen(SEED, 7) != demo_balances_fen("other-seed", 7)
    for holder_id in range(1, 200):
        current, past = demo_balances_fen(SEED, holder_id)
        assert 0 <= current <= 300_000
        assert 0 <= past <= 2_000_000


def test_retirement_by_age_and_gender():
    assert demo_retired(dt.date(1966, 1, 15), "1", ON)  # a man of 61
    assert not demo_retired(dt.date(1967, 1, 16), "1", ON)  # a man of 59
    assert demo_retired(dt.date(1971, 1, 15), "2", ON)  # a woman of 56
    assert not demo_retired(dt.date(1990, 1, 1), "2", ON)


def test_loads_every_holder_batched_and_once(migrated_engine: Engine):
    parts = (InstitutionsAndTerminals(), DemoCards(), DemoSettlementPersons(reference_date=ON))
    load_demo_world(migrated_engine, SEED, parts[:2])
    # Its speed is the demo bench's (python -m loadtest.bench demo); here, that 60,000 rows go
    # in a handful of executemany batches (12 statements today), never one per row.
    with counted_statements(migrated_engine) as statements:
        inserted = load_demo_world(migrated_engine, SEED, parts)
    assert len(statements) <= 30, len(statements)
    with Session(migrated_engine) as session:
        holders = session.execute(select(func.count()).select_from(Cardholder)).scalar_one()
        assert inserted["settlement_persons"] == 3 * holders
        person = session.scalar(select(InsuredPersonRow).where(InsuredPersonRow.holder_id == 5))
        assert person is not None
        assert person.psn_no == demo_psn_no(5)
        holder = session.get(Cardholder, 5)
        assert holder is not None
        assert person.citizen_id == holder.citizen_id
        assert person.retired == demo_retired(holder.birth_date, holder.gender, ON)
        account = session.get(PersonalAccount, person.id)
        assert account is not None
        assert (account.current_year_fen, account.past_years_fen) == demo_balances_fen(SEED, 5)
        assert account.account_year == 2027
        places = set(session.scalars(select(Insurance.insuplc_admdvs)))
        assert places == {"310000"}
        retirees = session.execute(
            select(func.count()).select_from(InsuredPersonRow).where(InsuredPersonRow.retired)
        ).scalar_one()
        assert 0 < retirees < holders
    assert load_demo_world(migrated_engine, SEED, parts)["settlement_persons"] == 0
