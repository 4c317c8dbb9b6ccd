"""The card's side of card authentication: what to ask the gateway for, and what to answer.

The flow (docs/CONTRACTS.md, "Card authentication"); :meth:`GatewayClient.authenticate_card
<terminal_sdk.client.GatewayClient.authenticate_card>` runs it, HTTP included::

    card = SocialSecurityCard.connect(reader)
    ask = challenge_request(card)                      # {"card_sn", "generation"}
    granted = POST /v1/card-auth/challenge (ask)       # {"challenge_id", "challenge" (hex), ...}
    proof = prove(card, bytes.fromhex(granted["challenge"]), terminal_id)
    POST /v1/card-auth/response (proof.to_request(granted["challenge_id"]))

Wire encodings (the gateway's request model): card_sn, signature, cryptogram and
certificate_sm3 in hex; the certificate as standard base64 of its DER. A third-generation card
sends its certificate the first time, and only its SM3 afterwards when the caller says the
gateway has it (``certificate_known=True``): 500-odd bytes less per visit.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sscard.crypto import sm3
from terminal_sdk.card import SocialSecurityCard

__all__ = ["CardAuthProof", "challenge_request", "prove"]


@dataclass(frozen=True, slots=True, repr=False)
class CardAuthProof:
    """A card's answer to one challenge: an SM2 signature and the certificate (generation 3),
    or a cryptogram (generation 2). Nothing here is personal data or a secret."""

    card_sn: str
    generation: int
    signature: bytes | None = None
    certificate_der: bytes | None = None
    cryptogram: bytes | None = None

    def __post_init__(self) -> None:
        third = (self.signature, self.certificate_der)
        if self.generation == 3:
            if None in third or self.cryptogram is not None:
                raise ValueError("generation 3 proves with a signature and a certificate")
        elif self.cryptogram is None or third != (None, None):
            raise ValueError("generation 2 proves with a cryptogram alone")

    @property
    def certificate_sm3(self) -> bytes | None:
        return None if self.certificate_der is None else sm3(self.certificate_der)

    def to_request(self, challenge_id: str, *, certificate_known: bool = False) -> dict[str, str]:
        """The body of ``POST /v1/card-auth/response``."""
        body = {"challenge_id": challenge_id, "card_sn": self.card_sn}
        if self.generation == 3:
            assert self.signature is not None
            assert self.certificate_der is not None
            body["signature"] = self.signature.hex()
            if certificate_known:
                body["certificate_sm3"] = sm3(self.certificate_der).hex()
            else:
                body["certificate"] = base64.b64encode(self.certificate_der).decode("ascii")
        else:
            assert self.cryptogram is not None
            body["cryptogram"] = self.cryptogram.hex()
        return body

    def __repr__(self) -> str:
        kind = "signature" if self.generation == 3 else "cryptogram"
        return f"CardAuthProof(card_sn={self.card_sn}, generation={self.generation}, {kind})"


def challenge_request(card: SocialSecurityCard) -> dict[str, str | int]:
    """The body of ``POST /v1/card-auth/challenge``: the card_sn and generation (from EF05)."""
    issuer = card.read_issuer_data()
    return {"card_sn": issuer.card_sn.hex, "generation": 3 if issuer.generation == 3 else 2}


def prove(card: SocialSecurityCard, challenge: bytes, terminal_id: str) -> CardAuthProof:
    """Have the card answer the gateway's ``challenge`` (16 bytes for generation 3, 8 for 2).

    Generation 3 also reads the certificate (EF 0018), which :meth:`CardAuthProof.to_request`
    sends or replaces by its SM3. ``terminal_id`` is the id the terminal signs its requests
    with: the card's signature binds it, so the proof is worthless to any other terminal.
    """
    issuer = card.read_issuer_data()
    if issuer.generation == 3:
        signature = card.internal_authenticate(challenge, terminal_id)
        certificate = card.read_certificate()
        return CardAuthProof(
            issuer.card_sn.hex, 3, signature=signature, certificate_der=certificate
        )
    return CardAuthProof(issuer.card_sn.hex, 2, cryptogram=card.legacy_cryptogram(challenge))
