"""Helpers for the settlement API tests: the insured demo world, a terminal-side client that
signs settlement requests with a card session, and what-was-written snapshots.
(A uniquely named module: every test directory has its own conftest.)"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from card_auth_testkit import SEED, CardTerminal, load_registry
from gateway_testkit import Signer
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.settlement_api.demo import DemoSettlementPersons
from settlement.ledger import _signed_amount, unbalanced_transactions
from settlement.store import (
    AdmissionFeeLineRow,
    AdmissionRow,
    IdempotencyKey,
    LedgerEntry,
    LedgerTransaction,
    PersonalAccount,
    ReconciliationRun,
    SettlementLineRow,
    SettlementRow,
    YearToDateTotals,
)

TODAY = "2027-01-15"  # the fake clock's day (gateway_testkit.T0), also in Beijing time
REFERENCE_DATE = dt.date(2027, 1, 15)

OUTPATIENT_LINES = [
    {"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2_500},  # consultation
    {"code": "DEMO-B-001", "quantity": 2, "unit_price_fen": 3_000},  # atorvastatin, class B
    {"code": "DEMO-C-001", "quantity": 1, "unit_price_fen": 1_000},  # supplement, class C
]
PHARMACY_LINES = [{"code": "DEMO-A-001", "quantity": 3, "unit_price_fen": 1_250}]


def load_insured_world(engine: Engine) -> None:
    """The card registry's first demo holders, each an insured person with an account."""
    load_registry(engine)
    with Session(engine) as session, session.begin():
        DemoSettlementPersons(reference_date=REFERENCE_DATE).load(session, SEED)


def outpatient(lines: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "visit_type": "outpatient",
        "visit_date": TODAY,
        "lines": OUTPATIENT_LINES if lines is None else lines,
        **overrides,
    }


@dataclass
class Till:
    """A terminal at the counter: reads a card once, then sends settlement requests."""

    signer: Signer
    card_session: str | None = None
    keys: list[str] = field(default_factory=list)

    async def read_card(self, m: int) -> str:
        response = await CardTerminal(self.signer).authenticate(m)
        assert response.status == 200, await response.text()
        token: str = (await response.json())["card_session"]
        self.card_session = token
        return token

    def new_key(self) -> str:
        key = f"key-{secrets.token_hex(8)}"
        self.keys.append(key)
        return key

    async def post(
        self,
        path: str,
        body: dict[str, Any] | bytes,
        *,
        key: str | None = None,
        session: str | None = None,
        with_session: bool = True,
    ) -> Any:
        headers: dict[str, str] = {}
        token = session if session is not None else self.card_session
        if with_session and token is not None:
            headers["X-Card-Session"] = token
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.signer.post(path, body, extra_headers=headers)

    async def get(self, path: str) -> Any:
        headers = self.signer.headers("GET", path, b"")
        return await self.signer.client.get(path, headers=headers)

    async def settle(self, body: dict[str, Any], *, key: str | None = None) -> Any:
        return await self.post("/v1/settlements", body, key=key or self.new_key())

    async def settled(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.settle(body)
        assert response.status == 201, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def eligibility(self) -> dict[str, Any]:
        response = await self.post("/v1/eligibility", {})
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


WRITTEN_TABLES = (
    SettlementRow,
    SettlementLineRow,
    LedgerTransaction,
    LedgerEntry,
    IdempotencyKey,
    YearToDateTotals,
    AdmissionRow,
    AdmissionFeeLineRow,
    ReconciliationRun,
)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Row counts of every table the settlement API writes, and every account balance."""
    with Session(engine) as session:
        counts: dict[str, Any] = {
            table.__tablename__: session.execute(
                select(func.count()).select_from(table)
            ).scalar_one()
            for table in WRITTEN_TABLES
        }
        counts["accounts"] = sorted(
            session.execute(
                select(
                    PersonalAccount.person_id,
                    PersonalAccount.current_year_fen,
                    PersonalAccount.past_years_fen,
                )
            ).all()
        )
        counts["settlement_status"] = sorted(
            session.execute(select(SettlementRow.setl_id, SettlementRow.status)).all()
        )
        return counts


def assert_ledger_balanced(engine: Engine) -> None:
    """Every transaction sums to zero, and so does the whole ledger."""
    with Session(engine) as session:
        assert unbalanced_transactions(session) == []
        total = session.scalar(select(func.coalesce(func.sum(_signed_amount()), 0)))
        assert total == 0
        assert (
            session.scalar(
                select(func.count())
                .select_from(PersonalAccount)
                .where(
                    (PersonalAccount.current_year_fen < 0) | (PersonalAccount.past_years_fen < 0)
                )
            )
            == 0
        )


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()
