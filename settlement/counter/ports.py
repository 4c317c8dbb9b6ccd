"""What the counter's use cases need from outside settlement, passed in rather than imported.

Settlement never imports issuance (the card registry) nor the gateway (terminals, nonces, the
clock): the gateway builds these from its own parts and hands them to each use case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

__all__ = ["AtCounter", "CardCheck", "Counter", "NonceClaim"]


@dataclass(frozen=True, slots=True)
class Counter:
    """The institution at the counter (定点医药机构): its national code, its kind (``hospital``,
    ``pharmacy``, or an issuing kind, which settles nothing) and a hospital's level (1-3;
    None for the other kinds). The gateway knows them from the terminal directory."""

    fixmedins_code: str
    kind: str
    level: int | None


# Raises the registry's typed error (CARD_LOST, CARD_SUPERSEDED, ...) unless the card behind
# the card session may be used on this Beijing day. Called inside the unit, before money moves:
# the card session proves the card was usable when it authenticated, up to a few minutes ago;
# a loss report (挂失) since then must block the payment at once. One primary-key read.
CardCheck = Callable[[Session, dt.date], object]


@dataclass(frozen=True, slots=True)
class AtCounter:
    """Who is at which counter: the institution, and the cardholder its card session names,
    with the re-check of that card."""

    counter: Counter
    holder_id: int
    card_check: CardCheck


class NonceClaim(Protocol):
    """The request's one-time nonce, claimed first in the unit that does the work, so a
    replayed request stops before anything else and one request costs one transaction."""

    def claim(self, session: Session) -> None: ...
