"""SM2 / SM4 backends behind one small interface (httpx-style transport split).

- ``tongsuo`` (default): Tongsuo, the OpenSSL fork with SM support, through ``tongsuopy``.
  About 40x faster than pure Python; the hot path of card authentication uses it.
- ``gmssl``: the pure-Python ``gmssl`` 3.2.2 package, kept as a *checked reference* that the
  test suite runs every vector and cross-signature through. It is wrapped because the released
  version strips a leading "04" from public keys with ``lstrip`` (corrupting keys whose X starts
  with 0 or 4 hex digits), draws nonces from :mod:`random`, and checks neither r/s ranges nor
  that a public key is on the curve. This wrapper sets the public key itself, always supplies a
  nonce from :mod:`secrets`, and the front end (:mod:`sscard.crypto.sm2`) does the range and
  curve checks before any backend is called.

A backend works on digests: the front end computes Z and e = SM3(Z ‖ M) itself, so every
backend uses the same, explicit signer id.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sscard.crypto.keys import SM2PublicKey


class Backend(Protocol):
    name: str

    def public_point(self, d: int) -> tuple[int, int]:
        """The affine public point d·G."""

    def sign_digest(self, d: int, e: bytes) -> tuple[int, int]:
        """An SM2 signature (r, s) of the 32-byte digest e with a fresh secret nonce."""

    def verify_digest(self, public_key: SM2PublicKey, e: bytes, r: int, s: int) -> bool:
        """Whether (r, s) is a valid signature of e; r and s are already range-checked."""

    def sm4_ecb(self, key: bytes, data: bytes, *, encrypt: bool) -> bytes:
        """SM4-ECB over whole blocks, no padding."""


BACKEND_NAMES = ("tongsuo", "gmssl")


# At most len(BACKEND_NAMES) = 2 entries (plus the default argument's spelling): any other
# name raises, and a call that raises is not cached.
@cache
def get_backend(name: str = "tongsuo") -> Backend:
    """The named backend (a process-wide singleton)."""
    if name == "tongsuo":
        from .tongsuo import TongsuoBackend

        return TongsuoBackend()
    if name == "gmssl":
        from .gmssl import GmsslBackend

        return GmsslBackend()
    raise ValueError(f"unknown crypto backend {name!r}; choose one of {BACKEND_NAMES}")


def default_backend() -> Backend:
    return get_backend("tongsuo")
