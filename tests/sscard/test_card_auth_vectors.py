"""The test vectors of docs/card-authentication.md, checked against the code that defines
each byte: the page is read here, so a vector that drifts from the code fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sscard import apdu
from sscard.crypto import (
    DEFAULT_SIGNER_ID,
    SignatureInvalid,
    SM2PrivateKey,
    SM2PublicKey,
    pad_iso9797_m2,
    sm2_digest,
    sm2_verify,
    sm2_z,
    sm3,
    sm4_cbc_encrypt,
)
from sscard.layout import CardAuthMessage, CardSn, card_auth_message, legacy_auth_input
from sscard.softcard import diversify_card_key, legacy_cryptogram
from sscard.terminal_auth import canonical_request_v2, hmac_sm3, signed_headers

PAGE = Path(__file__).resolve().parents[2] / "docs" / "card-authentication.md"


def _vectors(name: str) -> dict[str, str]:
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"```vectors {name}\n(.*?)```", text, re.DOTALL)
    assert match is not None, f"no `vectors {name}` block in {PAGE.name}"
    pairs = (line.split(":", 1) for line in match.group(1).splitlines() if line.strip())
    return {key.strip(): value.strip() for key, value in pairs}


def _hex(vectors: dict[str, str], key: str) -> bytes:
    return bytes.fromhex(vectors[key])


def test_gen3_message_bytes_are_the_codes() -> None:
    v = _vectors("gen3")
    message = card_auth_message(_hex(v, "challenge"), _hex(v, "card_sn"), v["terminal_id"])
    assert message == _hex(v, "message")
    assert len(message) == 47 + len(v["terminal_id"])
    parsed = CardAuthMessage.from_bytes(message)
    assert parsed.terminal_id == v["terminal_id"]
    assert parsed.card_sn == CardSn(_hex(v, "card_sn"))


def test_gen3_key_z_e_and_signature() -> None:
    v = _vectors("gen3")
    private = SM2PrivateKey.from_bytes(_hex(v, "private_key"))
    assert private.to_bytes() == sm3(b"SSC card-auth test vector key")
    public = SM2PublicKey.from_bytes(_hex(v, "public_key"))
    assert private.public_key == public
    assert _hex(v, "signer_id") == DEFAULT_SIGNER_ID
    assert sm2_z(public) == _hex(v, "z")
    message = _hex(v, "message")
    assert sm2_digest(public, message, DEFAULT_SIGNER_ID) == _hex(v, "e")
    sm2_verify(public, message, _hex(v, "signature"))


def test_gen3_signature_is_bound_to_every_field() -> None:
    v = _vectors("gen3")
    public = SM2PublicKey.from_bytes(_hex(v, "public_key"))
    signature = _hex(v, "signature")
    challenge, card_sn = _hex(v, "challenge"), _hex(v, "card_sn")
    others = (
        card_auth_message(bytes(16), card_sn, v["terminal_id"]),
        card_auth_message(challenge, bytes.fromhex("310000D1560000050123456789ABCDEF"), "T"),
        card_auth_message(challenge, card_sn, "H31000000001-02"),
    )
    for other in others:
        with pytest.raises(SignatureInvalid):
            sm2_verify(public, other, signature)


def test_gen2_diversified_key_mac_and_apdu() -> None:
    v = _vectors("gen2")
    card_sn, challenge = _hex(v, "card_sn"), _hex(v, "challenge")
    card_key = diversify_card_key(_hex(v, "master_key"), card_sn)
    assert card_key == _hex(v, "card_key")
    mac_input = legacy_auth_input(challenge, card_sn)
    assert mac_input == _hex(v, "mac_input")
    assert pad_iso9797_m2(mac_input) == _hex(v, "padded")
    cbc = sm4_cbc_encrypt(card_key, bytes(16), _hex(v, "padded"))
    assert cbc == _hex(v, "cbc")
    assert legacy_cryptogram(card_key, challenge, card_sn) == _hex(v, "cryptogram")
    assert cbc[-16:][:8] == _hex(v, "cryptogram")
    assert apdu.internal_authenticate(challenge).to_bytes() == _hex(v, "apdu")


def test_request_signature_v2() -> None:
    v = _vectors("request-v2")
    body = _hex(v, "body")
    canonical = canonical_request_v2(
        v["method"],
        v["path"],
        int(v["timestamp"]),
        v["nonce"],
        body,
        terminal_id=v["terminal_id"],
        card_session=v["card_session"],
        idempotency_key=v["idempotency_key"],
    )
    assert canonical == _hex(v, "canonical")
    assert hmac_sm3(_hex(v, "secret"), canonical).hex() == v["signature"]
    headers = signed_headers(
        _hex(v, "secret"),
        v["terminal_id"],
        v["method"],
        v["path"],
        body,
        timestamp=int(v["timestamp"]),
        nonce=v["nonce"],
        card_session=v["card_session"],
        idempotency_key=v["idempotency_key"],
    )
    assert headers["X-Signature"] == v["signature"]
    assert headers["X-Signature-Version"] == "2"
