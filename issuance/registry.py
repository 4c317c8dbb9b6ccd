"""The card registry: the single source of card status that card authentication trusts.

``card_usability`` is the pure decision; ``CardRegistry`` reads the row. Authentication calls
``CardRegistry.require_usable`` on every attempt, so a card reported lost is refused on the very
next authentication (no cache in between).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from issuance.errors import (
    CardExpired,
    CardLost,
    CardNotActivated,
    CardRevoked,
    CardSuperseded,
    CardUnknown,
    LegacyPeriodOver,
)
from issuance.store import Card, CardState


@dataclass(frozen=True, slots=True)
class CardRecord:
    """What authentication needs to know about a card."""

    card_sn: str
    generation: int
    state: CardState
    holder_id: int
    expires_on: dt.date
    cert_sm3: str | None
    superseded_by: str | None


_NOT_YET_ACTIVE = {
    CardState.PRODUCED,
    CardState.MAILED,
    CardState.DELIVERED,
    CardState.DELIVERY_FAILED,
    CardState.AT_BACKUP_CENTRE,
    CardState.COLLECTED,
}


def card_usability(
    record: CardRecord | None,
    *,
    card_sn: str,
    today: dt.date,
    legacy_accepted_until: dt.date | None,
) -> CardRecord:
    """Return the record if the card may authenticate today, else raise why not.

    Messages are written for the clerk at the counter.
    """
    if record is None:
        raise CardUnknown(
            f"card {card_sn[-6:]} is not in the registry; ask the holder for their current card"
        )
    if record.state is CardState.LOST:
        raise CardLost(
            "this card was reported lost and is blocked; the holder can get a "
            "replacement at a community centre or service bank (962222)"
        )
    if record.state is CardState.SUPERSEDED:
        raise CardSuperseded(
            "this old card was voided when the holder activated a new card; "
            "please use the new social security card"
        )
    if record.state is CardState.REVOKED:
        raise CardRevoked(
            "this card was replaced and is no longer valid; please use the replacement card"
        )
    if record.state is CardState.EXPIRED or record.expires_on < today:
        raise CardExpired(
            f"this card expired on {record.expires_on.isoformat()}; the holder needs a new card"
        )
    if record.state in _NOT_YET_ACTIVE:
        raise CardNotActivated(
            "this new card has not been activated yet; activate it at a "
            "service bank or use the old card for now"
        )
    assert record.state is CardState.ACTIVE
    if (
        record.generation < 3
        and legacy_accepted_until is not None
        and today > legacy_accepted_until
    ):
        raise LegacyPeriodOver(
            "old (second-generation) cards are no longer accepted; the holder needs the new card"
        )
    return record


class CardRegistry:
    """Reads card status. Construct with a SQLAlchemy ``Session``; it never writes."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, card_sn: str) -> CardRecord | None:
        row = self._session.execute(
            select(
                Card.card_sn,
                Card.generation,
                Card.state,
                Card.holder_id,
                Card.expires_on,
                Card.cert_sm3,
                Card.superseded_by,
            ).where(Card.card_sn == card_sn)
        ).one_or_none()
        if row is None:
            return None
        return CardRecord(*row)

    def require_usable(
        self, card_sn: str, *, today: dt.date, legacy_accepted_until: dt.date | None
    ) -> CardRecord:
        return card_usability(
            self.get(card_sn),
            card_sn=card_sn,
            today=today,
            legacy_accepted_until=legacy_accepted_until,
        )
