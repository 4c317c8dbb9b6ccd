"""SM3 (GB/T 32905) and HMAC-SM3.

Both come from OpenSSL through :mod:`hashlib` (~180,000 HMACs/s here, so request signing is
nearly free). Where the interpreter's OpenSSL lacks SM3 we fall back to Tongsuo's; the
pure-Python gmssl SM3 is used only as a cross-check in tests.

>>> sm3(b"abc").hex()[:16]
'66c7f0f462eeedd9'
>>> len(hmac_sm3(b"key", b"message"))
32
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

DIGEST_LEN = 32


def _hashlib_has_sm3() -> bool:
    try:
        hashlib.new("sm3")
    except ValueError:
        return False
    return True


if _hashlib_has_sm3():

    def sm3(data: bytes) -> bytes:
        """The 32-byte SM3 digest of ``data``."""
        return hashlib.new("sm3", data).digest()

    _digestmod: str | Callable[..., Any] = "sm3"
else:  # pragma: no cover - depends on the platform's OpenSSL build
    from tongsuopy.crypto import hashes as _t_hashes

    def sm3(data: bytes) -> bytes:
        """The 32-byte SM3 digest of ``data``."""
        h = _t_hashes.Hash(_t_hashes.SM3())
        h.update(data)
        return bytes(h.finalize())

    class _TongsuoSM3:
        """Just enough of the hashlib interface for :func:`hmac.new`."""

        digest_size = DIGEST_LEN
        block_size = 64
        name = "sm3"

        def __init__(self, data: bytes = b"") -> None:
            self._buf = bytearray(data)

        def update(self, data: bytes) -> None:
            self._buf += data

        def copy(self) -> _TongsuoSM3:
            return _TongsuoSM3(bytes(self._buf))

        def digest(self) -> bytes:
            return sm3(bytes(self._buf))

    _digestmod = _TongsuoSM3


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """The 32-byte HMAC-SM3 of ``data`` under ``key`` (RFC 2104 construction)."""
    return hmac.new(key, data, _digestmod).digest()
