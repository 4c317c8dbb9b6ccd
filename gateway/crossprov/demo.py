"""DEMO ONLY: demo cardholders insured in the hub's provinces, with filings of every type.

A :class:`gateway.demo.DemoPart` after the Shanghai persons. Demo holders ``h`` in
:data:`REMOTE_HOLDERS` (a range no other test or benchmark uses: they take the first
holders) become persons insured in another province: their ``psn_no`` is the province's two
digits + the registry holder id zero-padded to 13 digits (the hub simulator derives any such
person from the seed, docs/cross-province.md), their insurance names that province.

Province and filing follow from ``h``::

    province = PROVINCES[(h // 10) % 6]          110000 320000 330000 340000 440000 510000
    filing   = FILINGS[(h // 60) % 5]            resettled_retiree, long_term_resident,
                                                 referral (to demo hospital 0), emergency
                                                 (a record, redundant), none

so every province has persons of every filing kind, and the card state still follows
``h % 10`` (sscard.demo): pick ``h % 10`` in 0-4 or 9 for an active third-generation card.
"""

from __future__ import annotations

import datetime as dt
from typing import Final, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from gateway.card_auth.demo_cards import holder_id
from settlement.crossprov.store import FilingRow, FilingType
from settlement.store import Insurance, InsuredPersonRow
from sscard import terminal_auth as ta

__all__ = [
    "FILINGS",
    "PROVINCES",
    "REMOTE_HOLDERS",
    "DemoRemotePersons",
    "demo_remote_filing",
    "demo_remote_holders",
    "demo_remote_province",
    "demo_remote_psn_no",
]

PROVINCES: Final = ("110000", "320000", "330000", "340000", "440000", "510000")
FILINGS: Final[tuple[FilingType | None, ...]] = (
    FilingType.RESETTLED_RETIREE,
    FilingType.LONG_TERM_RESIDENT,
    FilingType.REFERRAL,
    FilingType.EMERGENCY,
    None,
)
REMOTE_HOLDERS: Final = range(19_000, 19_600)
FILED_FROM: Final = dt.date(2019, 1, 1)
# A referral's own validity, around the reference day (a referral runs at most a year).
REFERRAL_BEFORE: Final = dt.timedelta(days=30)
REFERRAL_AFTER: Final = dt.timedelta(days=330)
_ACTIVE_THIRD_GEN: Final = frozenset({0, 1, 2, 3, 4, 9})


def demo_remote_province(h: int) -> str:
    return PROVINCES[(h // 10) % len(PROVINCES)]


def demo_remote_filing(h: int) -> FilingType | None:
    return FILINGS[(h // 60) % len(FILINGS)]


def demo_remote_psn_no(h: int) -> str:
    return f"{demo_remote_province(h)[:2]}{holder_id(h):013d}"


def demo_remote_holders(
    *, province: str | None = None, filing: FilingType | str | None = "any"
) -> list[int]:
    """Remote demo holders with an active third-generation card (demo card ``2 * h``)."""
    return [
        h
        for h in REMOTE_HOLDERS
        if h % 10 in _ACTIVE_THIRD_GEN
        and (province is None or demo_remote_province(h) == province)
        and (filing == "any" or demo_remote_filing(h) == filing)
    ]


def referral_target() -> str:
    """The institution the demo referrals name: demo hospital 0 (terminals 0 and 1)."""
    return ta.demo_institution_code(0)


class DemoRemotePersons:
    """DEMO ONLY part: re-homes the remote demo holders to the hub's provinces."""

    name: Final = "crossprov_persons"

    def __init__(self, *, reference_date: dt.date | None = None) -> None:
        self.reference_date = reference_date

    def is_loaded(self, session: Session) -> bool:
        first = session.scalar(
            select(InsuredPersonRow.psn_no).where(
                InsuredPersonRow.holder_id == holder_id(REMOTE_HOLDERS.start)
            )
        )
        # No such holder (a small test world): nothing to do, so "loaded".
        return first is None or not first.startswith("31")

    def load(self, session: Session, seed: str) -> int:
        del seed  # the hub derives the rest of each person from the seed and the psn_no
        on = self.reference_date or dt.date.today()
        people = session.execute(
            select(InsuredPersonRow.id, InsuredPersonRow.holder_id).where(
                InsuredPersonRow.holder_id.between(
                    holder_id(REMOTE_HOLDERS.start), holder_id(REMOTE_HOLDERS.stop - 1)
                )
            )
        ).all()
        by_holder = {row.holder_id: row.id for row in people}
        moves = []
        filings = []
        now = dt.datetime.now(dt.UTC)
        for h in REMOTE_HOLDERS:
            person_id = by_holder.get(holder_id(h))
            if person_id is None:
                continue
            province = demo_remote_province(h)
            psn_no = demo_remote_psn_no(h)
            moves.append({"pid": person_id, "psn": psn_no, "place": province})
            filing = demo_remote_filing(h)
            if filing is None:
                continue
            referral = filing is FilingType.REFERRAL
            filings.append(
                {
                    "filing_id": f"FDEMO{h:07d}",
                    "psn_no": psn_no,
                    "insuplc_admdvs": province,
                    "filing_type": filing.value,
                    "valid_from": on - REFERRAL_BEFORE if referral else FILED_FROM,
                    "valid_to": on + REFERRAL_AFTER if referral else None,
                    "target_fixmedins_code": referral_target() if referral else None,
                    "registered_by": referral_target(),
                    "created_at": now,
                }
            )
        if not moves:
            return 0
        persons = cast(Table, InsuredPersonRow.__table__)
        insurances = cast(Table, Insurance.__table__)
        session.execute(
            update(persons).where(persons.c.id == bindparam("pid")).values(psn_no=bindparam("psn")),
            moves,
        )
        session.execute(
            update(insurances)
            .where(insurances.c.person_id == bindparam("pid"))
            .values(insuplc_admdvs=bindparam("place")),
            moves,
        )
        if filings:
            session.execute(insert(FilingRow.__table__), filings)  # type: ignore[arg-type]
        return len(moves) + len(filings)
