"""The patients' cards, answering the gateway's challenges as the demo cards do.

A third-generation card signs :func:`sscard.layout.card_auth_message` (the challenge, its
card_sn, the terminal id) with its SM2 key: a real signature with a fresh nonce, checked by
the gateway against the card's certificate. A second-generation card answers with
:func:`sscard.softcard.legacy_cryptogram`, the SM4 MAC under its key diversified from the
issuer master key. Both are what the software cards of :mod:`sscard.softcard` compute for
INTERNAL AUTHENTICATE, with the keys :mod:`sscard.demo` derives from the seed; the suite calls
those functions directly rather than through APDUs, to leave the shared CPU to the gateway.

Card material (key, certificate) is derived on first use and kept per process
(:class:`Wallet`), and so is whether the gateway has stored a card's certificate: the first
authentication of a card from this process sends the certificate, later ones its SM3 only,
as a terminal does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from sscard import demo as sd
from sscard.crypto import SM2PrivateKey, sm2_sign
from sscard.layout import CardSn, card_auth_message
from sscard.softcard import diversify_card_key, legacy_cryptogram

__all__ = ["Card", "Wallet"]

_MAX_CARDS: Final = 50_000  # every demo card fits: the cache is bounded by the world


@dataclass(frozen=True, slots=True)
class Card:
    """One demo card as the suite holds it. ``key`` is the SM2 key (third generation) and
    ``legacy_key`` the diversified SM4 key (second); the other is None."""

    number: int
    generation: int
    card_sn: str
    raw_sn: CardSn
    state: str
    key: SM2PrivateKey | None
    certificate_b64: str | None
    certificate_sm3_hex: str | None
    legacy_key: bytes | None

    def __repr__(self) -> str:  # no key material, no personal data
        return f"Card({self.number}, generation={self.generation}, state={self.state!r})"


class Wallet:
    """Every demo card this process has used, derived on first use from the seed."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self._pki: sd.DemoPki | None = None
        self._master: bytes | None = None
        self._cards: dict[int, Card] = {}
        self._stored: set[int] = set()  # cards whose certificate the gateway has accepted

    def card(self, number: int) -> Card:
        card = self._cards.get(number)
        if card is None:
            if len(self._cards) >= _MAX_CARDS:
                self._cards.clear()  # unreachable with the demo world's 40,000 cards
            card = self._cards[number] = self._derive(number)
        return card

    def _derive(self, number: int) -> Card:
        demo = sd.demo_card(self.seed, number)
        sn = demo.identity.card_sn
        if demo.generation == 3:
            if self._pki is None:
                self._pki = sd.demo_pki(self.seed)
            certificate = sd.demo_card_certificate(self.seed, number, self._pki)
            return Card(
                number=number,
                generation=3,
                card_sn=demo.card_sn,
                raw_sn=sn,
                state=demo.state,
                key=sd.demo_card_key(self.seed, number),
                certificate_b64=base64.b64encode(certificate.der).decode("ascii"),
                certificate_sm3_hex=certificate.fingerprint.hex(),
                legacy_key=None,
            )
        if self._master is None:
            self._master = sd.legacy_master_key(self.seed)
        return Card(
            number=number,
            generation=2,
            card_sn=demo.card_sn,
            raw_sn=sn,
            state=demo.state,
            key=None,
            certificate_b64=None,
            certificate_sm3_hex=None,
            legacy_key=diversify_card_key(self._master, sn),
        )

    def answer(
        self, card: Card, challenge_hex: str, challenge_id: str, terminal_id: str
    ) -> dict[str, Any]:
        """The body of ``POST /v1/card-auth/response``: the card's proof over the challenge."""
        challenge = bytes.fromhex(challenge_hex)
        body: dict[str, Any] = {"challenge_id": challenge_id, "card_sn": card.card_sn}
        if card.generation == 2:
            assert card.legacy_key is not None
            body["cryptogram"] = legacy_cryptogram(card.legacy_key, challenge, card.raw_sn).hex()
            return body
        assert card.key is not None
        message = card_auth_message(challenge, card.raw_sn, terminal_id)
        body["signature"] = sm2_sign(card.key, message).hex()
        if card.number in self._stored:
            body["certificate_sm3"] = card.certificate_sm3_hex
        else:
            body["certificate"] = card.certificate_b64
        return body

    def accepted(self, card: Card) -> None:
        """The gateway accepted this card's certificate: send its SM3 from now on."""
        if card.generation == 3:
            self._stored.add(card.number)
