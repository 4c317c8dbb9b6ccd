"""Institutions that only issue cards (gw0003): the migration on a populated database (SQLite and
PostgreSQL, up and down), and what their terminals may do: the issuance API in their agent role,
card authentication, and no settlement route at all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from card_auth_testkit import NEW_ACTIVE, SEED, CardTerminal, load_registry
from gateway_testkit import (
    HOSPITAL,
    OK_TERMINAL,
    Client,
    FakeClock,
    Signer,
    assert_problem,
)
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import migrate
from gateway.db import for_writes, make_engine
from gateway.demo import InstitutionsAndTerminals, load_demo_world
from gateway.issuance_api.demo import DemoIssuingInstitutions
from gateway.routes import ROUTES
from gateway.settings import Settings
from gateway.store import MEDICAL_KINDS, Institution, InstitutionKind, Terminal
from issuance.store import IssuanceAgent
from sscard import demo as sd

BANK = "B31ICBC0001"
BANK_TERMINAL = "B31ICBC0001-01"
BANK_SECRET = b"\x51" * 32


def _downgrade(engine: Engine, revision: str) -> None:
    with for_writes(engine).begin() as connection:
        command.downgrade(migrate.alembic_config(connection), revision)


def _bank_row(kind: str = "service_bank", level: int | None = None) -> dict[str, Any]:
    return {"code": BANK, "name": "ICBC branch", "kind": kind, "level": level}


@pytest.fixture
def old_engine(settings: Settings) -> Iterator[Engine]:
    """Migrated to just before gw0003 and populated: a hospital, a pharmacy, their terminals."""
    engine = make_engine(settings)
    migrate.upgrade(engine, "gw0002")
    with Session(for_writes(engine)) as session, session.begin():
        session.execute(
            insert(Institution),
            [
                {"code": HOSPITAL, "name": "H", "kind": "hospital", "level": 2},
                {"code": "P1", "name": "P", "kind": "pharmacy", "level": None},
            ],
        )
        session.execute(
            insert(Terminal),
            [
                {"terminal_id": OK_TERMINAL, "institution_code": HOSPITAL, "secret": b"k" * 32},
                {"terminal_id": "P1-01", "institution_code": "P1", "secret": b"p" * 32},
            ],
        )
    yield engine
    engine.dispose()


def test_gw0003_admits_issuing_institutions_keeps_rows_and_downgrades(old_engine: Engine) -> None:
    with pytest.raises(IntegrityError), Session(old_engine) as session, session.begin():
        session.execute(insert(Institution).values(**_bank_row()))

    # To gw0003 itself: later revisions (gw0004 …) change these tables again.
    migrate.upgrade(old_engine, "gw0003")
    assert "gw0003" in migrate.current_revisions(old_engine)
    with Session(old_engine) as session, session.begin():
        rows = session.execute(
            select(Institution.code, Institution.kind).order_by(Institution.code)
        )
        assert rows.all() == [(HOSPITAL, "hospital"), ("P1", "pharmacy")]
        # The terminals still reference their institutions, foreign keys intact.
        terminals = session.execute(select(Terminal.terminal_id).order_by(Terminal.terminal_id))
        assert terminals.scalars().all() == sorted([OK_TERMINAL, "P1-01"])
        for kind in InstitutionKind:
            if kind in MEDICAL_KINDS:
                continue
            session.execute(
                insert(Institution).values(
                    code=f"X-{kind.value}", name=kind.value, kind=kind.value, level=None
                )
            )
        session.execute(
            insert(Terminal).values(
                terminal_id="X-bank-01", institution_code="X-service_bank", secret=b"b" * 32
            )
        )
    # Still checked: an unknown kind, a level on a bank, a hospital without a level.
    for bad in (_bank_row("casino"), _bank_row(level=1), _bank_row("hospital")):
        with pytest.raises(IntegrityError), Session(old_engine) as session, session.begin():
            session.execute(insert(Institution).values(**bad))
    with pytest.raises(IntegrityError), Session(old_engine) as session, session.begin():
        session.execute(
            insert(Terminal).values(terminal_id="T-none", institution_code="nope", secret=b"n" * 32)
        )

    # Downgrade refuses while issuing institutions exist, and changes nothing.
    with pytest.raises(RuntimeError, match="neither hospital nor pharmacy"):
        _downgrade(old_engine, "gw0002")
    assert "gw0003" in migrate.current_revisions(old_engine)
    with Session(old_engine) as session, session.begin():
        session.execute(text("DELETE FROM terminals WHERE terminal_id = 'X-bank-01'"))
        session.execute(text("DELETE FROM institutions WHERE code LIKE 'X-%'"))
    _downgrade(old_engine, "gw0002")
    assert "gw0002" in migrate.current_revisions(old_engine)
    with pytest.raises(IntegrityError), Session(old_engine) as session, session.begin():
        session.execute(insert(Institution).values(**_bank_row()))
    migrate.upgrade(old_engine, "gw0003")
    with Session(old_engine) as session, session.begin():
        session.execute(insert(Institution).values(**_bank_row()))


# --- what an issuing institution's terminal may do ---------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}  # the demo PKI for card authentication


@pytest.fixture
def bank_world(engine: Engine) -> Engine:
    load_registry(engine)
    with Session(engine) as session, session.begin():
        session.execute(insert(Institution).values(**_bank_row()))
        session.execute(
            insert(Terminal).values(
                terminal_id=BANK_TERMINAL, institution_code=BANK, secret=BANK_SECRET, enabled=True
            )
        )
    return engine


SETTLEMENT_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/eligibility", {}),
    ("POST", "/v1/settlements/pre-settle", {"visit_type": "outpatient", "lines": []}),
    ("POST", "/v1/settlements", {"visit_type": "outpatient", "lines": []}),
    ("POST", "/v1/settlements/S1/cancel", {"reason": "x"}),
    ("GET", "/v1/settlements/S1", None),
    ("GET", "/v1/settlements?date=2019-03-01", None),
    ("POST", "/v1/admissions", {"admission_date": "2019-03-01"}),
    ("POST", "/v1/admissions/A1/fee-lines", {"lines": []}),
    ("POST", "/v1/admissions/A1/discharge", {"discharge_date": "2019-03-01"}),
    ("POST", "/v1/reconciliation/totals", {}),
    ("POST", "/v1/reconciliation/details", {}),
    ("GET", "/v1/reconciliation/mismatches?date=2019-03-01", None),
    ("POST", "/v1/crossprov/filings", {}),
    ("GET", "/v1/crossprov/filings", None),
    ("GET", "/v1/crossprov/settlements?date=2019-03-01", None),
    ("GET", "/v1/crossprov/reversals", None),
    ("GET", "/v1/crossprov/clearing?date=2019-03-01", None),
]


def _settlement_paths() -> set[tuple[str, str]]:
    return {(r.method, r.path) for r in ROUTES if {"settlement", "cross-province"} & set(r.tags)}


async def test_every_settlement_route_refuses_an_issuing_institution(
    client: Client, clock: FakeClock, bank_world: Engine
) -> None:
    bank = Signer(client, clock, terminal_id=BANK_TERMINAL, secret=BANK_SECRET)
    # Card authentication works at a bank desk (activation, replacement need the card read)...
    session = await (await CardTerminal(bank).authenticate(NEW_ACTIVE)).json()
    headers = {"X-Card-Session": session["card_session"], "Idempotency-Key": "k-1"}
    seen: set[tuple[str, str]] = set()
    for method, path, body in SETTLEMENT_CALLS:
        if method == "GET":
            signed = bank.headers(
                "GET", path, b"", card_session=headers["X-Card-Session"], idempotency_key="k-1"
            )
            response = await client.get(path, headers=signed)
        else:
            response = await bank.post(path, body, extra_headers=headers)
        problem = await assert_problem(response, 403, "INSTITUTION_KIND_NOT_ALLOWED")
        assert "service_bank" in problem["detail"], path
        seen.add(next((r.method, r.path) for r in ROUTES if _matches(r.path, path, method, r)))
    # ... the table above covers every settlement route there is.
    assert seen == _settlement_paths()
    document = await (await client.get("/openapi.json")).json()
    responses = document["paths"]["/v1/settlements"]["post"]["responses"]
    assert "403" in responses


def _matches(template: str, path: str, method: str, route: Any) -> bool:
    if route.method != method:
        return False
    parts, actual = template.split("/"), path.split("?", maxsplit=1)[0].split("/")
    return len(parts) == len(actual) and all(
        p == a or p.startswith("{") for p, a in zip(parts, actual, strict=True)
    )


async def test_medical_terminals_still_settle_routes_open(
    client: Client, clock: FakeClock, bank_world: Engine, signer: Signer
) -> None:
    # The guard looks at the kind only: a hospital terminal gets past it (and on to the
    # route's own checks: here no card session).
    response = await signer.post("/v1/eligibility", {})
    await assert_problem(response, 401, "CARD_SESSION_INVALID")


# --- the demo world's issuing institutions -------------------------------------------------------


def test_demo_issuing_institutions_load_once_beside_the_demo_world(
    migrated_engine: Engine,
) -> None:
    parts = (InstitutionsAndTerminals(), DemoIssuingInstitutions())
    issuers = sd.demo_issuers()
    assert len(sd.demo_issuers("service_bank")) == 11
    assert [i.bank_code for i in sd.demo_issuers("service_bank")] == list(sd.DEMO_SERVICE_BANKS)
    loaded = load_demo_world(migrated_engine, SEED, parts)
    assert loaded["issuing_institutions"] == 4 * len(issuers)  # institution, 2 terminals, agent
    assert load_demo_world(migrated_engine, SEED, parts)["issuing_institutions"] == 0
    roles = {
        "service_bank": "bank",
        "employer": "employer",
        "community_centre": "community",
        "online_service": "online",
        "hotline": "hotline",
        "card_centre": "centre",
    }
    with Session(migrated_engine) as session:
        for kind, role in roles.items():
            for n in range(2 * len(sd.demo_issuers(kind))):
                terminal_id, secret = sd.demo_issuing_terminal(SEED, kind, n)
                terminal = session.get(Terminal, terminal_id)
                assert terminal is not None
                assert (terminal.secret, terminal.enabled) == (secret, True)
                institution = session.get(Institution, terminal.institution_code)
                agent = session.get(IssuanceAgent, terminal.institution_code)
                assert institution is not None
                assert agent is not None
                assert (institution.kind, institution.level, agent.role) == (
                    kind,
                    None,
                    role,
                )
        # Every demo holder's district has its community centre (their backup centre).
        for h in range(200):
            area = sd.demo_holder(SEED, h).area_code
            assert sd.demo_community_centre(area).area_code == area
    with pytest.raises(ValueError, match="out of range"):
        sd.demo_issuing_terminal(SEED, "hotline", 2)


def test_demo_issuing_institutions_never_join_a_database_without_the_demo_world(
    engine: Engine,
) -> None:
    # The `engine` fixture holds two test institutions and no demo hospital.
    assert load_demo_world(engine, SEED, (DemoIssuingInstitutions(),)) == {
        "issuing_institutions": 0
    }
