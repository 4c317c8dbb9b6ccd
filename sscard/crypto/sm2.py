"""SM2 signatures (GB/T 32918.2) with an explicit signer id.

The front end does everything that must not depend on a backend: it validates the signature
shape and the r/s ranges, computes Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA) and
e = SM3(Z ‖ M), then asks the backend for the scalar arithmetic. Z depends only on the key and
the id, so it is cached (bounded).

Signatures travel as 64 bytes ``r(32) ‖ s(32)``, as the card returns them; use
:func:`signature_to_der` / :func:`signature_from_der` for X.509 and OpenSSL.

Verification raises :class:`SignatureInvalid`; it never returns False.

>>> key = SM2PrivateKey.generate()
>>> sig = sm2_sign(key, b"challenge")
>>> len(sig)
64
>>> sm2_verify(key.public_key, b"challenge", sig)
>>> sm2_verify(key.public_key, b"challengf", sig)
Traceback (most recent call last):
...
sscard.crypto.errors.SignatureInvalid: SM2 signature does not verify
"""

from __future__ import annotations

from functools import lru_cache

from . import curve
from .backends import Backend, default_backend
from .der import decode_ecdsa_sig, encode_ecdsa_sig
from .errors import SignatureInvalid
from .keys import SM2PrivateKey, SM2PublicKey
from .sm3 import sm3

#: GB/T 32918 / GM/T 0009 default signer id (ENTL = 0x0080).
DEFAULT_SIGNER_ID = b"1234567812345678"
SIGNATURE_LEN = 64
#: ENTL is two bytes of *bits*, so an id is at most 8191 bytes.
MAX_SIGNER_ID_LEN = 0xFFFF // 8

_CURVE_BYTES = b"".join(v.to_bytes(32, "big") for v in (curve.A, curve.B, curve.GX, curve.GY))


@lru_cache(maxsize=4096)
def _z(x: int, y: int, signer_id: bytes) -> bytes:
    entl = (len(signer_id) * 8).to_bytes(2, "big")
    return sm3(entl + signer_id + _CURVE_BYTES + x.to_bytes(32, "big") + y.to_bytes(32, "big"))


def sm2_z(public_key: SM2PublicKey, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """Z_A, the 32-byte hash binding the signer id and public key."""
    if len(signer_id) > MAX_SIGNER_ID_LEN:
        raise ValueError(f"signer id longer than {MAX_SIGNER_ID_LEN} bytes")
    return _z(public_key.x, public_key.y, bytes(signer_id))


def sm2_digest(public_key: SM2PublicKey, message: bytes, signer_id: bytes) -> bytes:
    """e = SM3(Z_A ‖ M), the value actually signed."""
    return sm3(sm2_z(public_key, signer_id) + message)


def sm2_sign(
    private_key: SM2PrivateKey,
    message: bytes,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    backend: Backend | None = None,
) -> bytes:
    """Sign ``message``; returns 64 bytes ``r ‖ s``. The nonce is always fresh and secret."""
    e = sm2_digest(private_key.public_key, message, signer_id)
    r, s = (backend or default_backend()).sign_digest(private_key.d, e)
    assert curve.is_valid_scalar(r)
    assert curve.is_valid_scalar(s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sm2_verify(
    public_key: SM2PublicKey | bytes,
    message: bytes,
    signature: bytes,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    backend: Backend | None = None,
) -> None:
    """Check a 64-byte ``r ‖ s`` signature; raises :class:`SignatureInvalid` if it fails.

    ``public_key`` may be the 65-byte raw form; a key off the curve raises ``KeyInvalid``.
    """
    if isinstance(public_key, bytes | bytearray):
        public_key = SM2PublicKey.from_bytes(bytes(public_key))
    if len(signature) != SIGNATURE_LEN:
        raise SignatureInvalid(
            f"SM2 signature must be {SIGNATURE_LEN} bytes r||s, got {len(signature)}"
        )
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (curve.is_valid_scalar(r) and curve.is_valid_scalar(s)):
        raise SignatureInvalid("SM2 signature r or s is outside 1..n-1")
    if (r + s) % curve.N == 0:  # step B5 of GB/T 32918.2: t = 0 is a failure
        raise SignatureInvalid("SM2 signature does not verify")
    e = sm2_digest(public_key, message, signer_id)
    if not (backend or default_backend()).verify_digest(public_key, e, r, s):
        raise SignatureInvalid("SM2 signature does not verify")


def signature_to_der(signature: bytes) -> bytes:
    """64-byte ``r ‖ s`` → DER ``SEQUENCE { INTEGER r, INTEGER s }``."""
    if len(signature) != SIGNATURE_LEN:
        raise SignatureInvalid(f"SM2 signature must be {SIGNATURE_LEN} bytes r||s")
    return encode_ecdsa_sig(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )


def signature_from_der(der: bytes) -> bytes:
    """DER ``SEQUENCE { r, s }`` → 64-byte ``r ‖ s``; raises :class:`SignatureInvalid`."""
    r, s = decode_ecdsa_sig(der)
    if not (curve.is_valid_scalar(r) and curve.is_valid_scalar(s)):
        raise SignatureInvalid("SM2 signature r or s is outside 1..n-1")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
