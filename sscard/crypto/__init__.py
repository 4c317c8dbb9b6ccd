"""SM2, SM3 and SM4 for the social security card, with a fast and a reference backend.

Public API (see docs/CONTRACTS.md)::

    SM2PrivateKey, SM2PublicKey         keys; a public key off the curve cannot be built
    sm2_sign, sm2_verify, sm2_z          signatures with an explicit signer id (64-byte r||s)
    signature_to_der, signature_from_der
    sm3, hmac_sm3
    sm4_ecb_encrypt/decrypt, sm4_cbc_encrypt/decrypt, sm4_mac, pad_iso9797_m2
    get_backend("tongsuo" | "gmssl")

Exceptions::

    CryptoError (ValueError)
     ├── SignatureInvalid
     ├── KeyInvalid
     └── CipherInputError
"""

from .backends import BACKEND_NAMES, Backend, default_backend, get_backend
from .curve import CURVE_OID, SM2_WITH_SM3_OID, SM3_OID, SM4_OID
from .errors import CipherInputError, CryptoError, KeyInvalid, SignatureInvalid
from .keys import SM2PrivateKey, SM2PublicKey
from .sm2 import (
    DEFAULT_SIGNER_ID,
    SIGNATURE_LEN,
    signature_from_der,
    signature_to_der,
    sm2_digest,
    sm2_sign,
    sm2_verify,
    sm2_z,
)
from .sm3 import hmac_sm3, sm3
from .sm4 import (
    pad_iso9797_m2,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
    sm4_mac,
)

__all__ = [
    "BACKEND_NAMES",
    "CURVE_OID",
    "DEFAULT_SIGNER_ID",
    "SIGNATURE_LEN",
    "SM2_WITH_SM3_OID",
    "SM3_OID",
    "SM4_OID",
    "Backend",
    "CipherInputError",
    "CryptoError",
    "KeyInvalid",
    "SM2PrivateKey",
    "SM2PublicKey",
    "SignatureInvalid",
    "default_backend",
    "get_backend",
    "hmac_sm3",
    "pad_iso9797_m2",
    "signature_from_der",
    "signature_to_der",
    "sm2_digest",
    "sm2_sign",
    "sm2_verify",
    "sm2_z",
    "sm3",
    "sm4_cbc_decrypt",
    "sm4_cbc_encrypt",
    "sm4_ecb_decrypt",
    "sm4_ecb_encrypt",
    "sm4_mac",
]
