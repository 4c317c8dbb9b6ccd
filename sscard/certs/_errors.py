"""The certificate error hierarchy (drawn in :mod:`sscard.certs`' docstring).

Every class carries a stable ``code`` that the gateway maps to one HTTP answer. Messages name
the position in the chain (``depth`` 0 is the card certificate) and a fingerprint prefix, never
a subject: a card certificate's subject is personal data.
"""

from __future__ import annotations

from typing import ClassVar


class CertificateError(ValueError):
    """Base of every error raised by :mod:`sscard.certs`.

    ``depth`` is the position in the chain the error is about (0 = leaf), or None when the
    error is not about one certificate of a chain (e.g. while parsing).
    """

    code: ClassVar[str] = "CERT_ERROR"

    def __init__(self, message: str, *, depth: int | None = None) -> None:
        super().__init__(message if depth is None else f"{message} (depth {depth})")
        self.depth = depth


class CertificateMalformed(CertificateError):
    """Not a strict-DER SM2 X.509 v3 certificate this module accepts (or bad PEM)."""

    code: ClassVar[str] = "CERT_MALFORMED"


class CertificateInvalid(CertificateError):
    """Well formed, but the chain does not verify. Abstract: a subclass is always raised."""

    code: ClassVar[str] = "CERT_INVALID"


class CertificateExpired(CertificateInvalid):
    code: ClassVar[str] = "CERT_EXPIRED"


class CertificateNotYetValid(CertificateInvalid):
    code: ClassVar[str] = "CERT_NOT_YET_VALID"


class CertificateChainInvalid(CertificateInvalid):
    """No path to the pinned root: unknown issuer, another CA, key id mismatch, too long."""

    code: ClassVar[str] = "CERT_CHAIN_INVALID"


class CertificateSignatureInvalid(CertificateInvalid):
    """The issuer's SM2-with-SM3 signature over tbsCertificate does not verify."""

    code: ClassVar[str] = "CERT_SIGNATURE_INVALID"


class CertificateNotCA(CertificateInvalid):
    """A certificate that issued another one lacks basicConstraints cA=TRUE."""

    code: ClassVar[str] = "CERT_NOT_CA"


class CertificatePathLenExceeded(CertificateInvalid):
    """More intermediate CAs below a CA than its pathLenConstraint allows."""

    code: ClassVar[str] = "CERT_PATH_LEN"


class CertificateKeyUsage(CertificateInvalid):
    """keyUsage lacks keyCertSign (on a CA) or digitalSignature (on the card certificate)."""

    code: ClassVar[str] = "CERT_KEY_USAGE"


class CertificateUnknownCriticalExtension(CertificateInvalid):
    """A critical extension this verifier does not process (RFC 5280 §4.2 says reject)."""

    code: ClassVar[str] = "CERT_CRITICAL_EXTENSION"
