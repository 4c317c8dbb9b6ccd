"""The reference backend: pure-Python gmssl 3.2.2, wrapped so that its defects cannot bite.

See :mod:`sscard.crypto.backends` for the defects. Here: the public key is assigned to the
object directly (never through the constructor's ``lstrip("04")``), every nonce comes from
:mod:`secrets`, and padding is disabled for SM4 so that we see whole blocks only.
About 50-70 verifies/s per core: never the hot path.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from gmssl import sm2 as gm_sm2
from gmssl import sm4 as gm_sm4

from sscard.crypto import curve

if TYPE_CHECKING:
    from sscard.crypto.keys import SM2PublicKey

_NO_PADDING = -1  # neither gmssl.sm4.PKCS7 (0) nor ZERO (1): crypt_ecb then pads nothing


def _crypt(public_xy_hex: str = "", private_hex: str = "") -> gm_sm2.CryptSM2:
    obj = gm_sm2.CryptSM2(private_key=private_hex, public_key="")
    obj.public_key = public_xy_hex  # bypass the constructor's lstrip("04")
    return obj


class GmsslBackend:
    name = "gmssl"

    def public_point(self, d: int) -> tuple[int, int]:
        point = _crypt()._kg(d, gm_sm2.default_ecc_table["g"])
        return int(point[:64], 16), int(point[64:128], 16)

    def sign_digest(self, d: int, e: bytes) -> tuple[int, int]:
        while True:
            k = secrets.randbelow(curve.N - 1) + 1
            sig = self._sign(d, e, k)
            if sig is not None:  # r = 0, r + k = n or s = 0: draw another nonce
                return sig

    def sign_digest_with_nonce(self, d: int, e: bytes, k: int) -> tuple[int, int]:
        """Known-answer tests only: sign with a caller-chosen nonce. Never use it otherwise."""
        sig = self._sign(d, e, k)
        if sig is None:
            raise ValueError("this nonce gives no valid signature")
        return sig

    def _sign(self, d: int, e: bytes, k: int) -> tuple[int, int] | None:
        sig = _crypt(private_hex=f"{d:064x}").sign(e, f"{k:064x}")
        return None if sig is None else (int(sig[:64], 16), int(sig[64:], 16))

    def verify_digest(self, public_key: SM2PublicKey, e: bytes, r: int, s: int) -> bool:
        if not curve.is_on_curve(public_key.x, public_key.y):
            return False
        verifier = _crypt(public_xy_hex=f"{public_key.x:064x}{public_key.y:064x}")
        return bool(verifier.verify(f"{r:064x}{s:064x}", e))

    def sm4_ecb(self, key: bytes, data: bytes, *, encrypt: bool) -> bytes:
        mode = gm_sm4.SM4_ENCRYPT if encrypt else gm_sm4.SM4_DECRYPT
        cipher = gm_sm4.CryptSM4(mode=mode, padding_mode=_NO_PADDING)
        cipher.set_key(key, mode)
        return bytes(cipher.crypt_ecb(data))
