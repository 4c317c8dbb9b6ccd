"""DEMO ONLY: the demo cardholders and cards (sscard.demo) in issuance's registry tables.

A :class:`gateway.demo.DemoPart`, appended to gateway.demo.DEMO_PARTS after the terminals. It
loads the 20,000 holders and ~38,000 cards of :mod:`sscard.demo` in two executemany
statements. Demo state "absent" (a card the registry never heard of) gets no row; every other
demo state is the CardState of the same value.

Speed: :func:`sscard.demo.demo_card` builds and validates a whole CardIdentity (~0.1 ms), so
calling it for 40,000 cards would cost ~4 s. This module calls :func:`sscard.demo.demo_holder`
once per holder (the personal data) and restates the few card facts the registry needs (states
by holder number modulo 10, issue and expiry dates) from sscard.demo's documented scheme. A
test compares these rows with demo_card for cards of every state, so the two cannot drift
apart silently.

The certificate fingerprint (cards.cert_sm3) stays NULL: demo certificates are signed with a
fresh nonce wherever they are built, so no single fingerprint is "the" demo certificate.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from gateway.store import Institution
from issuance.store import Card, Cardholder, CardState, metadata
from sscard import demo as sd
from sscard import terminal_auth as ta

__all__ = ["DemoCards", "demo_card_row", "demo_card_rows", "demo_holder_row", "holder_id"]

# When the demo registry says each state was reached (any fixed instant will do).
STATE_CHANGED_AT: Final = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# (third-generation state, legacy state) by holder number modulo 10: sscard.demo's table.
_SCENARIOS: Final[tuple[tuple[str, str], ...]] = (
    *((sd.ACTIVE, sd.SUPERSEDED),) * 5,
    (sd.DELIVERED, sd.ACTIVE),
    (sd.LOST, sd.SUPERSEDED),
    (sd.EXPIRED, sd.SUPERSEDED),
    (sd.ABSENT, sd.ACTIVE),
    (sd.ACTIVE, sd.LOST),
)


def holder_id(h: int) -> int:
    """Registry row id of demo holder ``h`` (ids start at 1)."""
    return h + 1


def demo_holder_row(seed: str, h: int) -> dict[str, Any]:
    holder = sd.demo_holder(seed, h)
    return {
        "id": holder_id(h),
        "citizen_id": holder.citizen_id,
        "name": holder.name,
        "birth_date": holder.birth_date,
        "gender": holder.gender.value,
        "area_code": holder.area_code,
    }


def _dates(h: int, generation: int, state: str) -> tuple[dt.date, dt.date]:
    if generation == 3:
        if state == sd.EXPIRED:
            return dt.date(2016, 1, 4), dt.date(2026, 1, 4)
        issued = dt.date(2019, 1, 2) + dt.timedelta(h % 700)
        return issued, dt.date(issued.year + 10, issued.month, min(issued.day, 28))
    return dt.date(2009, 6, 1) + dt.timedelta(h % 1500), dt.date(2029, 12, 31)


def demo_card_row(m: int) -> dict[str, Any] | None:
    """Registry row of demo card ``m``, or None for a card the registry does not know."""
    h, generation = m // 2, (3 if m % 2 == 0 else 2)
    state = _SCENARIOS[h % 10][0 if generation == 3 else 1]
    if state == sd.ABSENT:
        return None
    issued, expires = _dates(h, generation, state)
    return {
        "card_sn": sd.demo_card_sn(h, generation).hex,
        "card_no": f"{'S' if generation == 3 else 'L'}{h:08d}",
        "holder_id": holder_id(h),
        "generation": generation,
        "state": CardState(state),
        "issued_on": issued,
        "expires_on": expires,
        "cert_sm3": None,
        "superseded_by": sd.demo_card_sn(h, 3).hex if state == sd.SUPERSEDED else None,
        "state_changed_at": STATE_CHANGED_AT,
    }


def demo_card_rows(cards: range) -> list[dict[str, Any]]:
    return [row for m in cards if (row := demo_card_row(m)) is not None]


class DemoCards:
    """DEMO ONLY part: cardholders and cards. Loaded only into a registry with no holders."""

    name: Final = "cardholders_and_cards"

    def __init__(self, holders: int = sd.DEMO_HOLDER_COUNT) -> None:
        assert 0 < holders <= sd.DEMO_HOLDER_COUNT
        self.holders = holders

    def is_loaded(self, session: Session) -> bool:
        # Any holder at all: never mix demo people into a registry that holds real ones. And
        # only beside the demo institutions: a database whose institutions are real (the
        # institutions part skipped it) gets no demo cards either.
        if session.execute(select(func.count()).select_from(Cardholder)).scalar_one() > 0:
            return True
        demo_institution = ta.demo_institution_code(0)
        return session.get(Institution, demo_institution) is None

    def load(self, session: Session, seed: str) -> int:
        holders = [demo_holder_row(seed, h) for h in range(self.holders)]
        cards = demo_card_rows(range(2 * self.holders))
        # Core inserts on the tables: the ORM's bulk path costs ~10x more per row here.
        session.execute(insert(metadata.tables[Cardholder.__tablename__]), holders)
        session.execute(insert(metadata.tables[Card.__tablename__]), cards)
        if session.get_bind().dialect.name == "postgresql":
            # Explicit ids do not advance PostgreSQL's sequence; without this, the first
            # cardholder issuance creates collides with demo holder 1.
            session.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('cardholders', 'id'),"
                    " (SELECT max(id) FROM cardholders))"
                )
            )
        return len(holders) + len(cards)
