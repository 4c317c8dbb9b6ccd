"""DEMO ONLY: a deterministic demo world, loaded into an empty embedded database.

The world is 400 hospitals (levels 1/2/3), 800 pharmacies and two terminals each (2,400),
from sscard.terminal_auth's DEMO section: terminal ids follow a fixed layout and each secret is
HMAC-SM3(seed, b"terminal-secret:" + terminal_id). Any tool (terminal_sdk, loadtest) can act
as demo terminal ``n`` with ``demo_terminal(seed, n)`` and no file from the gateway. The
issuing institutions (11 service banks, employers, community centres, online service, the
hotline, the card centre: sscard.demo.demo_issuers) are a part of their own, with two terminals
each and their issuance roles (gateway.issuance_api.demo). Because
the secrets follow from a seed, the demo world must never be loaded into a real deployment:
``Settings.demo_world = "auto"`` loads it into an EMPTY embedded SQLite database only.

The demo world's marker. Loading the terminals writes a row ``demo_world`` into
``gateway_secrets`` in the same transaction, so a database says itself whether it was created
as the demo world. With ``demo_world = "auto"`` the demo credentials (the demo PKI and legacy
master key, the demo ops token, the demo issuing CA, the hub simulator) are trusted only
where that marker is, or where the database is empty and embedded and the demo world is
loaded into it now (:func:`resolve_demo_world`); a database holding anything else never turns
into the demo world, SQLite or not. ``"on"`` loads and trusts them anywhere, ``"off"`` never.

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
from gateway.card_auth.tables import GatewaySecret, get_or_create_secret
from gateway.crossprov.demo import DemoRemotePersons
from gateway.db import for_writes
from gateway.fsi.demo import DemoFsiOperators
from gateway.issuance_api.demo import DemoIssuingInstitutions
from gateway.logs import fields
from gateway.settings import Settings
from gateway.settlement_api.demo import DemoSettlementPersons
from gateway.store import Institution, InstitutionKind, Terminal
from sscard import terminal_auth as ta

__all__ = [
    "DEMO_PARTS",
    "DemoPart",
    "InstitutionsAndTerminals",
    "demo_institutions",
    "demo_terminals",
    "demo_world_of",
    "is_demo_world",
    "load_demo_world",
    "resolve_demo_world",
]

log = logging.getLogger("gateway.demo")

# PostgreSQL has no BEGIN IMMEDIATE: replicas starting at once on one database take this
# transaction-scoped advisory lock instead ("SSCDEMO" in ASCII, recognisable in pg_locks).
_LOCK_KEY: Final = int.from_bytes(b"SSCDEMO", "big")
# The marker's row in gateway_secrets (not a secret: it says the database is the demo world).
DEMO_MARKER: Final = "demo_world"
_MARKER_VALUE: Final = b"created as the DEMO world"


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
        # The marker, with the demo terminals it vouches for: one transaction.
        get_or_create_secret(session, name=DEMO_MARKER, candidate=_MARKER_VALUE)
        return len(institutions) + len(terminals)


def is_demo_world(session: Session, seed: str) -> bool:
    """Was this database created as the demo world? Its marker says so; a database loaded
    before markers existed is recognised by its first demo terminal holding the secret the
    seed derives (only the demo loader writes that), and is marked now."""
    marked = session.execute(
        select(GatewaySecret.name).where(GatewaySecret.name == DEMO_MARKER)
    ).first()
    if marked is not None:
        return True
    terminal_id, secret = ta.demo_terminal(seed, 0)
    stored = session.execute(
        select(Terminal.secret).where(Terminal.terminal_id == terminal_id)
    ).scalar_one_or_none()
    if stored is None or bytes(stored) != secret:
        return False
    get_or_create_secret(session, name=DEMO_MARKER, candidate=_MARKER_VALUE)
    return True


def _is_empty(session: Session) -> bool:
    return session.execute(select(func.count()).select_from(Institution)).scalar_one() == 0


def demo_world_of(engine: Engine, settings: Settings) -> Settings:
    """``settings`` with an "auto" ``demo_world`` decided by this database's marker alone
    ("on" where it is the demo world, else "off"); loads nothing. For a process that did not
    run :func:`resolve_demo_world` itself (an application created in process)."""
    if settings.demo_world != "auto":
        return settings
    with Session(for_writes(engine)) as session, session.begin():
        demo = is_demo_world(session, settings.demo_seed)
    return settings.model_copy(update={"demo_world": "on" if demo else "off"})


def resolve_demo_world(engine: Engine, settings: Settings) -> Settings:
    """``settings`` with ``demo_world`` decided for this database: "on" loads the demo world
    (if a part is missing) and keeps "on"; "auto" becomes "on" where the database is marked
    as the demo world (loading any part still missing) or is empty and embedded (the demo
    world is loaded into it now, marker included), and "off" anywhere else; "off" stays."""
    if settings.demo_world == "off":
        return settings
    if settings.demo_world == "auto":
        with Session(for_writes(engine)) as session, session.begin():
            demo = is_demo_world(session, settings.demo_seed) or (
                settings.is_embedded_db and _is_empty(session)
            )
        if not demo:
            log.info("demo world off: this database was not created as the demo world")
            return settings.model_copy(update={"demo_world": "off"})
    load_demo_world(engine, settings.demo_seed)
    return settings.model_copy(update={"demo_world": "on"})


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
