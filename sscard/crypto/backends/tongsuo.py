"""The fast backend: Tongsuo through tongsuopy's cffi bindings.

tongsuopy's public API only signs whole messages with the default signer id, so we drive the
digest-level ``EVP_PKEY_sign``/``EVP_PKEY_verify`` calls, which on an SM2 key take e directly.
Key objects are cached (bounded) because building an EVP_PKEY costs more than a verify.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from tongsuopy.backends.tongsuo.backend import backend as _tongsuo
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.ciphers import Cipher, algorithms, modes

from sscard.crypto.der import decode_ecdsa_sig, encode_ecdsa_sig

if TYPE_CHECKING:
    from sscard.crypto.keys import SM2PublicKey

_lib: Any = _tongsuo._lib
_ffi: Any = _tongsuo._ffi

#: Upper bound on cached key objects (each holds an EVP_PKEY of a few hundred bytes).
KEY_CACHE_MAX = 4096
_SIG_BUF_LEN = 80  # DER of two 32-byte integers is at most 72 bytes


class _BoundedCache:
    """A small thread-safe LRU; functools.lru_cache would pin unhashable-key workarounds."""

    def __init__(self, max_items: int) -> None:
        self._max = max_items
        self._items: OrderedDict[object, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: object, make: Any) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        value = make()
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._max:
                self._items.popitem(last=False)
        return value


class TongsuoBackend:
    name = "tongsuo"

    def __init__(self) -> None:
        self._public = _BoundedCache(KEY_CACHE_MAX)
        self._private = _BoundedCache(KEY_CACHE_MAX)

    def public_point(self, d: int) -> tuple[int, int]:
        numbers = self._private_key(d).public_key().public_numbers()
        return numbers.x, numbers.y

    def _private_key(self, d: int) -> Any:
        return self._private.get_or_make(d, lambda: ec.derive_private_key(d, ec.SM2()))

    def _public_key(self, public_key: SM2PublicKey) -> Any:
        return self._public.get_or_make(
            (public_key.x, public_key.y),
            lambda: ec.EllipticCurvePublicNumbers(
                public_key.x, public_key.y, ec.SM2()
            ).public_key(),
        )

    def sign_digest(self, d: int, e: bytes) -> tuple[int, int]:
        # OpenSSL draws the nonce from its own CSPRNG.
        ctx = _ffi.gc(
            _lib.EVP_PKEY_CTX_new(self._private_key(d)._evp_pkey, _ffi.NULL), _lib.EVP_PKEY_CTX_free
        )
        if _lib.EVP_PKEY_sign_init(ctx) != 1:
            _tongsuo._consume_errors()
            raise RuntimeError("EVP_PKEY_sign_init failed for an SM2 key")
        buf = _ffi.new("unsigned char[]", _SIG_BUF_LEN)
        buf_len = _ffi.new("size_t *", _SIG_BUF_LEN)
        if _lib.EVP_PKEY_sign(ctx, buf, buf_len, e, len(e)) != 1:
            _tongsuo._consume_errors()
            raise RuntimeError("EVP_PKEY_sign failed for an SM2 key")
        return decode_ecdsa_sig(bytes(_ffi.buffer(buf)[: buf_len[0]]))

    def verify_digest(self, public_key: SM2PublicKey, e: bytes, r: int, s: int) -> bool:
        der = encode_ecdsa_sig(r, s)
        ctx = _ffi.gc(
            _lib.EVP_PKEY_CTX_new(self._public_key(public_key)._evp_pkey, _ffi.NULL),
            _lib.EVP_PKEY_CTX_free,
        )
        if _lib.EVP_PKEY_verify_init(ctx) != 1:
            _tongsuo._consume_errors()
            raise RuntimeError("EVP_PKEY_verify_init failed for an SM2 key")
        result = _lib.EVP_PKEY_verify(ctx, der, len(der), e, len(e))
        if result != 1:
            # 0 is a bad signature; a negative value is an error inside OpenSSL. Both are a
            # failed verification to the caller, and the error queue must not leak into the
            # next call on this thread.
            _tongsuo._consume_errors()
            return False
        return True

    def sm4_ecb(self, key: bytes, data: bytes, *, encrypt: bool) -> bytes:
        cipher = Cipher(algorithms.SM4(key), modes.ECB())
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        return bytes(ctx.update(data) + ctx.finalize())
