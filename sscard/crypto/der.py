"""Strict DER for the one ASN.1 structure signatures need: ``Ecdsa-Sig-Value``.

``SEQUENCE { r INTEGER, s INTEGER }`` (GM/T 0009 SM2Signature has the same shape). Only the
minimal, positive, definite-length encoding is accepted: a signature that decodes two ways is
a malleability bug waiting to happen.
"""

from __future__ import annotations

from .errors import SignatureInvalid


def _int(n: int) -> bytes:
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")  # leading 00 when the top bit is set
    return b"\x02" + bytes([len(body)]) + body


def encode_ecdsa_sig(r: int, s: int) -> bytes:
    body = _int(r) + _int(s)
    return b"\x30" + bytes([len(body)]) + body


def _read_int(der: bytes, at: int) -> tuple[int, int]:
    if at + 2 > len(der) or der[at] != 0x02:
        raise SignatureInvalid(f"DER signature: expected INTEGER at offset {at}")
    length = der[at + 1]
    start, end = at + 2, at + 2 + length
    if length == 0 or length > 33 or end > len(der):
        raise SignatureInvalid(f"DER signature: bad INTEGER length at offset {at + 1}")
    body = der[start:end]
    if body[0] & 0x80:
        raise SignatureInvalid(f"DER signature: negative INTEGER at offset {start}")
    if length > 1 and body[0] == 0 and not body[1] & 0x80:
        raise SignatureInvalid(f"DER signature: non-minimal INTEGER at offset {start}")
    return int.from_bytes(body, "big"), end


def decode_ecdsa_sig(der: bytes) -> tuple[int, int]:
    """(r, s) from a DER ``Ecdsa-Sig-Value``; raises :class:`SignatureInvalid` if malformed."""
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise SignatureInvalid("DER signature: not a SEQUENCE of the stated length")
    r, at = _read_int(der, 2)
    s, at = _read_int(der, at)
    if at != len(der):
        raise SignatureInvalid(f"DER signature: trailing data at offset {at}")
    return r, s
