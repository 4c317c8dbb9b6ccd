"""Who the Locust users are: demo terminals and the demo patients who come to them.

Everything follows from the demo seed, exactly as the gateway's demo world does, so the
suite needs no file from the gateway (DESIGN §3: loadtest speaks to it over HTTP only):

- terminals (:mod:`sscard.terminal_auth`'s DEMO section): institution ``i`` < 400 is a
  hospital, the rest pharmacies; terminal ``n`` belongs to institution ``n // 2`` and its
  secret is HMAC-SM3(seed, "terminal-secret:" + id). A hospital's level follows
  :func:`hospital_level`, the rule ``gateway/demo.py`` loads (six in ten level 1, three
  level 2, one level 3);
- cards (:mod:`sscard.demo`): demo card ``m`` belongs to holder ``h = m // 2``, even ``m``
  third generation, odd ``m`` legacy, and ``h % 10`` decides the registry states;
- persons insured in another province (``gateway/crossprov/demo.py``): holders 19,000-19,599,
  province ``PROVINCES[(h // 10) % 6]``, filing ``FILINGS[(h // 60) % 5]``.

Those rules are repeated here rather than imported (loadtest must not import ``gateway``);
tests/loadtest/test_locust_world.py checks them against the gateway's own modules.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sscard import demo as sd
from sscard import terminal_auth as ta

__all__ = [
    "FILED_EVERYWHERE",
    "HOSPITAL_LEVELS",
    "REMOTE_HOLDERS",
    "Patients",
    "RemotePatient",
    "Terminal",
    "hospital_level",
    "hospitals_of_level",
    "institution_index",
    "institution_terminal",
    "pick_terminal",
    "remote_filing",
    "remote_province",
]

HOSPITAL_LEVELS: Final = (1, 1, 1, 1, 1, 1, 2, 2, 2, 3)  # by institution index % 10
REMOTE_HOLDERS: Final = range(19_000, 19_600)
PROVINCES: Final = ("110000", "320000", "330000", "340000", "440000", "510000")
FILINGS: Final = ("resettled_retiree", "long_term_resident", "referral", "emergency", None)
#: Filings valid at any institution (a referral names one hospital: demo hospital 0).
FILED_EVERYWHERE: Final = frozenset({"resettled_retiree", "long_term_resident", "emergency"})
REFERRAL_HOSPITAL: Final = 0
# sscard.demo's table: h % 10 → (third-generation state, legacy state).
_THIRD_GEN_ACTIVE: Final = frozenset({0, 1, 2, 3, 4, 9})
_LEGACY_ACTIVE: Final = frozenset({5, 8})
_STATES: Final = {
    (3, "lost"): frozenset({6}),
    (2, "superseded"): frozenset({0, 1, 2, 3, 4, 6, 7}),
    (2, "lost"): frozenset({9}),
}


def hospital_level(index: int) -> int:
    """Level (1-3) of demo hospital ``index`` (0..399)."""
    if not 0 <= index < ta.DEMO_HOSPITAL_COUNT:
        raise ValueError(f"demo hospital index out of range: {index}")
    return HOSPITAL_LEVELS[index % len(HOSPITAL_LEVELS)]


def hospitals_of_level(level: int) -> list[int]:
    return [i for i in range(ta.DEMO_HOSPITAL_COUNT) if hospital_level(i) == level]


def remote_province(h: int) -> str:
    return PROVINCES[(h // 10) % len(PROVINCES)]


def remote_filing(h: int) -> str | None:
    return FILINGS[(h // 60) % len(FILINGS)]


@dataclass(frozen=True, slots=True)
class Terminal:
    """A demo terminal as a user acts as it: id, secret, institution and what it is."""

    number: int
    terminal_id: str
    secret: bytes
    institution_index: int
    institution_code: str
    kind: str  # "hospital" | "pharmacy"
    level: int | None  # hospitals only

    def __repr__(self) -> str:  # never the secret
        return f"Terminal({self.terminal_id}, {self.kind}, level={self.level})"


def institution_index(code: str) -> int:
    """The index of a demo institution code (the inverse of
    :func:`sscard.terminal_auth.demo_institution_code`).

    >>> institution_index("H31000000001"), institution_index("P31000000800")
    (0, 1199)
    """
    prefix, region, number = code[:1], code[1:7], code[7:]
    if region != "310000" or not number.isdigit() or len(number) != 5:
        raise ValueError(f"not a demo institution code: {code!r}")
    offset = {"H": 0, "P": ta.DEMO_HOSPITAL_COUNT}.get(prefix)
    if offset is None:
        raise ValueError(f"not a demo institution code: {code!r}")
    index = offset + int(number) - 1
    count = ta.DEMO_HOSPITAL_COUNT if prefix == "H" else ta.DEMO_PHARMACY_COUNT
    if not offset <= index < offset + count:
        raise ValueError(f"not a demo institution code: {code!r}")
    assert ta.demo_institution_code(index) == code
    return index


def institution_terminal(seed: str, index: int, k: int = 0) -> Terminal:
    """Terminal ``k`` (0 or 1) of demo institution ``index``."""
    number = index * ta.DEMO_TERMINALS_PER_INSTITUTION + k
    terminal_id, secret = ta.demo_terminal(seed, number)
    hospital = index < ta.DEMO_HOSPITAL_COUNT
    return Terminal(
        number=number,
        terminal_id=terminal_id,
        secret=secret,
        institution_index=index,
        institution_code=ta.demo_institution_code(index),
        kind="hospital" if hospital else "pharmacy",
        level=hospital_level(index) if hospital else None,
    )


def pick_terminal(
    seed: str,
    kind: str,
    level: int | None,
    rng: random.Random,
    *,
    hospitals: int = ta.DEMO_HOSPITAL_COUNT,
    pharmacies: int = ta.DEMO_PHARMACY_COUNT,
) -> Terminal:
    """A terminal of a random institution of that kind and level, among the first
    ``hospitals`` hospitals or ``pharmacies`` pharmacies (a level none of those has: any of
    them). Two users may draw the same terminal, as two clerks may share a till: the gateway
    and the books do not mind."""
    if not (1 <= hospitals <= ta.DEMO_HOSPITAL_COUNT and 1 <= pharmacies <= ta.DEMO_PHARMACY_COUNT):
        raise ValueError("hospitals 1-400 and pharmacies 1-800")
    if kind == "hospital":
        if level is None:
            raise ValueError("a hospital terminal needs a level")
        candidates = [i for i in hospitals_of_level(level) if i < hospitals]
        institution = rng.choice(candidates) if candidates else rng.randrange(hospitals)
    elif kind == "pharmacy":
        institution = ta.DEMO_HOSPITAL_COUNT + rng.randrange(pharmacies)
    else:
        raise ValueError(f"unknown terminal kind {kind!r}")
    return institution_terminal(seed, institution, rng.randrange(ta.DEMO_TERMINALS_PER_INSTITUTION))


@dataclass(frozen=True, slots=True)
class RemotePatient:
    holder: int
    province: str
    filing: str | None

    @property
    def card(self) -> int:
        return 2 * self.holder  # the active third-generation card


class Patients:
    """The demo patients a terminal may see, by what their card is; holders insured in
    another province are kept apart (they settle through the hub)."""

    def __init__(self) -> None:
        local = [h for h in range(sd.DEMO_HOLDER_COUNT) if h not in REMOTE_HOLDERS]
        self.third_gen: Sequence[int] = [2 * h for h in local if h % 10 in _THIRD_GEN_ACTIVE]
        self.legacy: Sequence[int] = [2 * h + 1 for h in local if h % 10 in _LEGACY_ACTIVE]
        self.refused: dict[tuple[int, str], Sequence[int]] = {
            (generation, state): [
                2 * h + (0 if generation == 3 else 1) for h in local if h % 10 in residues
            ]
            for (generation, state), residues in _STATES.items()
        }
        self.remote: Sequence[RemotePatient] = [
            RemotePatient(h, remote_province(h), remote_filing(h))
            for h in REMOTE_HOLDERS
            if h % 10 in _THIRD_GEN_ACTIVE
        ]

    def remote_for(self, terminal: Terminal, visit_type: str) -> list[RemotePatient]:
        """Remote patients who can settle ``visit_type`` at ``terminal``: a filing valid
        there, or (for an emergency) none needed."""
        out = []
        for patient in self.remote:
            filing = patient.filing
            referred_here = filing == "referral" and terminal.institution_index == REFERRAL_HOSPITAL
            if filing in FILED_EVERYWHERE or visit_type == "emergency" or referred_here:
                out.append(patient)
        return out
