"""DEMO ONLY: operators for the national door in the demo world: OP0001-OP0003 at every demo
hospital and pharmacy (plain profile, the default), so an HIS can sign in (9001) at once."""

from __future__ import annotations

from typing import Final

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from gateway.fsi.store import FsiOperator
from gateway.store import Institution
from sscard import terminal_auth as ta

__all__ = ["DEMO_OPERATORS", "DemoFsiOperators"]

DEMO_OPERATORS: Final = ("OP0001", "OP0002", "OP0003")


class DemoFsiOperators:
    name: Final = "fsi_operators"

    def is_loaded(self, session: Session) -> bool:
        # Loaded, or not the demo world (its first institution absent): never mix demo
        # operators into a database of real institutions.
        if session.get(Institution, ta.demo_institution_code(0)) is None:
            return True
        return session.execute(select(func.count()).select_from(FsiOperator)).scalar_one() > 0

    def load(self, session: Session, seed: str) -> int:
        del seed  # operators follow from the institution codes alone
        rows = [
            {
                "fixmedins_code": ta.demo_institution_code(index),
                "opter": opter,
                "opter_name": f"演示操作员 {opter}",
                "enabled": True,
            }
            for index in range(ta.DEMO_HOSPITAL_COUNT + ta.DEMO_PHARMACY_COUNT)
            for opter in DEMO_OPERATORS
        ]
        session.execute(insert(FsiOperator), rows)
        return len(rows)
