"""The card registry: the single source of card status that card authentication trusts.

``card_usability`` is the pure decision; :func:`read_card` is THE read of a card's row, used by
card authentication (on every attempt), by settlement's re-check before money moves (passed to
settlement as a callable: settlement never imports issuance) and by :class:`CardRegistry`. It
runs on the driver's cursor (:class:`dbkit.DriverSQL`: ~10 µs instead of ~250 µs for an ORM
query) and is never cached, so a card reported lost is refused on the very next use.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Table
from sqlalchemy.orm import Session

from dbkit import DriverSQL
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


# In CardRecord's field order; the column types convert what is read (the state's enum,
# SQLite's date text), so the stored forms stay this package's business.
_CARDS: Final[Table] = Card.__table__  # type: ignore[assignment]
_CARD_COLUMNS: Final = (
    _CARDS.c.card_sn,
    _CARDS.c.generation,
    _CARDS.c.state,
    _CARDS.c.holder_id,
    _CARDS.c.expires_on,
    _CARDS.c.cert_sm3,
    _CARDS.c.superseded_by,
)
_SELECT_CARD: Final = DriverSQL(
    "SELECT card_sn, generation, state, holder_id, expires_on, cert_sm3, superseded_by "
    "FROM cards WHERE card_sn = ?",
    results=_CARD_COLUMNS,
)


def read_card(session: Session, card_sn: str) -> CardRecord | None:
    """The registry's record of ``card_sn``, or None if the registry has no such card."""
    row = _SELECT_CARD.fetchone(session.connection(), (card_sn,))
    return None if row is None else CardRecord(*row)


def require_usable(
    session: Session, card_sn: str, *, today: dt.date, legacy_accepted_until: dt.date | None
) -> CardRecord:
    """The card's record if it may be used today (:func:`card_usability`), else raise why not."""
    return card_usability(
        read_card(session, card_sn),
        card_sn=card_sn,
        today=today,
        legacy_accepted_until=legacy_accepted_until,
    )


class CardRegistry:
    """Reads card status. Construct with a SQLAlchemy ``Session``; it never writes."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, card_sn: str) -> CardRecord | None:
        return read_card(self._session, card_sn)

    def require_usable(
        self, card_sn: str, *, today: dt.date, legacy_accepted_until: dt.date | None
    ) -> CardRecord:
        return require_usable(
            self._session, card_sn, today=today, legacy_accepted_until=legacy_accepted_until
        )
