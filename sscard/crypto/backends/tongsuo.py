"""The fast backend: Tongsuo through tongsuopy's cffi bindings.

tongsuopy's public API only signs whole messages with the default signer id, so we drive the
digest-level ``EVP_PKEY_sign``/``EVP_PKEY_verify`` calls, which on an SM2 key take e directly.

Public keys are built by hand rather than through tongsuopy: its path runs
``EC_KEY_check_key``, a full n·Q scalar multiplication (~0.3-0.5 ms, as much as the verify
itself), on every new key. For SM2 the cofactor is 1, so a point on the curve is already in the
prime-order group, and :class:`~sscard.crypto.keys.SM2PublicKey` cannot be built off the curve.
Every key shares one group object with the generator's multiples precomputed, which speeds the
s·G half of each verify. Most card authentications present a card the process has not seen, so
this cold path is the one that matters; key objects are still cached (bounded) for repeats.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from tongsuopy.backends import _tongsuo as _tongsuo_so
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


def _shared_sm2_group() -> Any:
    group = _lib.EC_GROUP_new_by_curve_name(_lib.OBJ_sn2nid(b"SM2"))
    if group == _ffi.NULL:
        raise RuntimeError("Tongsuo has no SM2 curve")
    # EC_GROUP_precompute_mult is exported by the extension but not bound by tongsuopy's cffi
    # layer, so reach it through ctypes. Without it verification is still correct, only slower.
    try:
        precompute = ctypes.CDLL(_tongsuo_so.__file__).EC_GROUP_precompute_mult
    except (OSError, AttributeError):  # pragma: no cover - depends on the wheel's build
        return group
    precompute.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    precompute.restype = ctypes.c_int
    precompute(int(_ffi.cast("uintptr_t", group)), None)
    return group


_SM2_GROUP = _shared_sm2_group()  # lives as long as the process; EC_KEY_set_group copies it


def _public_evp_pkey(x: int, y: int) -> Any:
    """An SM2 EVP_PKEY for a point the caller has already checked is on the curve."""
    ec_key = _ffi.gc(_lib.EC_KEY_new(), _lib.EC_KEY_free)
    point = _ffi.gc(_lib.EC_POINT_new(_SM2_GROUP), _lib.EC_POINT_free)
    bn_x = _ffi.gc(_lib.BN_bin2bn(x.to_bytes(32, "big"), 32, _ffi.NULL), _lib.BN_free)
    bn_y = _ffi.gc(_lib.BN_bin2bn(y.to_bytes(32, "big"), 32, _ffi.NULL), _lib.BN_free)
    ok = (
        _lib.EC_KEY_set_group(ec_key, _SM2_GROUP) == 1
        # EC_POINT_set_affine_coordinates_GFp still rejects a point off the curve.
        and _lib.EC_POINT_set_affine_coordinates_GFp(_SM2_GROUP, point, bn_x, bn_y, _ffi.NULL) == 1
        and _lib.EC_KEY_set_public_key(ec_key, point) == 1
    )
    pkey = _ffi.gc(_lib.EVP_PKEY_new(), _lib.EVP_PKEY_free)
    ok = ok and _lib.EVP_PKEY_set1_EC_KEY(pkey, ec_key) == 1
    ok = ok and _lib.EVP_PKEY_set_alias_type(pkey, _lib.EVP_PKEY_SM2) == 1
    if not ok:
        _tongsuo._consume_errors()
        raise RuntimeError("could not build an SM2 public key object")
    return pkey


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

    def _public_pkey(self, public_key: SM2PublicKey) -> Any:
        return self._public.get_or_make(
            (public_key.x, public_key.y), lambda: _public_evp_pkey(public_key.x, public_key.y)
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
            _lib.EVP_PKEY_CTX_new(self._public_pkey(public_key), _ffi.NULL),
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
