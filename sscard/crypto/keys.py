"""SM2 key pairs and their encodings.

Byte layouts:

- raw public key: 65 bytes ``04 ‖ X(32) ‖ Y(32)`` (uncompressed point, as on the card's EF 0012
  and in certificates);
- raw private key: the 32-byte big-endian scalar d, 1 ≤ d ≤ n-2;
- SubjectPublicKeyInfo DER: 91 bytes, id-ecPublicKey with the named curve sm2
  (1.2.156.10197.1.301), exactly what OpenSSL 3 writes for an SM2 key;
- private key PEM: PKCS#8 ``PRIVATE KEY`` wrapping SEC1 ECPrivateKey (what ``openssl genpkey``
  writes); SEC1 ``EC PRIVATE KEY`` is accepted on input too.

An :class:`SM2PublicKey` cannot exist off the curve: construction checks it, because the gmssl
reference backend would otherwise compute with any pair of integers.

>>> key = SM2PrivateKey.from_bytes(bytes.fromhex(
...     "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"))
>>> key.public_key.to_bytes()[:5].hex()
'0409f9df31'
>>> SM2PublicKey.from_spki_der(key.public_key.to_spki_der()) == key.public_key
True
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field

from . import curve
from .errors import KeyInvalid

# DER prefix of an SM2 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { ecPublicKey, sm2 },
# BIT STRING (66 bytes: 00 unused bits + 04‖X‖Y) }. Fixed because every field is fixed-size,
# so strict parsing is a prefix comparison rather than a general ASN.1 decode.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
_EC_ALGORITHM = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
_PEM_RE = re.compile(
    rb"-----BEGIN (?P<label>[A-Z ]+)-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)\s*-----END (?P=label)-----"
)


@dataclass(frozen=True, slots=True)
class SM2PublicKey:
    """A point on the SM2 curve. Construction raises :class:`KeyInvalid` if it is not one."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not curve.is_on_curve(self.x, self.y):
            raise KeyInvalid("public key is not a point on the SM2 curve")

    @classmethod
    def from_bytes(cls, raw: bytes) -> SM2PublicKey:
        """Parse the 65-byte uncompressed form ``04‖X‖Y``."""
        if len(raw) != 65 or raw[0] != 0x04:
            raise KeyInvalid(
                f"public key must be 65 bytes starting 04 (uncompressed point), got {len(raw)}"
            )
        return cls(int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big"))

    def to_bytes(self) -> bytes:
        """The 65-byte uncompressed form ``04‖X‖Y``."""
        return b"\x04" + self.x.to_bytes(32, "big") + self.y.to_bytes(32, "big")

    @classmethod
    def from_spki_der(cls, der: bytes) -> SM2PublicKey:
        """Parse a 91-byte SubjectPublicKeyInfo for an SM2 key."""
        if len(der) != len(_SPKI_PREFIX) + 65 or not der.startswith(_SPKI_PREFIX):
            raise KeyInvalid("not an SM2 SubjectPublicKeyInfo (id-ecPublicKey, curve sm2)")
        return cls.from_bytes(der[len(_SPKI_PREFIX) :])

    def to_spki_der(self) -> bytes:
        return _SPKI_PREFIX + self.to_bytes()

    def to_pem(self) -> bytes:
        return _pem("PUBLIC KEY", self.to_spki_der())


@dataclass(frozen=True, slots=True)
class SM2PrivateKey:
    """An SM2 private scalar with its public point. ``repr`` never shows the scalar."""

    d: int = field(repr=False)
    public_key: SM2PublicKey = field(compare=False)

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        # secrets, never random: a predictable key or nonce gives the key away.
        return cls.from_int(secrets.randbelow(curve.N - 2) + 1)

    @classmethod
    def from_int(cls, d: int) -> SM2PrivateKey:
        # d = n-1 is excluded because signing needs (1 + d)^-1 mod n.
        if not 1 <= d <= curve.N - 2:
            raise KeyInvalid("private key out of range 1..n-2")
        from .backends import default_backend

        return cls(d, SM2PublicKey(*default_backend().public_point(d)))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SM2PrivateKey:
        """Parse the 32-byte big-endian scalar."""
        if len(raw) != 32:
            raise KeyInvalid(f"private key must be 32 bytes, got {len(raw)}")
        return cls.from_int(int.from_bytes(raw, "big"))

    def to_bytes(self) -> bytes:
        return self.d.to_bytes(32, "big")

    def to_pem(self) -> bytes:
        """PKCS#8 ``PRIVATE KEY`` PEM, as ``openssl genpkey`` writes for SM2."""
        ec_private_key = _der_seq(
            b"\x02\x01\x01"
            + _der(0x04, self.to_bytes())
            + _der(0xA1, _der(0x03, b"\x00" + self.public_key.to_bytes()))
        )
        pkcs8 = _der_seq(b"\x02\x01\x00" + _EC_ALGORITHM + _der(0x04, ec_private_key))
        return _pem("PRIVATE KEY", pkcs8)

    @classmethod
    def from_pem(cls, pem: bytes | str) -> SM2PrivateKey:
        """Read PKCS#8 ``PRIVATE KEY`` or SEC1 ``EC PRIVATE KEY`` PEM holding an SM2 key."""
        from asn1crypto import keys as asn1_keys

        data = pem.encode() if isinstance(pem, str) else pem
        match = _PEM_RE.search(data)
        if match is None:
            raise KeyInvalid("no PEM block found")
        label = match["label"].decode()
        der = base64.b64decode(b"".join(match["body"].split()), validate=True)
        try:
            if label == "PRIVATE KEY":
                info = asn1_keys.PrivateKeyInfo.load(der, strict=True)
                algorithm = info["private_key_algorithm"]
                if algorithm["algorithm"].dotted != "1.2.840.10045.2.1":
                    raise KeyInvalid("PKCS#8 key is not an EC key")
                if algorithm["parameters"].chosen.dotted != curve.CURVE_OID:
                    raise KeyInvalid("EC key is not on the SM2 curve")
                ec = asn1_keys.ECPrivateKey.load(info["private_key"].contents, strict=True)
            elif label == "EC PRIVATE KEY":
                ec = asn1_keys.ECPrivateKey.load(der, strict=True)
                params = ec["parameters"]
                if params.native is not None and params.chosen.dotted != curve.CURVE_OID:
                    raise KeyInvalid("EC key is not on the SM2 curve")
            else:
                raise KeyInvalid(f"unexpected PEM label {label!r}")
            scalar = ec["private_key"].contents
        except KeyInvalid:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise KeyInvalid(f"malformed private key: {exc}") from None
        return cls.from_bytes(scalar.rjust(32, b"\x00"))


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _der_seq(body: bytes) -> bytes:
    return _der(0x30, body)


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        f"-----BEGIN {label}-----\n".encode()
        + b"\n".join(lines)
        + f"\n-----END {label}-----\n".encode()
    )
