"""SM2 X.509 v3 certificates for the card PKI (GM/T 0015 profile): build, parse, verify.

The chain is ``pinned root → issuing CA (pathlen 0) → card certificate`` (EF 0018 on a
third-generation card). Keys are SM2 (id-ecPublicKey, curve sm2 ``1.2.156.10197.1.301``),
signatures SM2-with-SM3 (``1.2.156.10197.1.501``, no parameters) with signer id
``1234567812345678`` unless told otherwise. No I/O: bytes and dataclasses in and out; the clock
is an argument.

Public API::

    load_der(der) / load_pem(pem) / load_pem_all(pem) / load(der_or_pem) -> Certificate
    Certificate            .der .to_pem() .public_key .card_sn .common_name .fingerprint
                           .not_before .not_after .is_ca .path_length .key_usage ...
    fingerprint_sm3(der)   32-byte SM3 of the DER, the key verified certificates are cached by
    build_root_ca / build_issuing_ca / build_card_certificate / build_certificate
    verify_chain(leaf, intermediates, pinned_root, at=...) -> VerifiedCertificate
    VerifiedCertificate    .public_key .card_sn .fingerprint .valid_from .valid_until
                           .is_valid_at(t) .chain
    load_crl_der / load_crl_pem / load_crl -> CertificateRevocationList   (RFC 5280 §5)
    CertificateRevocationList  .issuer_der .this_update .next_update .crl_number .revoked
                           .revoked_serials .fingerprint .to_pem()
    verify_crl(crl, issuing_ca, at=...)    raises; never returns False
    build_crl(issuer=, issuer_key=, revoked=, this_update=, next_update=, crl_number=)

Exceptions (``code`` is stable; the gateway maps it to one HTTP answer)::

    CertificateError (ValueError)                 CERT_ERROR
     ├── CertificateMalformed                     CERT_MALFORMED   not strict DER / not SM2 /
     │                                                             bad PEM / card_sn missing
     └── CertificateInvalid                       (abstract)       chain does not verify
          ├── CertificateExpired                  CERT_EXPIRED
          ├── CertificateNotYetValid              CERT_NOT_YET_VALID
          ├── CertificateChainInvalid             CERT_CHAIN_INVALID  no path to the pinned
          │                                                        root (other CA, key id
          │                                                        mismatch, too long)
          ├── CertificateSignatureInvalid         CERT_SIGNATURE_INVALID  tampered
          ├── CertificateNotCA                    CERT_NOT_CA      issuer without cA=TRUE
          ├── CertificatePathLenExceeded          CERT_PATH_LEN
          ├── CertificateKeyUsage                 CERT_KEY_USAGE   no keyCertSign on a CA /
          │                                                        no digitalSignature on leaf
          └── CertificateUnknownCriticalExtension CERT_CRITICAL_EXTENSION
     CrlError (ValueError)                        CRL_ERROR
      ├── CrlMalformed                            CRL_MALFORMED    not strict DER / not v2 /
      │                                                            no nextUpdate or cRLNumber
      └── CrlInvalid                              (abstract)
           ├── CrlIssuerMismatch                  CRL_ISSUER_MISMATCH  another CA's list
           ├── CrlKeyUsage                        CRL_KEY_USAGE    issuer lacks cRLSign
           ├── CrlSignatureInvalid                CRL_SIGNATURE_INVALID
           ├── CrlExpired                         CRL_EXPIRED      nextUpdate passed
           ├── CrlNotYetValid                     CRL_NOT_YET_VALID
           └── CrlUnknownCriticalExtension        CRL_CRITICAL_EXTENSION  (delta, IDP,
                                                                   indirect entries ...)

Verification raises; it never returns False. Errors carry ``depth`` (0 = card certificate)
and never a subject, because a card certificate's subject is personal data.

>>> from datetime import UTC, datetime
>>> from sscard.crypto import SM2PrivateKey
>>> t0, t1 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2034, 1, 1, tzinfo=UTC)
>>> root_key, ca_key, card_key = (SM2PrivateKey.generate() for _ in range(3))
>>> root = build_root_ca(root_key, [("C", "CN"), ("CN", "Root")], not_before=t0, not_after=t1)
>>> ca = build_issuing_ca(ca_key.public_key, [("C", "CN"), ("CN", "Issuing")],
...                       issuer=root, issuer_key=root_key, not_before=t0, not_after=t1)
>>> card = build_card_certificate(card_key.public_key, card_sn="310000D1560000050123456789ABCDEF",
...     common_name="card", issuer=ca, issuer_key=ca_key, not_before=t0, not_after=t1)
>>> verified = verify_chain(card, [ca], root, at=datetime(2025, 6, 1, tzinfo=UTC))
>>> verified.card_sn, verified.public_key == card_key.public_key
('310000D1560000050123456789ABCDEF', True)
>>> verify_chain(card, [ca], root, at=datetime(2035, 1, 1, tzinfo=UTC))
Traceback (most recent call last):
...
sscard.certs._errors.CertificateExpired: expired at 2034-01-01T00:00:00+00:00 (depth 2)
"""

from ._build import (
    NAME_ATTRIBUTES,
    NameSpec,
    RawExtension,
    build_card_certificate,
    build_certificate,
    build_issuing_ca,
    build_name,
    build_root_ca,
    key_identifier,
    random_serial_number,
)
from ._crl import (
    CRL_SIGNER_IDS,
    MAX_CRL_DER_BYTES,
    MAX_CRL_ENTRIES,
    CertificateRevocationList,
    CrlError,
    CrlExpired,
    CrlInvalid,
    CrlIssuerMismatch,
    CrlKeyUsage,
    CrlMalformed,
    CrlNotYetValid,
    CrlSignatureInvalid,
    CrlUnknownCriticalExtension,
    RevocationReason,
    RevokedCertificate,
    build_crl,
    load_crl,
    load_crl_der,
    load_crl_pem,
    verify_crl,
)
from ._errors import (
    CertificateChainInvalid,
    CertificateError,
    CertificateExpired,
    CertificateInvalid,
    CertificateKeyUsage,
    CertificateMalformed,
    CertificateNotCA,
    CertificateNotYetValid,
    CertificatePathLenExceeded,
    CertificateSignatureInvalid,
    CertificateUnknownCriticalExtension,
)
from ._model import (
    EC_PUBLIC_KEY_OID,
    MAX_CERTIFICATE_DER_BYTES,
    SM2_CURVE_OID,
    SM2_WITH_SM3_OID,
    Certificate,
    KeyUsage,
    fingerprint_sm3,
    load,
    load_der,
    load_pem,
    load_pem_all,
)
from ._verify import MAX_INTERMEDIATES, VerifiedCertificate, verify_chain

__all__ = [
    "CRL_SIGNER_IDS",
    "EC_PUBLIC_KEY_OID",
    "MAX_CERTIFICATE_DER_BYTES",
    "MAX_CRL_DER_BYTES",
    "MAX_CRL_ENTRIES",
    "MAX_INTERMEDIATES",
    "NAME_ATTRIBUTES",
    "SM2_CURVE_OID",
    "SM2_WITH_SM3_OID",
    "Certificate",
    "CertificateChainInvalid",
    "CertificateError",
    "CertificateExpired",
    "CertificateInvalid",
    "CertificateKeyUsage",
    "CertificateMalformed",
    "CertificateNotCA",
    "CertificateNotYetValid",
    "CertificatePathLenExceeded",
    "CertificateRevocationList",
    "CertificateSignatureInvalid",
    "CertificateUnknownCriticalExtension",
    "CrlError",
    "CrlExpired",
    "CrlInvalid",
    "CrlIssuerMismatch",
    "CrlKeyUsage",
    "CrlMalformed",
    "CrlNotYetValid",
    "CrlSignatureInvalid",
    "CrlUnknownCriticalExtension",
    "KeyUsage",
    "NameSpec",
    "RawExtension",
    "RevocationReason",
    "RevokedCertificate",
    "VerifiedCertificate",
    "build_card_certificate",
    "build_certificate",
    "build_crl",
    "build_issuing_ca",
    "build_name",
    "build_root_ca",
    "fingerprint_sm3",
    "key_identifier",
    "load",
    "load_crl",
    "load_crl_der",
    "load_crl_pem",
    "load_der",
    "load_pem",
    "load_pem_all",
    "random_serial_number",
    "verify_chain",
    "verify_crl",
]
