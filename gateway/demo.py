"""DEMO ONLY: a deterministic demo world, loaded into an empty embedded database.

The world is 400 hospitals (levels 1/2/3), 800 pharmacies and two terminals each (2,400),
from sscard.terminal_auth's DEMO section: terminal ids follow a fixed layout and each secret is
HMAC-SM3(seed, b"terminal-secret:" + terminal_id). Any tool (terminal_sdk, loadtest) can act
as demo terminal ``n`` with ``demo_terminal(seed, n)`` and no file from the gateway. The
issuing institutions (11 service banks, employers, community centres, online service, the
hotline, the card centre: sscard.demo.demo_issuers) are a part of their own, with two terminals
each and their issuance roles (gateway.issuance_api.demo). Because
the secrets follow from a seed, the demo world must never be loaded into a real deployment:
``Settings.demo_world = "auto"`` loads it into an embedded SQLite database only.

Extension point: the world is built by the :data:`DEMO_PARTS` in order, each in its own
transaction and each idempotent (it checks whether it is loaded). To add demo cards, write a
part (``name``, ``is_loaded(session)``, ``load(session, seed)``), for example in the issuance
package, and append it to DEMO_PARTS after the terminals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final, Protocol

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from gateway.card_auth.demo_cards import DemoCards
from gateway.crossprov.demo import DemoRemotePersons
from gateway.db import for_writes
from gateway.fsi.demo import DemoFsiOperators
from gateway.issuance_api.demo import DemoIssuingInstitutions
from gateway.logs import fields
from gateway.settlement_api.demo import DemoSettlementPersons
from gateway.store import Institution, InstitutionKind, Terminal
from sscard import terminal_auth as ta

__all__ = [
    "DEMO_PARTS",
    "DemoPart",
    "InstitutionsAndTerminals",
    "demo_institutions",
    "demo_terminals",
    "load_demo_world",
]

log = logging.getLogger("gateway.demo")

# PostgreSQL has no BEGIN IMMEDIATE: replicas starting at once on one database take this
# transaction-scoped advisory lock instead ("SSCDEMO" in ASCII, recognisable in pg_locks).
_LOCK_KEY: Final = int.from_bytes(b"SSCDEMO", "big")


class DemoPart(Protocol):
    """One idempotent piece of the demo world."""

    @property
    def name(self) -> str: ...

    def is_loaded(self, session: Session) -> bool: ...

    def load(self, session: Session, seed: str) -> int:
        """Insert this part's rows; return how many."""
        ...


def _hospital_level(index: int) -> int:
    # Six in ten level 1 (community), three level 2, one level 3: roughly Shanghai's mix.
    return (1, 1, 1, 1, 1, 1, 2, 2, 2, 3)[index % 10]


def demo_institutions() -> list[dict[str, Any]]:
    """DEMO ONLY. The 1,200 institutions as rows for ``insert(Institution)``."""
    rows: list[dict[str, Any]] = []
    for index in range(ta.DEMO_HOSPITAL_COUNT + ta.DEMO_PHARMACY_COUNT):
        code = ta.demo_institution_code(index)
        if index < ta.DEMO_HOSPITAL_COUNT:
            number = index + 1
            rows.append(
                {
                    "code": code,
                    "name": f"演示医院{number:03d} Demo Hospital {number}",
                    "kind": InstitutionKind.HOSPITAL.value,
                    "level": _hospital_level(index),
                }
            )
        else:
            number = index - ta.DEMO_HOSPITAL_COUNT + 1
            rows.append(
                {
                    "code": code,
                    "name": f"演示药店{number:03d} Demo Pharmacy {number}",
                    "kind": InstitutionKind.PHARMACY.value,
                    "level": None,
                }
            )
    return rows


def demo_terminals(seed: str) -> list[dict[str, Any]]:
    """DEMO ONLY. The 2,400 terminals, all enabled, as rows for ``insert(Terminal)``."""
    rows = []
    for n in range(ta.DEMO_TERMINAL_COUNT):
        terminal_id, secret = ta.demo_terminal(seed, n)
        rows.append(
            {
                "terminal_id": terminal_id,
                "institution_code": ta.demo_institution_code(
                    n // ta.DEMO_TERMINALS_PER_INSTITUTION
                ),
                "secret": secret,
                "enabled": True,
            }
        )
    return rows


class InstitutionsAndTerminals:
    name: Final = "institutions_and_terminals"

    def is_loaded(self, session: Session) -> bool:
        # Any institution at all means the database is not empty: never mix the demo world
        # into a database that holds real institutions.
        return session.execute(select(func.count()).select_from(Institution)).scalar_one() > 0

    def load(self, session: Session, seed: str) -> int:
        institutions = demo_institutions()
        terminals = demo_terminals(seed)
        # One executemany per table: ~3,600 rows in well under a second on SQLite.
        session.execute(insert(Institution), institutions)
        session.execute(insert(Terminal), terminals)
        return len(institutions) + len(terminals)


# Built in this order. EXTENSION POINT: append further parts here.
DEMO_PARTS: Final[tuple[DemoPart, ...]] = (
    InstitutionsAndTerminals(),
    DemoIssuingInstitutions(),
    DemoCards(),
    DemoSettlementPersons(),
    # After the Shanghai persons: moves a dedicated range of them to the hub's provinces.
    DemoRemotePersons(),
    DemoFsiOperators(),  # the national door's operators (gateway.fsi)
)


def load_demo_world(
    engine: Engine, seed: str, parts: Sequence[DemoPart] = DEMO_PARTS
) -> dict[str, int]:
    """Load every part that is not loaded yet; return rows inserted per part (0 if skipped).

    Each part runs in one write transaction (BEGIN IMMEDIATE on SQLite, an advisory lock on
    PostgreSQL), so two processes or replicas starting at once cannot both load it: the second
    waits, then finds it loaded.
    """
    write_engine = for_writes(engine)
    inserted: dict[str, int] = {}
    for part in parts:
        started = time.perf_counter()
        with Session(write_engine) as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            if part.is_loaded(session):
                inserted[part.name] = 0
                continue
            inserted[part.name] = part.load(session, seed)
        log.warning(
            "DEMO world loaded: terminal secrets are derivable from the demo seed",
            extra=fields(
                part=part.name,
                rows=inserted[part.name],
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            ),
        )
    return inserted
