"""DEMO ONLY: the demo world's issuing institutions (a :class:`gateway.demo.DemoPart`).

The 11 service banks, 20 employers, one community centre per demo district, online service,
the 962222 hotline and the card centre (``sscard.demo.demo_issuers``), each with two enabled
terminals whose secrets follow the demo seed, and each with its ``issuance_agents`` row, so a
tool can act as "demo bank terminal n" (``sscard.demo.demo_issuing_terminal``) and call the
issuance API in that role. Their institutions are of non-medical kinds (migration gw0003): the
settlement routes refuse their terminals.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from gateway.store import Institution, Terminal
from issuance.store import IssuanceAgent
from sscard import demo as sd
from sscard import terminal_auth as ta

__all__ = ["DemoIssuingInstitutions", "demo_issuing_rows"]


def demo_issuing_rows(seed: str) -> dict[str, list[dict[str, Any]]]:
    """DEMO ONLY. Rows for ``institutions``, ``terminals`` and ``issuance_agents``."""
    issuers = sd.demo_issuers()
    return {
        "institutions": [
            {"code": i.institution_code, "name": i.name, "kind": i.kind, "level": None}
            for i in issuers
        ],
        "terminals": [
            {
                "terminal_id": terminal_id,
                "institution_code": i.institution_code,
                "secret": ta.demo_terminal_secret(seed, terminal_id),
                "enabled": True,
            }
            for i in issuers
            for k in range(sd.DEMO_ISSUER_TERMINALS_PER_INSTITUTION)
            for terminal_id in [sd.demo_issuer_terminal_id(i.institution_code, k)]
        ],
        "issuance_agents": [
            {
                "institution_code": i.institution_code,
                "role": i.role,
                "name": i.name,
                "bank_code": i.bank_code,
                "employer_code": i.employer_code,
                "area_code": i.area_code,
            }
            for i in issuers
        ],
    }


class DemoIssuingInstitutions:
    name: Final = "issuing_institutions"

    def is_loaded(self, session: Session) -> bool:
        # Loaded once; and only beside the demo hospitals: a database without them is not a
        # demo database (never mix demo terminals into real institutions).
        agents = session.execute(select(func.count()).select_from(IssuanceAgent)).scalar_one()
        demo = session.get(Institution, ta.demo_institution_code(0)) is not None
        return agents > 0 or not demo

    def load(self, session: Session, seed: str) -> int:
        rows = demo_issuing_rows(seed)
        session.execute(insert(Institution), rows["institutions"])
        session.execute(insert(Terminal), rows["terminals"])
        session.execute(insert(IssuanceAgent), rows["issuance_agents"])
        return sum(len(r) for r in rows.values())
