"""Helpers for the card-authentication tests: software cards from the demo world, driven by
APDUs exactly as a terminal drives a real card, and a terminal-side client of the two routes.
(A uniquely named module: every test directory has its own conftest.)"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import Any

from gateway_testkit import Signer
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from gateway.card_auth.demo_cards import demo_card_rows, demo_holder_row
from gateway.card_auth.tables import CardCertificate, CardChallenge
from issuance.store import Card, Cardholder, metadata
from sscard import demo as sd
from sscard.apdu import (
    CommandApdu,
    ResponseApdu,
    check_sw,
    internal_authenticate,
    read_binary,
    select_aid,
    select_file,
)
from sscard.certs import fingerprint_sm3
from sscard.layout import (
    CERT_ADF_AID,
    EF_SIGN_CERT_FID,
    PKI_AID,
    SSSE_AID,
    card_auth_message,
)
from sscard.softcard import LegacyCard, SoftCard, make_legacy_card, make_third_gen_card

SEED = sd.DEFAULT_DEMO_SEED
# Demo holders 0..19 (cards 0..39): every registry state of sscard.demo occurs among them.
HOLDERS = 20

# Demo card numbers by what they are at the gateway's fixed clock (2027-01-15).
NEW_ACTIVE = 0  # holder 0, third generation, active
LEGACY_SUPERSEDED = 1  # holder 0's legacy card, voided by card 0
NEW_NOT_ACTIVATED = 10  # holder 5: delivered, not activated
LEGACY_ACTIVE = 11  # holder 5's legacy card, still active
NEW_LOST = 12  # holder 6
NEW_EXPIRED = 14  # holder 7: expired 2026-01-04 (registry and certificate)
NEW_UNKNOWN = 16  # holder 8: never registered (its certificate is genuine)
LEGACY_LOST = 19  # holder 9


def load_registry(engine: Engine, holders: int = HOLDERS) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            insert(metadata.tables[Cardholder.__tablename__]),
            [demo_holder_row(SEED, h) for h in range(holders)],
        )
        session.execute(
            insert(metadata.tables[Card.__tablename__]), demo_card_rows(range(2 * holders))
        )


@functools.cache
def demo_pki() -> sd.DemoPki:
    return sd.demo_pki(SEED)


@functools.cache
def certificate_der(m: int) -> bytes:
    return sd.demo_card_certificate(SEED, m, demo_pki()).der


def soft_card(m: int) -> SoftCard:
    card = sd.demo_card(SEED, m)
    if card.generation == 3:
        return make_third_gen_card(
            card.identity, sd.demo_card_key(SEED, m), certificate_der(m), sd.DEMO_PIN
        )
    return make_legacy_card(card.identity, sd.legacy_master_key(SEED), sd.DEMO_PIN)


def transmit(card: SoftCard, command: CommandApdu) -> bytes:
    response = ResponseApdu.from_bytes(card.transmit(command.to_bytes()))
    check_sw(response.sw)
    return response.data


def read_certificate(card: SoftCard) -> bytes:
    """SELECT PKI, SELECT SS.CERT.ADF1, SELECT EF 0018, READ BINARY in 256-byte pieces."""
    transmit(card, select_aid(PKI_AID))
    transmit(card, select_aid(CERT_ADF_AID))
    transmit(card, select_file(EF_SIGN_CERT_FID))
    der = b""
    while True:
        response = ResponseApdu.from_bytes(card.transmit(read_binary(len(der), 0).to_bytes()))
        if response.sw == 0x6B00:  # offset past the end: the file is read
            break
        check_sw(response.sw)
        der += response.data
        if len(response.data) < 256:
            break
    return der


def sign_challenge(card: SoftCard, challenge: bytes, terminal_id: str) -> bytes:
    """INTERNAL AUTHENTICATE over card_auth_message, in SS.CERT.ADF1 (after read_certificate)."""
    message = card_auth_message(challenge, card.card_sn, terminal_id)
    return transmit(card, internal_authenticate(message))


def legacy_cryptogram(card: LegacyCard, challenge: bytes) -> bytes:
    transmit(card, select_aid(SSSE_AID))
    return transmit(card, internal_authenticate(challenge))


@dataclass
class CardTerminal:
    """What a terminal does: ask for a challenge, let the card answer, send the answer."""

    signer: Signer

    async def challenge(self, card_sn: str, generation: int) -> Any:
        return await self.signer.post(
            "/v1/card-auth/challenge", {"card_sn": card_sn, "generation": generation}
        )

    async def granted_challenge(self, card_sn: str, generation: int) -> dict[str, Any]:
        response = await self.challenge(card_sn, generation)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    def answer(
        self,
        card: SoftCard,
        granted: dict[str, Any],
        *,
        terminal_id: str | None = None,
        hash_only: bool = False,
    ) -> dict[str, Any]:
        """The JSON body for /response, computed by the card itself via APDUs."""
        challenge = bytes.fromhex(granted["challenge"])
        body: dict[str, Any] = {
            "challenge_id": granted["challenge_id"],
            "card_sn": card.card_sn.hex,
        }
        if isinstance(card, LegacyCard):
            body["cryptogram"] = legacy_cryptogram(card, challenge).hex()
            return body
        der = read_certificate(card)
        signature = sign_challenge(card, challenge, terminal_id or self.signer.terminal_id)
        body["signature"] = signature.hex()
        if hash_only:
            body["certificate_sm3"] = fingerprint_sm3(der).hex()
        else:
            body["certificate"] = base64.b64encode(der).decode()
        return body

    async def respond(self, body: dict[str, Any]) -> Any:
        return await self.signer.post("/v1/card-auth/response", body)

    async def authenticate(self, m: int, **answer: Any) -> Any:
        card = soft_card(m)
        granted = await self.granted_challenge(card.card_sn.hex, sd.demo_card(SEED, m).generation)
        return await self.respond(self.answer(card, granted, **answer))


def stored(engine: Engine) -> dict[str, int]:
    """What card authentication has written: challenges (all / used) and certificates."""
    with Session(engine) as session:

        def count(*where: Any) -> int:
            query = select(func.count()).select_from(CardChallenge)
            return session.execute(query.where(*where)).scalar_one()

        return {
            "challenges": count(),
            "used": count(CardChallenge.used_at_ms.is_not(None)),
            "certificates": session.execute(
                select(func.count()).select_from(CardCertificate)
            ).scalar_one(),
        }
