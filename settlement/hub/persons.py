"""Insured persons of the other provinces, derived on demand (no table to load).

A demo remote ``psn_no`` is the two province digits followed by 13 digits (``32`` + the
Shanghai demo holder id zero-padded to 13 for Jiangsu, …). Any such number in a province the
hub serves names a person, whose birth date, retired flag and opening account balances come
from ``sha256(seed ‖ 0x00 ‖ psn_no)``: the same seed always gives the same people, so a
gateway test can predict them with :func:`derive_person`.

>>> derive_person("s", "320000000000001").psn_no
'320000000000001'
>>> derive_person("s", "3200000000000") is None  # too short
True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from sscard.masking import mask_psn_no

__all__ = ["PSN_NO", "RemotePerson", "derive_person"]

PSN_NO: Final = re.compile(r"[1-9][0-9]{14}")
_FIRST_BIRTH: Final = dt.date(1945, 1, 1)
_BIRTH_SPAN_DAYS: Final = (dt.date(2004, 12, 31) - _FIRST_BIRTH).days + 1
# Born before this: always retired; from _ALWAYS_WORKING on: never; between: by one hash bit.
_ALWAYS_RETIRED_BEFORE: Final = dt.date(1960, 1, 1)
_ALWAYS_WORKING_FROM: Final = dt.date(1970, 1, 1)
_MAX_CURRENT_YEAR_FEN: Final = 300_000  # 3,000 yuan
_MAX_PAST_YEARS_FEN: Final = 2_000_000  # 20,000 yuan


@dataclass(frozen=True, slots=True)
class RemotePerson:
    psn_no: str
    province_prefix: str  # "32"
    birth_date: dt.date
    retired: bool
    opening_current_year_fen: int  # 当年账户 before any settlement at the hub
    opening_past_years_fen: int  # 历年账户

    def __repr__(self) -> str:  # personal data stays masked even in a simulator
        return f"RemotePerson({mask_psn_no(self.psn_no)})"


def derive_person(seed: str, psn_no: str) -> RemotePerson | None:
    """The person ``psn_no`` names, or None when it is not a 15-digit psn_no. Whether the
    province is served is the caller's question (the hub knows its provinces)."""
    if not isinstance(psn_no, str) or not PSN_NO.fullmatch(psn_no):
        return None
    digest = hashlib.sha256(seed.encode() + b"\x00" + psn_no.encode()).digest()
    birth_date = _FIRST_BIRTH + dt.timedelta(
        days=int.from_bytes(digest[0:4], "big") % _BIRTH_SPAN_DAYS
    )
    if birth_date < _ALWAYS_RETIRED_BEFORE:
        retired = True
    elif birth_date >= _ALWAYS_WORKING_FROM:
        retired = False
    else:
        retired = bool(digest[4] & 1)
    return RemotePerson(
        psn_no=psn_no,
        province_prefix=psn_no[:2],
        birth_date=birth_date,
        retired=retired,
        opening_current_year_fen=int.from_bytes(digest[5:9], "big") % (_MAX_CURRENT_YEAR_FEN + 1),
        opening_past_years_fen=int.from_bytes(digest[9:13], "big") % (_MAX_PAST_YEARS_FEN + 1),
    )
