"""Errors raised by :mod:`sscard.crypto`.

::

    CryptoError (ValueError)
     ├── SignatureInvalid   a signature does not verify, is malformed, or r/s are out of range
     ├── KeyInvalid         a key is malformed, not on the SM2 curve, or out of range
     └── CipherInputError   SM4 key/IV/data of the wrong length, bad padding

Each carries a stable ``code`` so the gateway can map it to one HTTP answer.
"""

from __future__ import annotations


class CryptoError(ValueError):
    code = "CRYPTO_ERROR"


class SignatureInvalid(CryptoError):
    code = "SIGNATURE_INVALID"


class KeyInvalid(CryptoError):
    code = "KEY_INVALID"


class CipherInputError(CryptoError):
    code = "CIPHER_INPUT_INVALID"
