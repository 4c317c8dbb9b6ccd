"""Helpers for the issuance tests (a uniquely named module: every test folder has a conftest)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import insert
from sqlalchemy.orm import Session

from issuance.access import Agent, Role
from issuance.applications import Applicant, ApplicationRequest
from issuance.programme import Channel, PhotoSource
from issuance.store import IssuanceAgent
from sscard.layout import citizen_id_check_digit

# One agent per role; codes are institution codes.
BANK_ICBC: Final = Agent("B-ICBC-001", Role.BANK, bank_code="ICBC", terminal_id="T-B1")
BANK_CCB: Final = Agent("B-CCB-001", Role.BANK, bank_code="CCB", terminal_id="T-B2")
EMPLOYER: Final = Agent(
    "E-ACME-001", Role.EMPLOYER, employer_code="ACME", bank_code="ICBC", terminal_id="T-E1"
)
OTHER_EMPLOYER: Final = Agent("E-OTHER-01", Role.EMPLOYER, employer_code="OTHER", bank_code="BOC")
COMMUNITY: Final = Agent("C-310104-01", Role.COMMUNITY, area_code="310104", terminal_id="T-C1")
OTHER_COMMUNITY: Final = Agent("C-310115-01", Role.COMMUNITY, area_code="310115")
ONLINE: Final = Agent("O-WEB-001", Role.ONLINE, terminal_id="T-O1")
HOTLINE: Final = Agent("HL-962222", Role.HOTLINE, terminal_id="T-H1")
CENTRE: Final = Agent("CTR-001", Role.CENTRE, terminal_id="T-X1")
AGENTS: Final = (
    BANK_ICBC,
    BANK_CCB,
    EMPLOYER,
    OTHER_EMPLOYER,
    COMMUNITY,
    OTHER_COMMUNITY,
    ONLINE,
    HOTLINE,
    CENTRE,
)


def agent_rows() -> list[dict[str, Any]]:
    return [
        {
            "institution_code": a.institution_code,
            "role": a.role.value,
            "name": f"test {a.role.value}",
            "bank_code": a.bank_code,
            "employer_code": a.employer_code,
            "area_code": a.area_code,
        }
        for a in AGENTS
    ]


def load_agents(session: Session) -> None:
    session.execute(insert(IssuanceAgent), agent_rows())


def citizen_id(n: int, birth: dt.date = dt.date(1980, 1, 1), area: str = "310104") -> str:
    first17 = f"{area}{birth:%Y%m%d}{n % 1000:03d}"
    return first17 + citizen_id_check_digit(first17)


def applicant(
    n: int,
    *,
    birth: dt.date = dt.date(1980, 1, 1),
    area: str = "310104",
    hukou: bool = True,
    insured: bool = True,
) -> Applicant:
    return Applicant(
        citizen_id=citizen_id(n, birth, area),
        name=f"测试{n}",
        birth_date=birth,
        gender="1" if n % 2 else "2",
        area_code=area,
        hukou_shanghai=hukou,
        insured_in_shanghai=insured,
    )


def request(
    who: Applicant,
    cohort: str,
    channel: Channel,
    photo: PhotoSource = PhotoSource.ID_CARD_SHARED,
    **banks: Any,
) -> ApplicationRequest:
    return ApplicationRequest(
        applicant=who,
        cohort=cohort,
        channel=channel,
        photo_source=photo,
        backup_centre=COMMUNITY.institution_code,
        **banks,
    )


def at(day: dt.date, hour: int = 10) -> dt.datetime:
    """10:00 Shanghai time on ``day``, as UTC."""
    return dt.datetime(day.year, day.month, day.day, hour - 8, tzinfo=dt.UTC)
