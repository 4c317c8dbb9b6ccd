"""SM4 (GB/T 32907): ECB, CBC, and the MAC used by legacy cards.

No padding is applied implicitly: every function takes whole 16-byte blocks, because card
protocols define their own padding and an implicit PKCS#7 would hide mistakes. Use
:func:`pad_iso9797_m2` where a protocol asks for ``80 00..`` padding.

The MAC is the PBOC / ISO 9797-1 MAC algorithm 1 with padding method 2 over SM4: pad with 80
then zeros to a block boundary, CBC-encrypt from the IV (zero by default), and keep the leading
``mac_len`` bytes of the last block (4 on cards, by PBOC convention).

>>> key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
>>> sm4_ecb_encrypt(key, key).hex()
'681edf34d206965e86b3e94f536e4246'
"""

from __future__ import annotations

from .backends import Backend, default_backend
from .errors import CipherInputError

BLOCK = 16


def _check(key: bytes, data: bytes) -> None:
    if len(key) != BLOCK:
        raise CipherInputError(f"SM4 key must be 16 bytes, got {len(key)}")
    if len(data) % BLOCK:
        raise CipherInputError(f"SM4 data must be whole 16-byte blocks, got {len(data)} bytes")


def sm4_ecb_encrypt(key: bytes, data: bytes, *, backend: Backend | None = None) -> bytes:
    _check(key, data)
    return (backend or default_backend()).sm4_ecb(key, data, encrypt=True)


def sm4_ecb_decrypt(key: bytes, data: bytes, *, backend: Backend | None = None) -> bytes:
    _check(key, data)
    return (backend or default_backend()).sm4_ecb(key, data, encrypt=False)


def _check_iv(iv: bytes) -> None:
    if len(iv) != BLOCK:
        raise CipherInputError(f"SM4 IV must be 16 bytes, got {len(iv)}")


def sm4_cbc_encrypt(key: bytes, iv: bytes, data: bytes, *, backend: Backend | None = None) -> bytes:
    _check(key, data)
    _check_iv(iv)
    ecb = (backend or default_backend()).sm4_ecb
    out = bytearray()
    chain = iv
    for i in range(0, len(data), BLOCK):
        chain = ecb(key, _xor(data[i : i + BLOCK], chain), encrypt=True)
        out += chain
    return bytes(out)


def sm4_cbc_decrypt(key: bytes, iv: bytes, data: bytes, *, backend: Backend | None = None) -> bytes:
    _check(key, data)
    _check_iv(iv)
    ecb = (backend or default_backend()).sm4_ecb
    out = bytearray()
    chain = iv
    for i in range(0, len(data), BLOCK):
        block = data[i : i + BLOCK]
        out += _xor(ecb(key, block, encrypt=False), chain)
        chain = block
    return bytes(out)


def pad_iso9797_m2(data: bytes) -> bytes:
    """Append 80 then zeros up to the next 16-byte boundary (always adds at least one byte)."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % BLOCK)


def sm4_mac(
    key: bytes,
    data: bytes,
    *,
    iv: bytes = bytes(BLOCK),
    mac_len: int = 4,
    backend: Backend | None = None,
) -> bytes:
    """PBOC-style SM4 CBC-MAC over ``data`` padded with ISO 9797-1 method 2."""
    if not 4 <= mac_len <= BLOCK:
        raise CipherInputError("MAC length must be 4..16 bytes")
    last = sm4_cbc_encrypt(key, iv, pad_iso9797_m2(data), backend=backend)[-BLOCK:]
    return last[:mac_len]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(BLOCK, "big")
