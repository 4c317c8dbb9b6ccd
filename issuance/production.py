"""Card personalisation: a NEW SM2 key pair and certificate for every card made.

The private key goes to the :class:`Personaliser` (in production: the card bureau's HSM that
writes the chip) and is never stored by issuance; the registry keeps only the certificate's SM3
fingerprint (``cards.cert_sm3``) so that card authentication accepts this certificate and no
other for the card.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Protocol

from sscard import demo as sscard_demo
from sscard.certs import Certificate, build_card_certificate, fingerprint_sm3
from sscard.crypto import SM2PrivateKey
from sscard.layout import RID, CardSn

__all__ = [
    "CARD_VALIDITY_YEARS",
    "InMemoryPersonaliser",
    "IssuingCa",
    "PersonalisedCard",
    "Personaliser",
    "demo_issuing_ca",
    "new_card_sn",
    "personalise",
]

CARD_VALIDITY_YEARS: Final = 10
SHANGHAI_AREA: Final = "310000"
# First unique byte of cards made by this service (the demo world uses 0x02 / 0x03).
_SERIES: Final = 0xA3
_ORGANIZATION: Final = "Shanghai SSC"


@dataclass(frozen=True, slots=True)
class IssuingCa:
    certificate: Certificate
    key: SM2PrivateKey


# Keyed by the demo_seed setting: one entry in a serving process; bounded for processes that
# build demo worlds of several seeds (tests), which rebuild an evicted CA.
_DEMO_CAS_MAX: Final = 8


@functools.lru_cache(maxsize=_DEMO_CAS_MAX)
def demo_issuing_ca(seed: str) -> IssuingCa:
    """DEMO ONLY: the demo PKI's issuing CA, which card authentication pins in the demo world."""
    pki = sscard_demo.demo_pki(seed)
    return IssuingCa(pki.issuing, pki.issuing_key)


@dataclass(frozen=True, slots=True)
class PersonalisedCard:
    card_sn: str
    card_no: str
    key: SM2PrivateKey
    certificate: Certificate
    expires_on: dt.date

    @property
    def cert_sm3(self) -> str:
        return fingerprint_sm3(self.certificate.der).hex()

    def __repr__(self) -> str:  # never the key
        return f"PersonalisedCard(card_sn={self.card_sn[-6:]}…)"


class Personaliser(Protocol):
    def write(self, card: PersonalisedCard) -> None:
        """Hand the key and certificate to whatever writes the chip."""
        ...


class InMemoryPersonaliser:
    """Keeps the last ``limit`` personalised cards (tests, the demo world): a test can build a
    software card from them and authenticate with the new card."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.cards: OrderedDict[str, PersonalisedCard] = OrderedDict()

    def write(self, card: PersonalisedCard) -> None:
        self.cards[card.card_sn] = card
        while len(self.cards) > self.limit:
            self.cards.popitem(last=False)


def new_card_sn(application_id: int) -> str:
    unique = bytes([_SERIES]) + application_id.to_bytes(7, "big")
    return CardSn(bytes.fromhex(SHANGHAI_AREA) + RID + unique).hex


def card_no(application_id: int) -> str:
    return f"N{application_id % 100_000_000:08d}"


def personalise(application_id: int, ca: IssuingCa, now: dt.datetime) -> PersonalisedCard:
    """A new key pair and a certificate for the card of ``application_id``."""
    key = SM2PrivateKey.generate()
    sn, number = new_card_sn(application_id), card_no(application_id)
    start = now.replace(microsecond=0)
    until = start.replace(year=start.year + CARD_VALIDITY_YEARS, day=min(start.day, 28))
    certificate = build_card_certificate(
        key.public_key,
        card_sn=sn,
        common_name=number,
        organization=_ORGANIZATION,
        issuer=ca.certificate,
        issuer_key=ca.key,
        not_before=start,
        not_after=until,
    )
    return PersonalisedCard(sn, number, key, certificate, until.date())
