"""The card's side of card authentication: request bodies as the gateway's contract wants them."""

from __future__ import annotations

import base64

import pytest
from sdk_testkit import (
    CARD_SN,
    LEGACY_SN,
    MASTER_KEY,
    NOW,
    TERMINAL_ID,
    Pki,
    legacy_card,
    third_gen_card,
)

from sscard.certs import load_der, verify_chain
from sscard.crypto import sm2_verify, sm3
from sscard.layout import CardSn, card_auth_message
from sscard.softcard import diversify_card_key, legacy_cryptogram
from terminal_sdk import (
    CardAuthProof,
    MemoryReader,
    SocialSecurityCard,
    challenge_request,
    prove,
)

CHALLENGE16 = bytes(range(16))
CHALLENGE8 = bytes(range(8))


def test_third_gen_proof_and_request_bodies(reader: MemoryReader, pki: Pki) -> None:
    reader.insert(third_gen_card(pki))
    card = SocialSecurityCard.connect(reader)
    assert challenge_request(card) == {"card_sn": CARD_SN, "generation": 3}

    proof = prove(card, CHALLENGE16, TERMINAL_ID)
    body = proof.to_request("c" * 16)
    assert set(body) == {"challenge_id", "card_sn", "signature", "certificate"}
    assert len(body["signature"]) == 128
    der = base64.b64decode(body["certificate"], validate=True)
    verified = verify_chain(load_der(der), [pki.ca], pki.root, at=NOW)
    message = card_auth_message(CHALLENGE16, CardSn.from_hex(body["card_sn"]), TERMINAL_ID)
    sm2_verify(verified.public_key, message, bytes.fromhex(body["signature"]))

    known = proof.to_request("c" * 16, certificate_known=True)
    assert set(known) == {"challenge_id", "card_sn", "signature", "certificate_sm3"}
    assert known["certificate_sm3"] == sm3(der).hex()
    assert proof.certificate_sm3 == sm3(der)
    assert repr(proof) == f"CardAuthProof(card_sn={CARD_SN}, generation=3, signature)"


def test_legacy_proof(reader: MemoryReader) -> None:
    reader.insert(legacy_card())
    card = SocialSecurityCard.connect(reader)
    assert challenge_request(card) == {"card_sn": LEGACY_SN, "generation": 2}
    proof = prove(card, CHALLENGE8, TERMINAL_ID)
    assert proof.certificate_sm3 is None
    body = proof.to_request("c" * 16)
    assert set(body) == {"challenge_id", "card_sn", "cryptogram"}
    sn = CardSn.from_hex(LEGACY_SN)
    expected = legacy_cryptogram(diversify_card_key(MASTER_KEY, sn), CHALLENGE8, sn)
    assert body["cryptogram"] == expected.hex()


def test_proof_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="signature and a certificate"):
        CardAuthProof(CARD_SN, 3, cryptogram=bytes(8))
    with pytest.raises(ValueError, match="signature and a certificate"):
        CardAuthProof(CARD_SN, 3, signature=bytes(64))
    with pytest.raises(ValueError, match="cryptogram alone"):
        CardAuthProof(LEGACY_SN, 2, cryptogram=bytes(8), signature=bytes(64))
    with pytest.raises(ValueError, match="cryptogram alone"):
        CardAuthProof(LEGACY_SN, 2)


def test_card_data_is_read_again_after_a_reconnect(reader: MemoryReader, pki: Pki) -> None:
    reader.insert(third_gen_card(pki))
    card = SocialSecurityCard.connect(reader)
    assert challenge_request(card)["generation"] == 3
    reader.disconnect()
    reader.remove()
    reader.insert(legacy_card())
    reader.connect()
    assert challenge_request(card) == {"card_sn": LEGACY_SN, "generation": 2}
