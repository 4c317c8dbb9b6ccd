"""SM2 X.509 v2 CRLs (RFC 5280 §5) of the card PKI: strict parse, verify against the issuing CA,
and build (for tests and the demo CA).

The profile accepted, and why each rule:

- strict DER (:mod:`._der`), at most :data:`MAX_CRL_DER_BYTES` and :data:`MAX_CRL_ENTRIES`;
- ``version`` v2 (INTEGER 1), SM2-with-SM3 without parameters in both signature fields;
- ``nextUpdate`` present (RFC 5280 §5.1.2.5 says MUST): without it there is no telling when
  the list is stale;
- the ``cRLNumber`` extension present (RFC 5280 §5.2.3 says MUST): it orders two CRLs of one
  issuer, so an older list cannot be imported over a newer one;
- serial numbers positive, at most 20 octets, each listed once;
- extensions understood: CRL number and authority key identifier on the list, reason code
  and invalidity date on an entry. Any other extension is kept as "unknown" and, if critical,
  :func:`verify_crl` refuses the whole list (RFC 5280 §5.2: a delta CRL indicator or an
  issuing distribution point changes what the list means, so one we do not process must not
  be read as a complete list). An entry's ``certificateIssuer`` (indirect CRLs) is such a
  critical extension.

Signatures: GM/T 0009's default signer id ``1234567812345678`` is what this PKI signs
certificates with. OpenSSL 3.0 signs and verifies CRLs with an *empty* SM2 id unless
``-sigopt distid:`` is given (and ``openssl crl -CAfile`` has no option to verify with another
id), so :func:`verify_crl` accepts either id by default; either way the CA's private key made
the signature. :func:`build_crl` signs with the GM/T id unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import ClassVar

from asn1crypto import algos as asn1_algos
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509

from sscard.crypto import (
    DEFAULT_SIGNER_ID,
    CryptoError,
    SignatureInvalid,
    SM2PrivateKey,
    signature_from_der,
    signature_to_der,
    sm2_sign,
    sm2_verify,
    sm3,
)

from . import _der
from ._der import DerError, Tlv
from ._model import (
    _PEM_BLOCK_RE,
    MAX_EXTENSIONS,
    MAX_SERIAL_OCTETS,
    OID_AUTHORITY_KEY_ID,
    SM2_WITH_SM3_ALGORITHM_DER,
    SM2_WITH_SM3_OID,
    Certificate,
    KeyUsage,
    _parse_authority_key_id,
)

__all__ = [
    "CRL_SIGNER_IDS",
    "MAX_CRL_DER_BYTES",
    "MAX_CRL_ENTRIES",
    "CertificateRevocationList",
    "CrlError",
    "CrlExpired",
    "CrlInvalid",
    "CrlIssuerMismatch",
    "CrlKeyUsage",
    "CrlMalformed",
    "CrlNotYetValid",
    "CrlSignatureInvalid",
    "CrlUnknownCriticalExtension",
    "RevocationReason",
    "RevokedCertificate",
    "build_crl",
    "load_crl",
    "load_crl_der",
    "load_crl_pem",
    "verify_crl",
]

OID_CRL_NUMBER = "2.5.29.20"
OID_CRL_REASON = "2.5.29.21"
OID_INVALIDITY_DATE = "2.5.29.24"
#: List extensions this module processes (and so may be critical).
UNDERSTOOD_CRL_EXTENSIONS = frozenset({OID_CRL_NUMBER, OID_AUTHORITY_KEY_ID})
#: Entry extensions this module processes.
UNDERSTOOD_ENTRY_EXTENSIONS = frozenset({OID_CRL_REASON, OID_INVALIDITY_DATE})

#: Bound on one CRL. 16 MiB is the most the strict DER reader's 3 length octets express, and
#: holds about 400,000 entries of 20-octet serials with a reason code each.
MAX_CRL_DER_BYTES = 16 * 1024 * 1024 - 1
#: Bound on the entries of one CRL (hostile input costs at most this many entry parses).
MAX_CRL_ENTRIES = 500_000
#: RFC 5280 §5.2.3: a CRL number is at most 20 octets.
MAX_CRL_NUMBER_OCTETS = 20
#: The signer ids :func:`verify_crl` tries by default: GM/T 0009's, then OpenSSL 3.0's empty one.
CRL_SIGNER_IDS: tuple[bytes, ...] = (DEFAULT_SIGNER_ID, b"")

_TAG_ENUMERATED = 0x0A


# --- errors ---------------------------------------------------------------------------------


class CrlError(ValueError):
    """Base of every CRL error; ``code`` is stable. Not a CertificateError: a CRL is refused
    by whoever imports it, never in the answer to a card (gateway routes that name
    CertificateError must not promise these codes)."""

    code: ClassVar[str] = "CRL_ERROR"


class CrlMalformed(CrlError):
    """Not a strict-DER SM2 X.509 v2 CRL of this profile (or bad PEM)."""

    code: ClassVar[str] = "CRL_MALFORMED"


class CrlInvalid(CrlError):
    """Well formed, but not acceptable from this issuer now. Abstract."""

    code: ClassVar[str] = "CRL_INVALID"


class CrlIssuerMismatch(CrlInvalid):
    """The CRL's issuer name (or authority key id) is not the given CA's."""

    code: ClassVar[str] = "CRL_ISSUER_MISMATCH"


class CrlKeyUsage(CrlInvalid):
    """The issuing certificate is not a CA allowed to sign CRLs (cA, keyUsage cRLSign)."""

    code: ClassVar[str] = "CRL_KEY_USAGE"


class CrlSignatureInvalid(CrlInvalid):
    """The issuer's SM2-with-SM3 signature over tbsCertList does not verify."""

    code: ClassVar[str] = "CRL_SIGNATURE_INVALID"


class CrlExpired(CrlInvalid):
    """``nextUpdate`` has passed: a newer list should exist."""

    code: ClassVar[str] = "CRL_EXPIRED"


class CrlNotYetValid(CrlInvalid):
    """``thisUpdate`` is in the future."""

    code: ClassVar[str] = "CRL_NOT_YET_VALID"


class CrlUnknownCriticalExtension(CrlInvalid):
    """A critical list or entry extension this module does not process."""

    code: ClassVar[str] = "CRL_CRITICAL_EXTENSION"


# --- the model ------------------------------------------------------------------------------


class RevocationReason(IntEnum):
    """CRLReason (RFC 5280 §5.3.1); 7 is unused."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10


@dataclass(frozen=True, slots=True)
class RevokedCertificate:
    """One entry: the certificate's serial number, when it was revoked, and why (if said)."""

    serial_number: int
    revoked_at: datetime
    reason: RevocationReason | None = None
    #: OIDs of the entry's critical extensions (verify_crl refuses unknown ones).
    critical_extensions: frozenset[str] = field(default=frozenset(), repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class CertificateRevocationList:
    """A parsed CRL. Equality is on the DER bytes. Build with :func:`load_crl_der` & co."""

    der: bytes = field(repr=False)
    tbs_der: bytes = field(repr=False)
    issuer_der: bytes = field(repr=False)
    this_update: datetime
    next_update: datetime
    crl_number: int
    authority_key_id: bytes | None = field(repr=False)
    revoked: tuple[RevokedCertificate, ...] = field(repr=False)
    #: 64 bytes r‖s.
    signature: bytes = field(repr=False)
    critical_extensions: frozenset[str] = field(repr=False)
    #: SM3 of :attr:`der`.
    fingerprint: bytes = field(repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CertificateRevocationList):
            return NotImplemented
        return self.der == other.der

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def revoked_serials(self) -> frozenset[int]:
        return frozenset(entry.serial_number for entry in self.revoked)

    def to_pem(self) -> bytes:
        """``-----BEGIN X509 CRL-----`` PEM (RFC 7468 §5), 64-column base64."""
        b64 = base64.b64encode(self.der)
        lines = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        return b"-----BEGIN X509 CRL-----\n" + lines + b"\n-----END X509 CRL-----\n"


# --- loading --------------------------------------------------------------------------------


def load_crl_der(der: bytes) -> CertificateRevocationList:
    """Parse one DER CRL; raises :class:`CrlMalformed` on anything outside the profile."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TypeError(f"CRL DER must be bytes, not {type(der).__name__}")
    der = bytes(der)
    if len(der) > MAX_CRL_DER_BYTES:
        raise CrlMalformed(f"CRL is {len(der)} bytes, over the {MAX_CRL_DER_BYTES} limit")
    try:
        return _parse(der)
    except DerError as exc:
        raise CrlMalformed(f"CRL is not valid DER: {exc}") from None


def load_crl_pem(pem: bytes | str) -> CertificateRevocationList:
    """Exactly one ``X509 CRL`` PEM block (text around it is ignored, RFC 7468)."""
    data = pem.encode("utf-8") if isinstance(pem, str) else bytes(pem)
    if len(data) > 2 * MAX_CRL_DER_BYTES:
        raise CrlMalformed(f"PEM input of {len(data)} bytes is over the limit")
    blocks = list(_PEM_BLOCK_RE.finditer(data))
    if len(blocks) != 1:
        raise CrlMalformed(f"expected one PEM X509 CRL block, found {len(blocks)}")
    begin, body, end = blocks[0].groups()
    if begin != b"X509 CRL" or end != b"X509 CRL":
        raise CrlMalformed(f"expected a PEM X509 CRL block, found {begin.decode()!r}")
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        raise CrlMalformed("PEM body is not valid base64") from None
    return load_crl_der(der)


def load_crl(data: bytes | str) -> CertificateRevocationList:
    """DER or PEM, told apart by the first byte (DER starts with SEQUENCE 0x30)."""
    if isinstance(data, bytes | bytearray) and data[:1] == b"\x30":
        return load_crl_der(bytes(data))
    return load_crl_pem(data)


def _parse(der: bytes) -> CertificateRevocationList:
    top = _der.expect(der, 0, len(der), _der.TAG_SEQUENCE, "CertificateList")
    if top.end != len(der):
        raise DerError("trailing data after CertificateList", top.end)
    parts = _der.children(der, top)
    if len(parts) != 3:
        raise DerError("CertificateList must have 3 elements", top.body)
    tbs, outer_alg, sig_value = parts
    if tbs.tag != _der.TAG_SEQUENCE:
        raise DerError("tbsCertList: expected SEQUENCE", tbs.start)
    if _der.der_bytes(der, outer_alg) != SM2_WITH_SM3_ALGORITHM_DER:
        raise CrlMalformed("signatureAlgorithm is not SM2-with-SM3 without parameters")

    head = _parse_tbs(der, tbs)

    octets, unused = _der.decode_bit_string(der, sig_value)
    if unused:
        raise CrlMalformed("signatureValue must be whole octets")
    try:
        signature = signature_from_der(octets)
    except CryptoError as exc:
        raise CrlMalformed(f"signatureValue is not an SM2 signature: {exc}") from None

    return CertificateRevocationList(
        der=der,
        tbs_der=_der.der_bytes(der, tbs),
        issuer_der=head.issuer_der,
        this_update=head.this_update,
        next_update=head.next_update,
        crl_number=head.crl_number,
        authority_key_id=head.authority_key_id,
        revoked=head.revoked,
        signature=signature,
        critical_extensions=head.critical_extensions,
        fingerprint=sm3(der),
    )


@dataclass(frozen=True, slots=True)
class _TbsCertList:
    issuer_der: bytes
    this_update: datetime
    next_update: datetime
    revoked: tuple[RevokedCertificate, ...]
    crl_number: int
    authority_key_id: bytes | None
    critical_extensions: frozenset[str]


def _parse_tbs(der: bytes, tbs: Tlv) -> _TbsCertList:
    fields = _der.children(der, tbs, max_count=7)
    if len(fields) < 5 or fields[0].tag != _der.TAG_INTEGER:
        raise CrlMalformed("only X.509 v2 CRLs are accepted (version missing)")
    if _der.decode_integer(der, fields[0]) != 1:
        raise CrlMalformed("only X.509 v2 CRLs are accepted")
    if _der.der_bytes(der, fields[1]) != SM2_WITH_SM3_ALGORITHM_DER:
        raise CrlMalformed("tbsCertList.signature is not SM2-with-SM3")
    issuer = fields[2]
    if issuer.tag != _der.TAG_SEQUENCE:
        raise DerError("issuer: expected SEQUENCE", issuer.start)
    this_update = _der.decode_time(der, fields[3])
    rest = fields[4:]
    if not rest or rest[0].tag not in (_der.TAG_UTC_TIME, _der.TAG_GENERALIZED_TIME):
        raise CrlMalformed("nextUpdate is missing (RFC 5280 §5.1.2.5)")
    next_update = _der.decode_time(der, rest[0])
    if next_update <= this_update:
        raise CrlMalformed("nextUpdate is not later than thisUpdate")
    rest = rest[1:]
    revoked: tuple[RevokedCertificate, ...] = ()
    if rest and rest[0].tag == _der.TAG_SEQUENCE:
        revoked = _parse_entries(der, rest[0])
        rest = rest[1:]
    if len(rest) != 1 or rest[0].tag != 0xA0:
        raise CrlMalformed("crlExtensions with a cRLNumber are required (RFC 5280 §5.2.3)")
    extensions = _extensions(der, _explicit_extensions(der, rest[0]))
    number_value = extensions.values.get(OID_CRL_NUMBER)
    if number_value is None:
        raise CrlMalformed("the cRLNumber extension is missing (RFC 5280 §5.2.3)")
    crl_number = _decode_crl_number(der, number_value)
    aki_value = extensions.values.get(OID_AUTHORITY_KEY_ID)
    authority_key_id = None if aki_value is None else _parse_authority_key_id(der, aki_value)

    return _TbsCertList(
        issuer_der=_der.der_bytes(der, issuer),
        this_update=this_update,
        next_update=next_update,
        revoked=revoked,
        crl_number=crl_number,
        authority_key_id=authority_key_id,
        critical_extensions=frozenset(extensions.critical),
    )


def _parse_entries(der: bytes, wrapper: Tlv) -> tuple[RevokedCertificate, ...]:
    items = _der.children(der, wrapper, max_count=MAX_CRL_ENTRIES)
    if not items:
        # RFC 5280 §5.1.2.6: when there are no revoked certificates the list is absent.
        raise CrlMalformed("revokedCertificates is present but empty")
    seen: set[int] = set()
    out: list[RevokedCertificate] = []
    for item in items:
        if item.tag != _der.TAG_SEQUENCE:
            raise DerError("revoked certificate: expected SEQUENCE", item.start)
        parts = _der.children(der, item, max_count=3)
        if len(parts) < 2:
            raise DerError("revoked certificate: serial and date required", item.body)
        serial_tlv = parts[0]
        serial = _der.decode_integer(der, serial_tlv)
        if serial <= 0 or serial_tlv.end - serial_tlv.body > MAX_SERIAL_OCTETS:
            raise CrlMalformed("a revoked serial number is not positive or over 20 octets")
        if serial in seen:
            raise CrlMalformed(f"serial {serial:#x} is listed twice")
        seen.add(serial)
        revoked_at = _der.decode_time(der, parts[1])
        reason: RevocationReason | None = None
        critical: frozenset[str] = frozenset()
        if len(parts) == 3:
            ext = _extensions(der, parts[2])
            critical = frozenset(ext.critical)
            reason_value = ext.values.get(OID_CRL_REASON)
            if reason_value is not None:
                reason = _decode_reason(der, reason_value)
            invalidity = ext.values.get(OID_INVALIDITY_DATE)
            if invalidity is not None and invalidity.tag != _der.TAG_GENERALIZED_TIME:
                raise DerError("invalidityDate: expected GeneralizedTime", invalidity.start)
        out.append(RevokedCertificate(serial, revoked_at, reason, critical))
    return tuple(out)


@dataclass(slots=True)
class _Extensions:
    # OID -> the one DER value inside extnValue (understood extensions only)
    values: dict[str, Tlv] = field(default_factory=dict)
    critical: set[str] = field(default_factory=set)


def _explicit_extensions(der: bytes, wrapper: Tlv) -> Tlv:
    inner = _der.children(der, wrapper)
    if len(inner) != 1 or inner[0].tag != _der.TAG_SEQUENCE:
        raise DerError("crlExtensions: expected one SEQUENCE", wrapper.body)
    return inner[0]


def _extensions(der: bytes, sequence: Tlv) -> _Extensions:
    if sequence.tag != _der.TAG_SEQUENCE:
        raise DerError("Extensions: expected SEQUENCE", sequence.start)
    items = _der.children(der, sequence, max_count=MAX_EXTENSIONS)
    if not items:
        raise DerError("Extensions: empty SEQUENCE", sequence.start)
    out = _Extensions()
    seen: set[str] = set()
    for item in items:
        oid, critical, value_tlv = _extension(der, item)
        if oid in seen:
            raise CrlMalformed(f"extension {oid} appears twice")
        seen.add(oid)
        if critical:
            out.critical.add(oid)
        if oid in UNDERSTOOD_CRL_EXTENSIONS | UNDERSTOOD_ENTRY_EXTENSIONS:
            content = _der.read_tlv(der, value_tlv.body, value_tlv.end)
            if content.end != value_tlv.end:
                raise DerError(f"extension {oid}: trailing data in extnValue", content.end)
            out.values[oid] = content
    return out


def _extension(der: bytes, item: Tlv) -> tuple[str, bool, Tlv]:
    """(OID, critical, the extnValue OCTET STRING) of one Extension."""
    if item.tag != _der.TAG_SEQUENCE:
        raise DerError("Extension: expected SEQUENCE", item.start)
    parts = _der.children(der, item)
    if len(parts) == 3:
        oid_tlv, crit_tlv, value_tlv = parts
        if not _der.decode_boolean(der, crit_tlv):
            raise DerError("Extension: critical FALSE must be omitted in DER", crit_tlv.start)
        critical = True
    elif len(parts) == 2:
        oid_tlv, value_tlv = parts
        critical = False
    else:
        raise DerError("Extension must have 2 or 3 elements", item.body)
    if value_tlv.tag != _der.TAG_OCTET_STRING:
        raise DerError("Extension: extnValue must be OCTET STRING", value_tlv.start)
    return _der.decode_oid(der, oid_tlv), critical, value_tlv


def _decode_crl_number(der: bytes, tlv: Tlv) -> int:
    number = _der.decode_integer(der, tlv)
    if number < 0 or tlv.end - tlv.body > MAX_CRL_NUMBER_OCTETS:
        raise CrlMalformed("cRLNumber must be non-negative and at most 20 octets")
    return number


def _decode_reason(der: bytes, tlv: Tlv) -> RevocationReason:
    if tlv.tag != _TAG_ENUMERATED:
        raise DerError("reasonCode: expected ENUMERATED", tlv.start)
    # ENUMERATED has INTEGER's encoding rules (X.690 §8.4).
    value = _der.decode_integer(der, Tlv(_der.TAG_INTEGER, tlv.start, tlv.body, tlv.end))
    try:
        return RevocationReason(value)
    except ValueError:
        raise CrlMalformed(f"reasonCode {value} is not a CRLReason") from None


# --- verification ---------------------------------------------------------------------------


def verify_crl(
    crl: CertificateRevocationList,
    issuer: Certificate,
    *,
    at: datetime,
    signer_ids: Sequence[bytes] = CRL_SIGNER_IDS,
) -> None:
    """Raise a :class:`CrlInvalid` subclass unless ``issuer`` signed ``crl`` and it is current
    at ``at``; never returns False. ``issuer`` must itself be trusted by the caller (pinned,
    or verified to the pinned root).

    Checks, in order: issuer name (exact bytes, as chains are built) and key id; the issuer is
    a CA with keyUsage cRLSign; no unknown critical extension on the list or an entry; the
    signature (under one of ``signer_ids``); ``thisUpdate <= at <= nextUpdate``.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("'at' must be a timezone-aware datetime")
    if crl.issuer_der != issuer.subject_der:
        raise CrlIssuerMismatch("the CRL's issuer is not this CA's subject name")
    if (
        crl.authority_key_id is not None
        and issuer.subject_key_id is not None
        and crl.authority_key_id != issuer.subject_key_id
    ):
        raise CrlIssuerMismatch("the CRL's authority key id is not this CA's key id")
    if not issuer.is_ca or issuer.key_usage is None or KeyUsage.CRL_SIGN not in issuer.key_usage:
        raise CrlKeyUsage("the issuing certificate is not a CA with keyUsage cRLSign")
    unknown = set(crl.critical_extensions - UNDERSTOOD_CRL_EXTENSIONS)
    for entry in crl.revoked:
        unknown |= entry.critical_extensions - UNDERSTOOD_ENTRY_EXTENSIONS
    if unknown:
        raise CrlUnknownCriticalExtension(f"unsupported critical extension(s) {sorted(unknown)}")
    if not _signed_by(crl, issuer, signer_ids):
        raise CrlSignatureInvalid(
            f"SM2-with-SM3 signature does not verify under the CA's key (sm3:"
            f"{crl.fingerprint[:8].hex()})"
        )
    if at < crl.this_update:
        raise CrlNotYetValid(f"thisUpdate is {crl.this_update.isoformat()}, in the future")
    if at > crl.next_update:
        raise CrlExpired(f"nextUpdate {crl.next_update.isoformat()} has passed")


def _signed_by(crl: CertificateRevocationList, issuer: Certificate, ids: Sequence[bytes]) -> bool:
    for signer_id in ids:
        try:
            sm2_verify(issuer.public_key, crl.tbs_der, crl.signature, signer_id=signer_id)
        except SignatureInvalid:
            continue
        return True
    return False


# --- building -------------------------------------------------------------------------------


def build_crl(
    *,
    issuer: Certificate,
    issuer_key: SM2PrivateKey,
    revoked: Iterable[RevokedCertificate],
    this_update: datetime,
    next_update: datetime,
    crl_number: int,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> CertificateRevocationList:
    """Build and sign a v2 CRL: cRLNumber and authorityKeyIdentifier (non-critical), a
    reasonCode on each entry that has one. Parsed back with the strict reader before it is
    returned, as the certificate builders do. Dates must be timezone-aware (whole seconds)."""
    if issuer_key.public_key != issuer.public_key:
        raise ValueError("issuer_key does not match the issuer certificate's public key")
    if not 0 <= crl_number < 1 << 159:
        raise ValueError("crl_number must be non-negative and fit 20 octets")
    this_u, next_u = _whole_seconds(this_update), _whole_seconds(next_update)
    if next_u <= this_u:
        raise ValueError("next_update must be later than this_update")
    entries = []
    for entry in revoked:
        entry_fields: dict[str, object] = {
            "user_certificate": entry.serial_number,
            "revocation_date": _time(_whole_seconds(entry.revoked_at)),
        }
        if entry.reason is not None:
            entry_fields["crl_entry_extensions"] = [
                {"extn_id": "crl_reason", "critical": False, "extn_value": int(entry.reason)}
            ]
        entries.append(entry_fields)
    extensions: list[dict[str, object]] = [
        {"extn_id": "crl_number", "critical": False, "extn_value": crl_number}
    ]
    if issuer.subject_key_id is not None:
        extensions.append(
            {
                "extn_id": "authority_key_identifier",
                "critical": False,
                "extn_value": {"key_identifier": issuer.subject_key_id},
            }
        )
    algorithm = asn1_algos.SignedDigestAlgorithm({"algorithm": SM2_WITH_SM3_OID})
    tbs_fields: dict[str, object] = {
        "version": "v2",
        "signature": algorithm,
        "issuer": asn1_x509.Name.load(issuer.subject_der),
        "this_update": _time(this_u),
        "next_update": _time(next_u),
        "crl_extensions": extensions,
    }
    if entries:
        tbs_fields["revoked_certificates"] = entries
    tbs = asn1_crl.TbsCertList(tbs_fields)
    tbs_der: bytes = tbs.dump()
    signature = sm2_sign(issuer_key, tbs_der, signer_id=signer_id)
    crl = asn1_crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": algorithm,
            "signature": signature_to_der(signature),
        }
    )
    built = load_crl_der(crl.dump())
    assert built.tbs_der == tbs_der
    return built


def _whole_seconds(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("CRL dates must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


def _time(moment: datetime) -> asn1_x509.Time:
    # RFC 5280 §5.1.2.4: UTCTime through 2049, GeneralizedTime after.
    if 1950 <= moment.year <= 2049:
        return asn1_x509.Time(name="utc_time", value=moment)
    return asn1_x509.Time(name="general_time", value=moment)
