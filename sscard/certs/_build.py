"""Builders for the three certificate kinds of the card PKI, and the general one beneath them.

Every input is explicit: validity dates come from the caller (who owns the clock), serial
numbers are passed in or drawn from :mod:`secrets`, keys are passed in. asn1crypto encodes the
DER (it is well tested at that), then the result is parsed back with the strict reader, so a
builder can never hand out a certificate that :func:`load_der` would refuse.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509

from sscard.crypto import (
    DEFAULT_SIGNER_ID,
    SM2PrivateKey,
    SM2PublicKey,
    signature_to_der,
    sm2_sign,
    sm3,
)

from ._model import (
    KEY_USAGE_BITS,
    OID_COMMON_NAME,
    OID_COUNTRY,
    OID_LOCALITY,
    OID_ORGANIZATION,
    OID_ORGANIZATIONAL_UNIT,
    OID_SERIAL_NUMBER,
    OID_STATE,
    SM2_WITH_SM3_OID,
    Certificate,
    KeyUsage,
    load_der,
)

#: Short attribute names accepted in a :data:`NameSpec`, with their OID and whether the
#: value must be a PrintableString (RFC 5280 Appendix A: countryName and serialNumber are).
NAME_ATTRIBUTES: dict[str, tuple[str, bool]] = {
    "C": (OID_COUNTRY, True),
    "ST": (OID_STATE, False),
    "L": (OID_LOCALITY, False),
    "O": (OID_ORGANIZATION, False),
    "OU": (OID_ORGANIZATIONAL_UNIT, False),
    "CN": (OID_COMMON_NAME, False),
    "serialNumber": (OID_SERIAL_NUMBER, True),
}

#: A distinguished name as ordered (short name, value) pairs, most significant first, e.g.
#: ``[("C", "CN"), ("O", "上海市社会保险事业管理中心"), ("CN", "SSC Root CA")]``.
NameSpec = Sequence[tuple[str, str]]

#: X.520 upper bounds (ub-common-name 64, ub-serial-number 64, ub-organization-name 64 ...).
MAX_NAME_VALUE_CHARS = 64
#: RFC 5280 §4.1.2.5: UTCTime for 1950..2049, GeneralizedTime outside it.
_UTC_TIME_FIRST_YEAR = 1950
_UTC_TIME_LAST_YEAR = 2049
_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
_KEY_ID_LEN = 20


@dataclass(frozen=True, slots=True)
class RawExtension:
    """An extension given as already-encoded DER, for what the builders do not cover."""

    oid: str
    critical: bool
    value_der: bytes


def random_serial_number() -> int:
    """A positive 159-bit serial from :mod:`secrets` (fits RFC 5280's 20 octets, never 0)."""
    return secrets.randbits(159) | 1 << 158


def key_identifier(public_key: SM2PublicKey) -> bytes:
    """20-byte key id: SM3 of the subjectPublicKey bits, truncated (RFC 7093 §2 method 1).

    RFC 5280's SHA-1 method would work as well (ids are only compared, never recomputed, by
    verifiers such as OpenSSL); SM3 keeps the profile within the SM algorithms.
    """
    return sm3(public_key.to_bytes())[:_KEY_ID_LEN]


def build_name(spec: NameSpec) -> bytes:
    """DER ``Name`` with one attribute per RDN, in the order given."""
    rdns = []
    for short, text in spec:
        if short not in NAME_ATTRIBUTES:
            raise ValueError(f"unknown name attribute {short!r}; known: {list(NAME_ATTRIBUTES)}")
        oid, printable = NAME_ATTRIBUTES[short]
        if not 1 <= len(text) <= MAX_NAME_VALUE_CHARS:
            raise ValueError(f"{short} must be 1..{MAX_NAME_VALUE_CHARS} characters")
        if printable:
            if not set(text) <= _PRINTABLE:
                raise ValueError(f"{short} must use PrintableString characters only")
            encoded: asn1_core.Asn1Value = asn1_core.PrintableString(text)
        else:
            # UTF8String: RFC 5280 §4.1.2.4 MUST for new certificates; carries Chinese names.
            encoded = asn1_core.UTF8String(text)
        rdns.append(
            asn1_x509.RelativeDistinguishedName(
                [asn1_x509.NameTypeAndValue({"type": oid, "value": encoded})]
            )
        )
    if not rdns:
        raise ValueError("a distinguished name needs at least one attribute")
    der: bytes = asn1_x509.Name(name="", value=asn1_x509.RDNSequence(rdns)).dump()
    return der


def build_certificate(
    *,
    subject: NameSpec,
    subject_public_key: SM2PublicKey,
    issuer: Certificate | None,
    issuer_key: SM2PrivateKey,
    not_before: datetime,
    not_after: datetime,
    is_ca: bool,
    key_usage: Iterable[KeyUsage],
    path_length: int | None = None,
    serial_number: int | None = None,
    extra_extensions: Sequence[RawExtension] = (),
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> Certificate:
    """Build and sign any SM2 certificate; ``issuer=None`` means self-signed.

    This is the general tool beneath :func:`build_root_ca`, :func:`build_issuing_ca` and
    :func:`build_card_certificate`. It checks that the inputs are well formed and that
    ``issuer_key`` matches the issuer, but not that the result makes a sensible chain: that is
    :func:`~sscard.certs.verify_chain`'s job (and the tests need to build bad chains).

    Dates must be timezone-aware; sub-second parts are dropped (X.509 times are whole seconds)
    by rounding down, which only ever narrows the validity window.
    """
    nb = _whole_seconds(not_before, "not_before")
    na = _whole_seconds(not_after, "not_after")
    if na <= nb:
        raise ValueError("not_after must be later than not_before")
    serial = random_serial_number() if serial_number is None else serial_number
    if not 0 < serial < 1 << 159:
        raise ValueError("serial_number must be positive and below 2**159 (20 octets)")
    if path_length is not None and (not is_ca or path_length < 0):
        raise ValueError("path_length needs is_ca=True and must be >= 0")
    usages = frozenset(key_usage)
    if not usages:
        raise ValueError("key_usage must name at least one usage")

    if issuer is None:
        if issuer_key.public_key != subject_public_key:
            raise ValueError("self-signed: issuer_key must be the subject's key")
        issuer_name = build_name(subject)
        issuer_key_id = None
    else:
        if issuer_key.public_key != issuer.public_key:
            raise ValueError("issuer_key does not match the issuer certificate's public key")
        issuer_name = issuer.subject_der  # byte-for-byte, so chaining compares exactly
        issuer_key_id = issuer.subject_key_id or key_identifier(issuer.public_key)

    extensions = [
        asn1_x509.Extension(
            {
                "extn_id": "basic_constraints",
                "critical": True,
                "extn_value": {"ca": is_ca, "path_len_constraint": path_length},
            }
        ),
        asn1_x509.Extension(
            {
                "extn_id": "key_usage",
                "critical": True,
                "extn_value": _key_usage_bits(usages),
            }
        ),
        asn1_x509.Extension(
            {
                "extn_id": "key_identifier",
                "critical": False,
                "extn_value": key_identifier(subject_public_key),
            }
        ),
    ]
    if issuer_key_id is not None:
        extensions.append(
            asn1_x509.Extension(
                {
                    "extn_id": "authority_key_identifier",
                    "critical": False,
                    "extn_value": {"key_identifier": issuer_key_id},
                }
            )
        )
    for raw in extra_extensions:
        extensions.append(
            asn1_x509.Extension(
                {
                    "extn_id": raw.oid,
                    "critical": raw.critical,
                    "extn_value": asn1_core.ParsableOctetString(raw.value_der),
                }
            )
        )

    algorithm = asn1_algos.SignedDigestAlgorithm({"algorithm": SM2_WITH_SM3_OID})
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": algorithm,
            "issuer": asn1_x509.Name.load(issuer_name),
            "validity": {"not_before": _time(nb), "not_after": _time(na)},
            "subject": asn1_x509.Name.load(build_name(subject)),
            "subject_public_key_info": asn1_keys.PublicKeyInfo.load(
                subject_public_key.to_spki_der()
            ),
            "extensions": extensions,
        }
    )
    tbs_der: bytes = tbs.dump()
    signature = sm2_sign(issuer_key, tbs_der, signer_id=signer_id)
    cert = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": algorithm,
            "signature_value": signature_to_der(signature),
        }
    )
    built = load_der(cert.dump())
    assert built.tbs_der == tbs_der
    return built


def build_root_ca(
    key: SM2PrivateKey,
    subject: NameSpec,
    *,
    not_before: datetime,
    not_after: datetime,
    serial_number: int | None = None,
    path_length: int | None = None,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> Certificate:
    """Self-signed root: CA:TRUE (critical), keyCertSign + cRLSign (critical), SKI."""
    return build_certificate(
        subject=subject,
        subject_public_key=key.public_key,
        issuer=None,
        issuer_key=key,
        not_before=not_before,
        not_after=not_after,
        is_ca=True,
        path_length=path_length,
        key_usage=(KeyUsage.KEY_CERT_SIGN, KeyUsage.CRL_SIGN),
        serial_number=serial_number,
        signer_id=signer_id,
    )


def build_issuing_ca(
    public_key: SM2PublicKey,
    subject: NameSpec,
    *,
    issuer: Certificate,
    issuer_key: SM2PrivateKey,
    not_before: datetime,
    not_after: datetime,
    serial_number: int | None = None,
    path_length: int = 0,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> Certificate:
    """Issuing (intermediate) CA: CA:TRUE with pathLenConstraint (default 0), AKI + SKI.

    pathlen 0 means it may issue card certificates but no further CA.
    """
    _require_issuer_is_ca(issuer)
    return build_certificate(
        subject=subject,
        subject_public_key=public_key,
        issuer=issuer,
        issuer_key=issuer_key,
        not_before=not_before,
        not_after=not_after,
        is_ca=True,
        path_length=path_length,
        key_usage=(KeyUsage.KEY_CERT_SIGN, KeyUsage.CRL_SIGN),
        serial_number=serial_number,
        signer_id=signer_id,
    )


def build_card_certificate(
    public_key: SM2PublicKey,
    *,
    card_sn: str,
    common_name: str,
    issuer: Certificate,
    issuer_key: SM2PrivateKey,
    not_before: datetime,
    not_after: datetime,
    organization: str | None = None,
    serial_number: int | None = None,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> Certificate:
    """The card's signing certificate (EF 0018): end entity, digitalSignature only.

    Subject: ``C=CN[, O=organization], serialNumber=card_sn, CN=common_name``. ``card_sn`` is
    the 卡识别码 from EF05 record 01 as text; ``common_name`` is the caller's choice (the
    holder's name is personal data: prefer the card number or card_sn if in doubt).
    """
    _require_issuer_is_ca(issuer)
    subject: list[tuple[str, str]] = [("C", "CN")]
    if organization is not None:
        subject.append(("O", organization))
    subject += [("serialNumber", card_sn), ("CN", common_name)]
    return build_certificate(
        subject=subject,
        subject_public_key=public_key,
        issuer=issuer,
        issuer_key=issuer_key,
        not_before=not_before,
        not_after=not_after,
        is_ca=False,
        key_usage=(KeyUsage.DIGITAL_SIGNATURE,),
        serial_number=serial_number,
        signer_id=signer_id,
    )


def _require_issuer_is_ca(issuer: Certificate) -> None:
    # The convenience builders refuse to make a chain that could never verify; the general
    # build_certificate does not, so tests can still make one on purpose.
    if not issuer.is_ca or (
        issuer.key_usage is not None and KeyUsage.KEY_CERT_SIGN not in issuer.key_usage
    ):
        raise ValueError("issuer is not a CA with keyCertSign")


def _key_usage_bits(usages: frozenset[KeyUsage]) -> set[str]:
    # asn1crypto names the bits in snake_case; map through the bit number, not the spelling.
    names = asn1_x509.KeyUsage._map  # bit number -> asn1crypto name
    return {names[KEY_USAGE_BITS.index(usage)] for usage in usages}


def _whole_seconds(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


def _time(moment: datetime) -> asn1_x509.Time:
    if _UTC_TIME_FIRST_YEAR <= moment.year <= _UTC_TIME_LAST_YEAR:
        return asn1_x509.Time(name="utc_time", value=moment)
    return asn1_x509.Time(name="general_time", value=moment)
