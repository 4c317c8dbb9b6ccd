"""The registry's decision on whether a card may authenticate, for every state."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from issuance import errors
from issuance.registry import CardRecord, CardRegistry, card_usability
from issuance.store import Card, Cardholder, CardState, metadata

TODAY = dt.date(2026, 11, 27)
SN = "310000D156000005" + "0000000000000001"


def _record(state: CardState, generation: int = 3, expires_on: dt.date | None = None) -> CardRecord:
    return CardRecord(
        card_sn=SN,
        generation=generation,
        state=state,
        holder_id=1,
        expires_on=expires_on or dt.date(2030, 1, 1),
        cert_sm3=None,
        superseded_by=None,
    )


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (CardState.LOST, errors.CardLost),
        (CardState.SUPERSEDED, errors.CardSuperseded),
        (CardState.REVOKED, errors.CardRevoked),
        (CardState.EXPIRED, errors.CardExpired),
        (CardState.PRODUCED, errors.CardNotActivated),
        (CardState.MAILED, errors.CardNotActivated),
        (CardState.DELIVERED, errors.CardNotActivated),
        (CardState.DELIVERY_FAILED, errors.CardNotActivated),
        (CardState.AT_BACKUP_CENTRE, errors.CardNotActivated),
        (CardState.COLLECTED, errors.CardNotActivated),
    ],
)
def test_unusable_states(state: CardState, error: type[errors.CardNotUsable]) -> None:
    with pytest.raises(error) as info:
        card_usability(_record(state), card_sn=SN, today=TODAY, legacy_accepted_until=None)
    assert info.value.code == error.code
    assert info.value.message  # a clerk-facing sentence


def test_every_state_is_decided() -> None:
    for state in CardState:
        try:
            card_usability(_record(state), card_sn=SN, today=TODAY, legacy_accepted_until=None)
        except errors.CardNotUsable:
            continue
        assert state is CardState.ACTIVE


def test_active_card_past_its_date_is_expired() -> None:
    with pytest.raises(errors.CardExpired):
        card_usability(
            _record(CardState.ACTIVE, expires_on=TODAY - dt.timedelta(days=1)),
            card_sn=SN,
            today=TODAY,
            legacy_accepted_until=None,
        )


def test_unknown_card() -> None:
    with pytest.raises(errors.CardUnknown):
        card_usability(None, card_sn=SN, today=TODAY, legacy_accepted_until=None)


def test_legacy_cards_follow_the_parallel_use_period() -> None:
    legacy = _record(CardState.ACTIVE, generation=2)
    assert card_usability(legacy, card_sn=SN, today=TODAY, legacy_accepted_until=TODAY) == legacy
    with pytest.raises(errors.LegacyPeriodOver):
        card_usability(
            legacy, card_sn=SN, today=TODAY, legacy_accepted_until=TODAY - dt.timedelta(days=1)
        )
    third = _record(CardState.ACTIVE)
    assert card_usability(third, card_sn=SN, today=TODAY, legacy_accepted_until=dt.date(2020, 1, 1))


def test_registry_reads_rows() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)  # unit test of the query; the real schema comes from Alembic
    with Session(engine) as session:
        session.add(
            Cardholder(
                id=1,
                citizen_id="310101199001011234",
                name="张三",
                birth_date=dt.date(1990, 1, 1),
                gender="1",
                area_code="310101",
            )
        )
        session.add(
            Card(
                card_sn=SN,
                card_no="A12345678",
                holder_id=1,
                generation=3,
                state=CardState.LOST,
                issued_on=dt.date(2019, 1, 1),
                expires_on=dt.date(2029, 1, 1),
                cert_sm3=None,
                superseded_by=None,
                state_changed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            )
        )
        session.commit()
        registry = CardRegistry(session)
        assert registry.get("0" * 32) is None
        record = registry.get(SN)
        assert record is not None
        assert record.state is CardState.LOST
        with pytest.raises(errors.CardLost):
            registry.require_usable(SN, today=TODAY, legacy_accepted_until=None)
