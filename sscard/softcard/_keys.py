"""Key material formats the card and the back end must agree on (project profile).

These are pure functions the gateway's key manager needs as well as the software card. They
live here until the lead moves them to a shared module (``sscard.keys`` or ``sscard.layout``);
both sides must import them from one place, never re-implement them.
"""

from __future__ import annotations

from typing import Final

from sscard.crypto import SM2PublicKey, sm4_ecb_encrypt, sm4_mac
from sscard.layout import CardSn, legacy_auth_input
from sscard.tlv import TlvDecodeError, encode_tlv, parse_exactly_one

#: Length of the second-generation card's INTERNAL AUTHENTICATE answer.
LEGACY_CRYPTOGRAM_LEN: Final = 8
#: ISO/IEC 7816-8 data object "public key, EC point" used for EF 0012.
SIGN_PUBLIC_KEY_TAG: Final = 0x86
_SM4_KEY_LEN: Final = 16
_COORDINATES_LEN: Final = 64


def diversify_card_key(master_key: bytes, card_sn: bytes | CardSn) -> bytes:
    """A second-generation card's own SM4 key, derived from the issuer master key (16 bytes).

    Scheme (project profile): ``card_key = SM4_ECB(master_key, card_sn)``, card_sn being the 16
    bytes of EF05 record 01 (area code ‖ RID ‖ card-unique part). card_sn is exactly one SM4
    block and SM4 is a permutation, so two cards never share a key; this replaces the 3DES-era
    ``E(D) ‖ E(~D)`` construction, which only existed to stretch an 8-byte block to a 16-byte
    key. The issuer's HSM (or the gateway's key manager) derives the same key from card_sn.

    >>> diversify_card_key(bytes(16), bytes.fromhex("310000D1560000050123456789ABCDEF")).hex()
    'aa35bfa4b5f4d9ad9b003a81d9a69ac2'
    """
    if len(master_key) != _SM4_KEY_LEN:
        raise ValueError(f"SM4 master key must be {_SM4_KEY_LEN} bytes, got {len(master_key)}")
    sn = card_sn if isinstance(card_sn, CardSn) else CardSn(bytes(card_sn))
    return sm4_ecb_encrypt(master_key, sn.raw)


def legacy_cryptogram(card_key: bytes, challenge: bytes, card_sn: bytes | CardSn) -> bytes:
    """What a second-generation card answers to INTERNAL AUTHENTICATE with ``challenge``.

    ``SM4-MAC(card_key, legacy_auth_input(challenge, card_sn))``, the PBOC MAC (ISO 9797-1
    algorithm 1, padding method 2, zero IV), keeping the leading
    :data:`LEGACY_CRYPTOGRAM_LEN` (8) bytes: twice the 4 bytes of a transaction MAC, because
    this answer alone authenticates the card. ``challenge`` is 8 bytes.
    """
    return sm4_mac(card_key, legacy_auth_input(challenge, card_sn), mac_len=LEGACY_CRYPTOGRAM_LEN)


def encode_sign_public_key_file(public_key: SM2PublicKey) -> bytes:
    """EF 0012's 66 bytes: ``86 40 ‖ X(32) ‖ Y(32)`` (project profile).

    DOMAIN §2 gives the file's size (66 bytes) but not its format; a BER-TLV with the ISO/IEC
    7816-8 tag 86 over the affine coordinates is the reading that fits 66 bytes exactly.
    """
    point = public_key.to_bytes()
    assert len(point) == 1 + _COORDINATES_LEN
    assert point[0] == 0x04  # uncompressed
    encoded = encode_tlv(SIGN_PUBLIC_KEY_TAG, point[1:])
    assert len(encoded) == 66
    return encoded


def decode_sign_public_key_file(data: bytes) -> SM2PublicKey:
    """Inverse of :func:`encode_sign_public_key_file`; ValueError if malformed or off the curve."""
    try:
        tlv = parse_exactly_one(bytes(data))
    except TlvDecodeError as exc:
        raise ValueError(f"EF 0012 is not one BER-TLV: {exc}") from exc
    if tlv.tag != SIGN_PUBLIC_KEY_TAG or len(tlv.value) != _COORDINATES_LEN:
        raise ValueError("EF 0012 must be tag 86 with 64 bytes X || Y")
    return SM2PublicKey.from_bytes(b"\x04" + tlv.value)
