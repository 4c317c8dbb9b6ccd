"""The parsed certificate, its strict loader (DER and PEM) and the SM3 fingerprint.

A :class:`Certificate` is immutable and holds every field verification needs, extracted once
at load, so that verifying a chain is pure comparisons plus the SM2 signature checks.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sscard.crypto import (
    CryptoError,
    SM2PublicKey,
    signature_from_der,
    sm3,
)

from . import _der
from ._der import DerError, Tlv
from ._errors import CertificateMalformed

#: id-ecPublicKey, the SPKI algorithm of an SM2 key (with named curve sm2, below).
EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
#: The SM2 curve, as the namedCurve parameter of id-ecPublicKey (GM/T 0006).
SM2_CURVE_OID = "1.2.156.10197.1.301"
#: SM2-with-SM3 signature algorithm (GM/T 0006); GM/T 0015 encodes it without parameters.
SM2_WITH_SM3_OID = "1.2.156.10197.1.501"

OID_COMMON_NAME = "2.5.4.3"
OID_SERIAL_NUMBER = "2.5.4.5"
OID_COUNTRY = "2.5.4.6"
OID_LOCALITY = "2.5.4.7"
OID_STATE = "2.5.4.8"
OID_ORGANIZATION = "2.5.4.10"
OID_ORGANIZATIONAL_UNIT = "2.5.4.11"

OID_SUBJECT_KEY_ID = "2.5.29.14"
OID_KEY_USAGE = "2.5.29.15"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_AUTHORITY_KEY_ID = "2.5.29.35"

#: Extensions this module processes, and so may be critical (RFC 5280 §4.2).
UNDERSTOOD_EXTENSIONS = frozenset(
    {OID_SUBJECT_KEY_ID, OID_KEY_USAGE, OID_BASIC_CONSTRAINTS, OID_AUTHORITY_KEY_ID}
)

#: The exact DER of AlgorithmIdentifier { sm2-with-SM3 } with absent parameters. Comparing
#: bytes both checks the algorithm and rejects a NULL/other parameter in one step.
SM2_WITH_SM3_ALGORITHM_DER = bytes.fromhex("300a06082a811ccf55018375")

#: Bound on one certificate. A card certificate (EF 0018) is well under 1 KiB; 16 KiB leaves
#: room for CA certificates with long policies and still bounds the work done on hostile input.
MAX_CERTIFICATE_DER_BYTES = 16 * 1024
#: Bound on a PEM bundle (intermediates) so a hostile file cannot make us decode without end.
MAX_PEM_CERTIFICATES = 16
#: Base64 of a maximal certificate plus line breaks and some explanatory text around it.
MAX_PEM_BYTES_PER_CERTIFICATE = MAX_CERTIFICATE_DER_BYTES * 2
MAX_EXTENSIONS = 32
MAX_NAME_ATTRIBUTES = 32
#: RFC 5280 §4.1.2.2: serial numbers are at most 20 octets.
MAX_SERIAL_OCTETS = 20

_PEM_BLOCK_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL
)


class KeyUsage(StrEnum):
    """keyUsage bits (RFC 5280 §4.2.1.3); the value is the bit number's name."""

    DIGITAL_SIGNATURE = "digitalSignature"
    NON_REPUDIATION = "nonRepudiation"
    KEY_ENCIPHERMENT = "keyEncipherment"
    DATA_ENCIPHERMENT = "dataEncipherment"
    KEY_AGREEMENT = "keyAgreement"
    KEY_CERT_SIGN = "keyCertSign"
    CRL_SIGN = "cRLSign"
    ENCIPHER_ONLY = "encipherOnly"
    DECIPHER_ONLY = "decipherOnly"


#: Bit number → usage, in RFC 5280 order.
KEY_USAGE_BITS: tuple[KeyUsage, ...] = tuple(KeyUsage)


def fingerprint_sm3(der: bytes) -> bytes:
    """SM3 over the whole certificate DER (32 bytes): the key the gateway caches by.

    Because :func:`load_der` accepts only DER, one certificate has exactly one fingerprint.
    """
    return sm3(der)


@dataclass(frozen=True, slots=True, eq=False)
class Certificate:
    """A parsed SM2 X.509 v3 certificate. Equality is on the DER bytes.

    Build one with :func:`load_der` / :func:`load_pem` or the builders; never by hand.
    """

    der: bytes = field(repr=False)
    #: The exact bytes the issuer signed (``tbsCertificate`` as received).
    tbs_der: bytes = field(repr=False)
    serial_number: int
    issuer_der: bytes = field(repr=False)
    subject_der: bytes = field(repr=False)
    #: (attribute OID, value) in encoding order, e.g. ``("2.5.4.3", "Shanghai SSC Root")``.
    subject_attributes: tuple[tuple[str, str], ...] = field(repr=False)
    not_before: datetime
    not_after: datetime
    public_key: SM2PublicKey = field(repr=False)
    #: The issuer's signature as 64 bytes r‖s (decoded from the DER Ecdsa-Sig-Value).
    signature: bytes = field(repr=False)
    is_ca: bool
    #: pathLenConstraint, or None when absent (no limit).
    path_length: int | None
    #: The keyUsage bits, or None when the extension is absent.
    key_usage: frozenset[KeyUsage] | None
    subject_key_id: bytes | None = field(repr=False)
    authority_key_id: bytes | None = field(repr=False)
    #: OIDs of the critical extensions (including understood ones).
    critical_extensions: frozenset[str] = field(repr=False)
    #: :func:`fingerprint_sm3` of :attr:`der`.
    fingerprint: bytes = field(repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Certificate):
            return NotImplemented
        return self.der == other.der

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def common_name(self) -> str | None:
        return self._single(OID_COMMON_NAME)

    @property
    def card_sn(self) -> str | None:
        """The subject serialNumber attribute (2.5.4.5): the card's 卡识别码 on a card cert."""
        return self._single(OID_SERIAL_NUMBER)

    @property
    def is_self_issued(self) -> bool:
        return self.issuer_der == self.subject_der

    def _single(self, oid: str) -> str | None:
        for attr_oid, attr_value in self.subject_attributes:
            if attr_oid == oid:
                return attr_value
        return None

    def to_der(self) -> bytes:
        return self.der

    def to_pem(self) -> bytes:
        """``-----BEGIN CERTIFICATE-----`` PEM with 64-column base64 (RFC 7468)."""
        b64 = base64.b64encode(self.der)
        lines = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def load_der(der: bytes) -> Certificate:
    """Parse one DER certificate; raises :class:`CertificateMalformed` on anything else.

    Accepted: strict DER, X.509 v3, SM2-with-SM3 (no parameters) in both signature fields, an
    SM2 SubjectPublicKeyInfo, RFC 5280 time forms, positive serial of at most 20 octets, no
    duplicate extensions or subject serialNumber attributes. Unknown *critical* extensions
    parse fine; :func:`sscard.certs.verify_chain` rejects them.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TypeError(f"certificate DER must be bytes, not {type(der).__name__}")
    der = bytes(der)
    if len(der) > MAX_CERTIFICATE_DER_BYTES:
        raise CertificateMalformed(
            f"certificate is {len(der)} bytes, over the {MAX_CERTIFICATE_DER_BYTES} limit"
        )
    try:
        return _parse(der)
    except DerError as exc:
        raise CertificateMalformed(f"certificate is not valid DER: {exc}") from None


def load_pem(pem: bytes | str) -> Certificate:
    """Parse exactly one ``CERTIFICATE`` PEM block (text around it is ignored, RFC 7468)."""
    certs = load_pem_all(pem)
    if len(certs) != 1:
        raise CertificateMalformed(f"expected one PEM certificate, found {len(certs)}")
    return certs[0]


def load_pem_all(pem: bytes | str, *, max_count: int = MAX_PEM_CERTIFICATES) -> list[Certificate]:
    """Parse every ``CERTIFICATE`` block of a PEM bundle, in order (at least one).

    Any other PEM label (a key, a CSR) is an error rather than skipped: a bundle that mixes in
    a private key is a mistake worth stopping at.
    """
    data = pem.encode("utf-8") if isinstance(pem, str) else bytes(pem)
    if len(data) > max_count * MAX_PEM_BYTES_PER_CERTIFICATE:
        raise CertificateMalformed(f"PEM input of {len(data)} bytes is over the limit")
    certs: list[Certificate] = []
    for match in _PEM_BLOCK_RE.finditer(data):
        begin, body, end = match.group(1), match.group(2), match.group(3)
        if begin != b"CERTIFICATE" or end != b"CERTIFICATE":
            raise CertificateMalformed(f"unexpected PEM block {begin.decode()!r}")
        if len(certs) == max_count:
            raise CertificateMalformed(f"more than {max_count} certificates in PEM")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            raise CertificateMalformed("PEM body is not valid base64") from None
        certs.append(load_der(der))
    if not certs:
        raise CertificateMalformed("no PEM CERTIFICATE block found")
    return certs


def load(data: bytes | str) -> Certificate:
    """DER or PEM, told apart by the first byte (DER starts with SEQUENCE 0x30)."""
    if isinstance(data, str):
        return load_pem(data)
    if data[:1] == b"\x30":
        return load_der(data)
    return load_pem(data)


# --- parsing --------------------------------------------------------------------------------


def _parse(der: bytes) -> Certificate:
    top = _der.expect(der, 0, len(der), _der.TAG_SEQUENCE, "Certificate")
    if top.end != len(der):
        raise DerError("trailing data after Certificate", top.end)
    parts = _der.children(der, top)
    if len(parts) != 3:
        raise DerError("Certificate must have 3 elements", top.body)
    tbs, outer_alg, sig_value = parts
    if tbs.tag != _der.TAG_SEQUENCE:
        raise DerError("tbsCertificate: expected SEQUENCE", tbs.start)
    if _der.der_bytes(der, outer_alg) != SM2_WITH_SM3_ALGORITHM_DER:
        raise CertificateMalformed("signatureAlgorithm is not SM2-with-SM3 without parameters")

    fields = _der.children(der, tbs, max_count=10)
    serial = _parse_version_and_serial(der, fields)
    if _der.der_bytes(der, fields[2]) != SM2_WITH_SM3_ALGORITHM_DER:
        raise CertificateMalformed("tbsCertificate.signature is not SM2-with-SM3")

    issuer_tlv, validity_tlv, subject_tlv, spki_tlv = fields[3:7]
    if issuer_tlv.tag != _der.TAG_SEQUENCE:
        # Only the outer shape: chaining compares these bytes with the issuer's subject, which
        # was fully parsed when the issuer was loaded, and the signature covers them.
        raise DerError("issuer: expected SEQUENCE", issuer_tlv.start)
    subject_attributes = _name_attributes(der, subject_tlv)
    if sum(1 for oid, _ in subject_attributes if oid == OID_SERIAL_NUMBER) > 1:
        # Two serialNumber (card_sn) attributes would make "which card is this" ambiguous.
        raise CertificateMalformed("subject has more than one serialNumber attribute")
    not_before, not_after = _parse_validity(der, validity_tlv)
    public_key = _parse_public_key(der, spki_tlv)
    ext = _parse_extensions(der, _find_extensions(fields[7:]))
    signature = _parse_signature(der, sig_value)

    return Certificate(
        der=der,
        tbs_der=_der.der_bytes(der, tbs),
        serial_number=serial,
        issuer_der=_der.der_bytes(der, issuer_tlv),
        subject_der=_der.der_bytes(der, subject_tlv),
        subject_attributes=subject_attributes,
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        signature=signature,
        is_ca=ext.is_ca,
        path_length=ext.path_length,
        key_usage=ext.key_usage,
        subject_key_id=ext.subject_key_id,
        authority_key_id=ext.authority_key_id,
        critical_extensions=frozenset(ext.critical),
        fingerprint=fingerprint_sm3(der),
    )


def _parse_version_and_serial(der: bytes, fields: list[Tlv]) -> int:
    if len(fields) < 7 or fields[0].tag != 0xA0:
        raise CertificateMalformed("only X.509 v3 certificates are accepted (version missing)")
    version = _der.children(der, fields[0])
    if len(version) != 1 or _der.decode_integer(der, version[0]) != 2:
        raise CertificateMalformed("only X.509 v3 certificates are accepted")
    serial_tlv = fields[1]
    serial = _der.decode_integer(der, serial_tlv)
    if serial <= 0 or serial_tlv.end - serial_tlv.body > MAX_SERIAL_OCTETS:
        raise CertificateMalformed("serialNumber must be positive and at most 20 octets")
    return serial


def _parse_validity(der: bytes, validity: Tlv) -> tuple[datetime, datetime]:
    if validity.tag != _der.TAG_SEQUENCE:
        raise DerError("validity: expected SEQUENCE", validity.start)
    times = _der.children(der, validity)
    if len(times) != 2:
        raise DerError("validity must have notBefore and notAfter", validity.body)
    return _der.decode_time(der, times[0]), _der.decode_time(der, times[1])


def _parse_public_key(der: bytes, spki: Tlv) -> SM2PublicKey:
    if spki.tag != _der.TAG_SEQUENCE:
        raise DerError("subjectPublicKeyInfo: expected SEQUENCE", spki.start)
    try:
        # Strict prefix comparison in sscard.crypto: id-ecPublicKey, curve sm2, 04||X||Y on
        # the curve. Anything else (P-256, compressed points, parameters) is refused.
        return SM2PublicKey.from_spki_der(_der.der_bytes(der, spki))
    except CryptoError as exc:
        raise CertificateMalformed(f"subject public key is not an SM2 key: {exc}") from None


def _find_extensions(optional_fields: list[Tlv]) -> Tlv | None:
    found: Tlv | None = None
    for extra in optional_fields:
        # issuerUniqueID [1] and subjectUniqueID [2] are tolerated and ignored (RFC 5280 says
        # CAs must not emit them, but they carry no meaning we rely on); [3] is extensions.
        if extra.tag == 0xA3 and found is None:
            found = extra
        elif extra.tag not in (0x81, 0xA1, 0x82, 0xA2) or found is not None:
            raise CertificateMalformed(f"unexpected tbsCertificate field tag {extra.tag:#04x}")
    return found


def _parse_signature(der: bytes, sig_value: Tlv) -> bytes:
    octets, unused = _der.decode_bit_string(der, sig_value)
    if unused:
        raise CertificateMalformed("signatureValue must be whole octets")
    try:
        return signature_from_der(octets)
    except CryptoError as exc:
        raise CertificateMalformed(f"signatureValue is not an SM2 signature: {exc}") from None


def _name_attributes(der: bytes, name: Tlv) -> tuple[tuple[str, str], ...]:
    """Name ::= SEQUENCE OF SET OF AttributeTypeAndValue, flattened in order."""
    if name.tag != _der.TAG_SEQUENCE:
        raise DerError("Name: expected SEQUENCE", name.start)
    out: list[tuple[str, str]] = []
    for rdn in _der.children(der, name, max_count=MAX_NAME_ATTRIBUTES):
        if rdn.tag != _der.TAG_SET:
            raise DerError("RelativeDistinguishedName: expected SET", rdn.start)
        atvs = _der.children(der, rdn, max_count=MAX_NAME_ATTRIBUTES)
        if not atvs:
            raise DerError("empty RelativeDistinguishedName", rdn.start)
        for atv in atvs:
            if atv.tag != _der.TAG_SEQUENCE:
                raise DerError("AttributeTypeAndValue: expected SEQUENCE", atv.start)
            pair = _der.children(der, atv)
            if len(pair) != 2:
                raise DerError("AttributeTypeAndValue must have type and value", atv.body)
            out.append((_der.decode_oid(der, pair[0]), _der.decode_string(der, pair[1])))
            if len(out) > MAX_NAME_ATTRIBUTES:
                raise DerError(f"more than {MAX_NAME_ATTRIBUTES} name attributes", atv.start)
    return tuple(out)


@dataclass(slots=True)
class _Extensions:
    is_ca: bool = False
    path_length: int | None = None
    key_usage: frozenset[KeyUsage] | None = None
    subject_key_id: bytes | None = None
    authority_key_id: bytes | None = None
    critical: set[str] = field(default_factory=set)


def _parse_extensions(der: bytes, wrapper: Tlv | None) -> _Extensions:
    ext = _Extensions()
    if wrapper is None:
        return ext
    inner = _der.children(der, wrapper)
    if len(inner) != 1 or inner[0].tag != _der.TAG_SEQUENCE:
        raise DerError("extensions: expected one SEQUENCE", wrapper.body)
    items = _der.children(der, inner[0], max_count=MAX_EXTENSIONS)
    if not items:
        raise DerError("extensions: empty SEQUENCE (RFC 5280 requires at least one)", wrapper.body)
    seen: set[str] = set()
    for item in items:
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
        oid = _der.decode_oid(der, oid_tlv)
        if value_tlv.tag != _der.TAG_OCTET_STRING:
            raise DerError("Extension: extnValue must be OCTET STRING", value_tlv.start)
        if oid in seen:
            raise CertificateMalformed(f"extension {oid} appears twice (RFC 5280 §4.2)")
        seen.add(oid)
        if critical:
            ext.critical.add(oid)
        _parse_known_extension(der, oid, value_tlv, ext)
    return ext


def _parse_known_extension(der: bytes, oid: str, octets: Tlv, ext: _Extensions) -> None:
    if oid not in UNDERSTOOD_EXTENSIONS:
        return
    # The extnValue OCTET STRING holds exactly one DER value.
    content = _der.read_tlv(der, octets.body, octets.end)
    if content.end != octets.end:
        raise DerError(f"extension {oid}: trailing data in extnValue", content.end)
    if oid == OID_BASIC_CONSTRAINTS:
        ext.is_ca, ext.path_length = _parse_basic_constraints(der, content)
    elif oid == OID_KEY_USAGE:
        ext.key_usage = _parse_key_usage(der, content)
    elif oid == OID_SUBJECT_KEY_ID:
        if content.tag != _der.TAG_OCTET_STRING:
            raise DerError("subjectKeyIdentifier: expected OCTET STRING", content.start)
        ext.subject_key_id = _der.value(der, content)
    else:  # OID_AUTHORITY_KEY_ID
        ext.authority_key_id = _parse_authority_key_id(der, content)


def _parse_basic_constraints(der: bytes, content: Tlv) -> tuple[bool, int | None]:
    if content.tag != _der.TAG_SEQUENCE:
        raise DerError("basicConstraints: expected SEQUENCE", content.start)
    items = _der.children(der, content)
    is_ca = False
    path_length: int | None = None
    pos = 0
    if pos < len(items) and items[pos].tag == _der.TAG_BOOLEAN:
        if not _der.decode_boolean(der, items[pos]):
            raise DerError("basicConstraints: cA FALSE must be omitted in DER", items[pos].start)
        is_ca = True
        pos += 1
    if pos < len(items):
        path_length = _der.decode_integer(der, items[pos])
        if path_length < 0:
            raise CertificateMalformed("basicConstraints: negative pathLenConstraint")
        pos += 1
    if pos != len(items):
        raise DerError("basicConstraints: unexpected element", content.start)
    if path_length is not None and not is_ca:
        # RFC 5280 §4.2.1.9: pathLenConstraint is meaningless (and forbidden) without cA.
        raise CertificateMalformed("basicConstraints: pathLenConstraint without cA")
    return is_ca, path_length


def _parse_key_usage(der: bytes, content: Tlv) -> frozenset[KeyUsage]:
    bits, unused = _der.decode_bit_string(der, content)
    total_bits = len(bits) * 8 - unused
    usages = frozenset(
        usage
        for index, usage in enumerate(KEY_USAGE_BITS)
        if index < total_bits and bits[index // 8] & (0x80 >> (index % 8))
    )
    if not usages:
        raise CertificateMalformed("keyUsage has no bit set (RFC 5280 §4.2.1.3)")
    return usages


def _parse_authority_key_id(der: bytes, content: Tlv) -> bytes | None:
    if content.tag != _der.TAG_SEQUENCE:
        raise DerError("authorityKeyIdentifier: expected SEQUENCE", content.start)
    key_id: bytes | None = None
    for part in _der.children(der, content, max_count=3):
        if part.tag == 0x80:  # [0] IMPLICIT KeyIdentifier
            key_id = _der.value(der, part)
        elif part.tag not in (0xA1, 0x82):  # authorityCertIssuer, ...SerialNumber: unused
            raise DerError("authorityKeyIdentifier: unexpected element", part.start)
    return key_id
