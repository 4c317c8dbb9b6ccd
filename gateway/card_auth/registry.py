"""The card registry row, read on every authentication: issuance's ``cards`` table, on the cursor.

:meth:`issuance.registry.CardRegistry.get` builds an ORM query per call (~250 µs of CPU); this
is the same read as a :class:`gateway.store.DriverStatement` (~10 µs), converted into the same
:class:`issuance.registry.CardRecord` by the column types' own SQLAlchemy result processors, so
the stored forms (the state's enum name, SQLite's date text) stay issuance's business. It is
still read inside the authentication's transaction, never cached: a card reported lost a moment
ago is refused on its very next authentication.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from gateway.store import DriverStatement
from issuance.registry import CardRecord
from issuance.store import Card

__all__ = ["read_card"]

# In CardRecord's field order.
_COLUMNS: Final = (
    "card_sn",
    "generation",
    "state",
    "holder_id",
    "expires_on",
    "cert_sm3",
    "superseded_by",
)
_SELECT_CARD: Final = DriverStatement(
    "SELECT card_sn, generation, state, holder_id, expires_on, cert_sm3, superseded_by "
    "FROM cards WHERE card_sn = ?"
)

_Processor = Callable[[Any], Any] | None
_processors: dict[str, tuple[_Processor, ...]] = {}


def _processors_for(dialect: Dialect) -> tuple[_Processor, ...]:
    found = _processors.get(dialect.name)
    if found is None:
        columns = Card.__table__.c
        found = tuple(
            columns[name].type.dialect_impl(dialect).result_processor(dialect, None)
            for name in _COLUMNS
        )
        _processors[dialect.name] = found
    return found


def read_card(session: Session, card_sn: str) -> CardRecord | None:
    """The registry's record of ``card_sn``, or None if the registry has no such card."""
    row = _SELECT_CARD.execute(session, (card_sn,)).fetchone()
    if row is None:
        return None
    processors = _processors_for(session.get_bind().dialect)
    values = [
        value if process is None or value is None else process(value)
        for process, value in zip(processors, row, strict=True)
    ]
    return CardRecord(*values)
