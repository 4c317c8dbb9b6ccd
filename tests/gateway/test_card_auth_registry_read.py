"""The one registry read (issuance.registry.read_card, on the driver's cursor) answers exactly
what the ORM reads from the same rows, for cards in every registry state, on SQLite and
PostgreSQL: the column types' processors convert the state's enum and SQLite's date text."""

from __future__ import annotations

from card_auth_testkit import HOLDERS, load_registry
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from issuance.registry import CardRecord, read_card
from issuance.store import Card, CardState


def test_read_card_matches_the_registry_for_every_card(engine: Engine) -> None:
    load_registry(engine)
    with Session(engine) as session:
        card_sns = session.execute(select(Card.card_sn)).scalars().all()
        states = set(session.execute(select(Card.state)).scalars())
        assert len(card_sns) >= HOLDERS
        assert len(states) >= 4  # active, lost, superseded, expired … all compared below
        for card_sn in card_sns:
            card = session.get(Card, card_sn)
            assert card is not None
            assert read_card(session, card_sn) == CardRecord(
                card.card_sn,
                card.generation,
                card.state,
                card.holder_id,
                card.expires_on,
                card.cert_sm3,
                card.superseded_by,
            )
        assert read_card(session, "310000D156000005" + "F" * 16) is None


def test_a_loss_report_is_seen_by_the_very_next_read(engine: Engine) -> None:
    load_registry(engine)
    with Session(engine) as session:
        card_sns = session.execute(select(Card.card_sn)).scalars().all()
        records = [read_card(session, card_sn) for card_sn in card_sns]
        record = next(r for r in records if r is not None and r.state is CardState.ACTIVE)
    with Session(engine) as session, session.begin():
        session.execute(
            update(Card).where(Card.card_sn == record.card_sn).values(state=CardState.LOST)
        )
    with Session(engine) as session:
        after = read_card(session, record.card_sn)
        assert after is not None
        assert after.state is CardState.LOST
