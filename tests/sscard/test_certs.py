"""sscard.certs: build the card PKI, parse strictly, verify to a pinned root.

Every failure code is triggered by a real defect in a real certificate (not by a mock), and
every certificate built here is cross-checked against asn1crypto's independent parser.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard.certs import (
    MAX_CERTIFICATE_DER_BYTES,
    MAX_INTERMEDIATES,
    SM2_WITH_SM3_OID,
    Certificate,
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
    KeyUsage,
    RawExtension,
    _der,
    _verify,
    build_card_certificate,
    build_certificate,
    build_issuing_ca,
    build_name,
    build_root_ca,
    fingerprint_sm3,
    key_identifier,
    load,
    load_der,
    load_pem,
    load_pem_all,
    random_serial_number,
    verify_chain,
)
from sscard.crypto import SM2PrivateKey, signature_to_der, sm2_sign, sm2_verify, sm3

CARD_SN = "310000D1560000050123456789ABCDEF"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
ROOT_END = datetime(2044, 1, 1, tzinfo=UTC)
CA_END = datetime(2034, 1, 1, tzinfo=UTC)
CARD_START = datetime(2025, 1, 1, tzinfo=UTC)
CARD_END = datetime(2030, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)
ROOT_NAME = [("C", "CN"), ("O", "上海市社会保障卡服务中心"), ("CN", "SSC Test Root CA")]
CA_NAME = [("C", "CN"), ("O", "上海市社会保障卡服务中心"), ("CN", "SSC Test Issuing CA")]
# An unknown private OID (2.25 UUID arc) for the critical-extension test.
UNKNOWN_OID = "2.25.329800735698586629295641978511506172918"


@dataclasses.dataclass(frozen=True)
class Pki:
    root_key: SM2PrivateKey
    ca_key: SM2PrivateKey
    card_key: SM2PrivateKey
    root: Certificate
    ca: Certificate
    card: Certificate


def _make_pki(
    root_name: list[tuple[str, str]] = ROOT_NAME, ca_name: list[tuple[str, str]] = CA_NAME
) -> Pki:
    root_key, ca_key, card_key = (SM2PrivateKey.generate() for _ in range(3))
    root = build_root_ca(root_key, root_name, not_before=T0, not_after=ROOT_END)
    ca = build_issuing_ca(
        ca_key.public_key,
        ca_name,
        issuer=root,
        issuer_key=root_key,
        not_before=T0,
        not_after=CA_END,
    )
    card = build_card_certificate(
        card_key.public_key,
        card_sn=CARD_SN,
        common_name="card 0123456789ABCDEF",
        issuer=ca,
        issuer_key=ca_key,
        not_before=CARD_START,
        not_after=CARD_END,
    )
    return Pki(root_key, ca_key, card_key, root, ca, card)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return _make_pki()


@pytest.fixture(scope="module")
def other_pki() -> Pki:
    return _make_pki(
        [("C", "CN"), ("CN", "Some Other Root")], [("C", "CN"), ("CN", "Some Other Issuing CA")]
    )


def _leaf(pki: Pki, **overrides: object) -> Certificate:
    """A card-like leaf under pki.ca with chosen defects."""
    key = SM2PrivateKey.generate()
    args: dict[str, object] = {
        "subject": [("C", "CN"), ("serialNumber", CARD_SN), ("CN", "card")],
        "subject_public_key": key.public_key,
        "issuer": pki.ca,
        "issuer_key": pki.ca_key,
        "not_before": CARD_START,
        "not_after": CARD_END,
        "is_ca": False,
        "key_usage": [KeyUsage.DIGITAL_SIGNATURE],
    }
    args.update(overrides)
    return build_certificate(**args)  # type: ignore[arg-type]


def _code(exc_info: pytest.ExceptionInfo[CertificateError]) -> str:
    return exc_info.value.code


# --- the good path -------------------------------------------------------------------------


def test_chain_verifies_and_exposes_card_key_and_card_sn(pki: Pki) -> None:
    verified = verify_chain(pki.card, [pki.ca], pki.root, at=NOW)
    assert verified.public_key == pki.card_key.public_key
    assert verified.card_sn == CARD_SN
    assert verified.fingerprint == fingerprint_sm3(pki.card.der) == sm3(pki.card.der)
    assert verified.chain == (pki.card, pki.ca, pki.root)
    assert verified.valid_from == CARD_START
    assert verified.valid_until == CARD_END
    assert verified.is_valid_at(NOW)
    assert not verified.is_valid_at(CARD_END + timedelta(seconds=1))


def test_verify_accepts_der_bytes_unordered_extras_and_the_root_in_intermediates(
    pki: Pki, other_pki: Pki
) -> None:
    intermediates: list[Certificate | bytes] = [
        other_pki.ca,
        pki.root.der,
        pki.ca,
        pki.ca.der,
        other_pki.root,
    ]
    verified = verify_chain(pki.card.der, intermediates, pki.root, at=NOW)
    assert verified.chain == (pki.card, pki.ca, pki.root)


def test_card_issued_directly_by_root_verifies(pki: Pki) -> None:
    card = build_card_certificate(
        SM2PrivateKey.generate().public_key,
        card_sn=CARD_SN,
        common_name="c",
        issuer=pki.root,
        issuer_key=pki.root_key,
        not_before=CARD_START,
        not_after=CARD_END,
    )
    assert verify_chain(card, [], pki.root, at=NOW).chain == (card, pki.root)


def test_validity_bounds_are_inclusive(pki: Pki) -> None:
    verify_chain(pki.card, [pki.ca], pki.root, at=CARD_START)
    verify_chain(pki.card, [pki.ca], pki.root, at=CARD_END)


def test_verification_result_is_the_same_from_the_signature_memo(pki: Pki) -> None:
    for _ in range(3):
        assert verify_chain(pki.card, [pki.ca], pki.root, at=NOW).card_sn == CARD_SN
    with pytest.raises(CertificateSignatureInvalid):
        verify_chain(pki.card, [pki.ca], pki.root, at=NOW, signer_id=b"8765432187654321")


# --- profile of what the builders make -----------------------------------------------------


def test_root_profile(pki: Pki) -> None:
    root = pki.root
    assert root.is_ca
    assert root.path_length is None
    assert root.key_usage == frozenset({KeyUsage.KEY_CERT_SIGN, KeyUsage.CRL_SIGN})
    assert root.subject_key_id == key_identifier(root.public_key)
    assert root.authority_key_id is None
    assert root.is_self_issued
    assert root.critical_extensions == {"2.5.29.19", "2.5.29.15"}
    assert root.common_name == "SSC Test Root CA"


def test_issuing_ca_profile(pki: Pki) -> None:
    ca = pki.ca
    assert ca.is_ca
    assert ca.path_length == 0
    assert ca.key_usage == frozenset({KeyUsage.KEY_CERT_SIGN, KeyUsage.CRL_SIGN})
    assert ca.authority_key_id == pki.root.subject_key_id
    assert ca.subject_key_id == key_identifier(ca.public_key)
    assert ca.issuer_der == pki.root.subject_der


def test_card_profile(pki: Pki) -> None:
    card = pki.card
    assert not card.is_ca
    assert card.path_length is None
    assert card.key_usage == frozenset({KeyUsage.DIGITAL_SIGNATURE})
    assert card.card_sn == CARD_SN
    assert card.common_name == "card 0123456789ABCDEF"
    assert card.authority_key_id == pki.ca.subject_key_id
    assert (card.not_before, card.not_after) == (CARD_START, CARD_END)
    assert 0 < card.serial_number < 1 << 159


@pytest.mark.parametrize("which", ["root", "ca", "card"])
def test_asn1crypto_reads_the_same_fields(pki: Pki, which: str) -> None:
    """Cross-check of the lean parser and builder against an independent DER codec."""
    ours: Certificate = getattr(pki, which)
    theirs = asn1_x509.Certificate.load(ours.der, strict=True)
    assert theirs.dump(force=True) == ours.der  # our DER is canonical DER
    tbs = theirs["tbs_certificate"]
    assert tbs["version"].native == "v3"
    assert theirs["signature_algorithm"]["algorithm"].dotted == SM2_WITH_SM3_OID
    assert theirs["signature_algorithm"]["parameters"].native is None
    assert tbs["signature"].dump() == theirs["signature_algorithm"].dump()
    assert tbs["serial_number"].native == ours.serial_number
    assert tbs["validity"]["not_before"].native == ours.not_before
    assert tbs["validity"]["not_after"].native == ours.not_after
    assert tbs["issuer"].dump() == ours.issuer_der
    assert tbs["subject"].dump() == ours.subject_der
    assert theirs.ca == ours.is_ca
    assert theirs.max_path_length == ours.path_length
    names = {
        "digital_signature": "digitalSignature",
        "key_cert_sign": "keyCertSign",
        "crl_sign": "cRLSign",
    }
    assert {names[u] for u in theirs.key_usage_value.native} == set(ours.key_usage or ())
    assert theirs.key_identifier == ours.subject_key_id
    assert theirs.authority_key_identifier == ours.authority_key_id
    spki = tbs["subject_public_key_info"]
    assert spki["algorithm"]["algorithm"].dotted == "1.2.840.10045.2.1"
    assert spki["algorithm"]["parameters"].chosen.dotted == "1.2.156.10197.1.301"
    assert spki["public_key"].native == ours.public_key.to_bytes()
    assert signature_to_der(ours.signature) == theirs["signature_value"].native
    assert tbs.dump() == ours.tbs_der
    subject = {a["type"].dotted: a["value"].native for rdn in tbs["subject"].chosen for a in rdn}
    assert subject.get("2.5.4.5") == ours.card_sn


def test_subject_strings_are_printable_and_utf8_as_rfc5280_wants(pki: Pki) -> None:
    theirs = asn1_x509.Certificate.load(pki.card.der)
    kinds = {
        a["type"].dotted: a["value"].chosen.__class__.__name__
        if isinstance(a["value"], asn1_core.Choice)
        else a["value"].__class__.__name__
        for rdn in theirs.subject.chosen
        for a in rdn
    }
    assert kinds["2.5.4.6"] == "PrintableString"
    assert kinds["2.5.4.5"] == "PrintableString"
    assert kinds["2.5.4.3"] == "UTF8String"


def test_dates_from_2050_use_generalized_time() -> None:
    key = SM2PrivateKey.generate()
    end = datetime(2060, 3, 4, 5, 6, 7, tzinfo=UTC)
    root = build_root_ca(key, [("CN", "r")], not_before=T0, not_after=end)
    assert root.not_after == end
    validity = asn1_x509.Certificate.load(root.der)["tbs_certificate"]["validity"]
    assert validity["not_before"].name == "utc_time"
    assert validity["not_after"].name == "general_time"


def test_builder_rounds_subseconds_down_and_normalises_to_utc() -> None:
    key = SM2PrivateKey.generate()
    cst = datetime(2025, 1, 1, 8, 0, 0, 999_999, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=8))
    )
    root = build_root_ca(key, [("CN", "r")], not_before=cst, not_after=ROOT_END)
    assert root.not_before == datetime(2025, 1, 1, 8, 0, 0, tzinfo=UTC)


def test_explicit_serial_number_is_used(pki: Pki) -> None:
    cert = _leaf(pki, serial_number=0x1234)
    assert cert.serial_number == 0x1234
    assert 1 << 158 <= random_serial_number() < 1 << 159


# --- DER and PEM round trips ---------------------------------------------------------------


def test_der_and_pem_round_trip(pki: Pki) -> None:
    pem = pki.card.to_pem()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert load_pem(pem) == pki.card
    assert load_pem(pem.decode()) == pki.card
    assert load_der(pki.card.to_der()) == pki.card
    assert load(pki.card.der) == load(pem) == pki.card
    assert hash(load_der(pki.card.der)) == hash(pki.card)
    text = b"subject=...\n" + pki.ca.to_pem() + b"junk between\n" + pki.root.to_pem()
    assert load_pem_all(text) == [pki.ca, pki.root]


def test_fingerprints_differ_between_certificates(pki: Pki) -> None:
    prints = {pki.root.fingerprint, pki.ca.fingerprint, pki.card.fingerprint}
    assert len(prints) == 3
    assert all(len(p) == 32 for p in prints)


# --- each failure code from a real defect --------------------------------------------------


def test_expired_card(pki: Pki) -> None:
    with pytest.raises(CertificateExpired) as exc:
        verify_chain(pki.card, [pki.ca], pki.root, at=CARD_END + timedelta(seconds=1))
    assert _code(exc) == "CERT_EXPIRED"
    assert exc.value.depth == 0


def test_expired_issuing_ca_while_card_still_in_date(pki: Pki) -> None:
    card = _leaf(pki, not_after=datetime(2040, 1, 1, tzinfo=UTC))
    with pytest.raises(CertificateExpired) as exc:
        verify_chain(card, [pki.ca], pki.root, at=datetime(2035, 1, 1, tzinfo=UTC))
    assert exc.value.depth == 1


def test_not_yet_valid_card(pki: Pki) -> None:
    with pytest.raises(CertificateNotYetValid) as exc:
        verify_chain(pki.card, [pki.ca], pki.root, at=CARD_START - timedelta(seconds=1))
    assert _code(exc) == "CERT_NOT_YET_VALID"
    assert exc.value.depth == 0


def test_card_from_another_ca(pki: Pki, other_pki: Pki) -> None:
    with pytest.raises(CertificateChainInvalid) as exc:
        verify_chain(other_pki.card, [other_pki.ca, pki.ca], pki.root, at=NOW)
    assert _code(exc) == "CERT_CHAIN_INVALID"
    # ... and the other PKI's full chain under our pinned root.
    with pytest.raises(CertificateChainInvalid):
        verify_chain(other_pki.card, [other_pki.ca, other_pki.root], pki.root, at=NOW)


def test_lookalike_ca_with_same_name_but_other_key(pki: Pki) -> None:
    """An impostor copies our issuing CA's name; the key identifiers give it away."""
    fake_root_key, fake_ca_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    fake_root = build_root_ca(fake_root_key, ROOT_NAME, not_before=T0, not_after=ROOT_END)
    fake_ca = build_issuing_ca(
        fake_ca_key.public_key,
        CA_NAME,
        issuer=fake_root,
        issuer_key=fake_root_key,
        not_before=T0,
        not_after=CA_END,
    )
    card = build_card_certificate(
        SM2PrivateKey.generate().public_key,
        card_sn=CARD_SN,
        common_name="c",
        issuer=fake_ca,
        issuer_key=fake_ca_key,
        not_before=CARD_START,
        not_after=CARD_END,
    )
    assert card.issuer_der == pki.card.issuer_der
    with pytest.raises(CertificateChainInvalid):
        verify_chain(card, [fake_ca, pki.ca], pki.root, at=NOW)
    with pytest.raises(CertificateChainInvalid):  # the fake CA itself does not chain either
        verify_chain(card, [fake_ca], pki.root, at=NOW)


def test_missing_intermediate(pki: Pki) -> None:
    with pytest.raises(CertificateChainInvalid) as exc:
        verify_chain(pki.card, [], pki.root, at=NOW)
    assert exc.value.depth == 0


def test_pinned_root_as_leaf_is_refused(pki: Pki) -> None:
    with pytest.raises(CertificateChainInvalid):
        verify_chain(pki.root, [], pki.root, at=NOW)


def test_too_many_intermediates_offered(pki: Pki) -> None:
    with pytest.raises(CertificateChainInvalid):
        verify_chain(pki.card, [pki.ca] * 17, pki.root, at=NOW)


def _tamper(der: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new)
    assert der.count(old) == 1
    return der.replace(old, new)


def test_tampered_byte_in_tbs(pki: Pki) -> None:
    # One character of the CN inside tbsCertificate: still parses, no longer verifies.
    forged = load_der(_tamper(pki.card.der, b"card 0123", b"card 1123"))
    assert forged.common_name == "card 1123456789ABCDEF"
    with pytest.raises(CertificateSignatureInvalid) as exc:
        verify_chain(forged, [pki.ca], pki.root, at=NOW)
    assert _code(exc) == "CERT_SIGNATURE_INVALID"
    assert exc.value.depth == 0


def test_tampered_validity_in_issuing_ca(pki: Pki) -> None:
    forged_ca = load_der(_tamper(pki.ca.der, b"340101000000Z", b"490101000000Z"))
    with pytest.raises(CertificateSignatureInvalid) as exc:
        verify_chain(pki.card, [forged_ca], pki.root, at=NOW)
    assert exc.value.depth == 1


def test_tampered_signature_value(pki: Pki) -> None:
    der = bytearray(pki.card.der)
    der[-1] ^= 0x01  # last octet of s
    with pytest.raises(CertificateSignatureInvalid):
        verify_chain(bytes(der), [pki.ca], pki.root, at=NOW)


def test_signature_with_another_signer_id(pki: Pki) -> None:
    card = build_card_certificate(
        SM2PrivateKey.generate().public_key,
        card_sn=CARD_SN,
        common_name="c",
        issuer=pki.ca,
        issuer_key=pki.ca_key,
        not_before=CARD_START,
        not_after=CARD_END,
        signer_id=b"ALICE123@YAHOO.COM",
    )
    with pytest.raises(CertificateSignatureInvalid):
        verify_chain(card, [pki.ca], pki.root, at=NOW)
    # The builder did sign with the id it was given (verify_chain uses one id for all links).
    sm2_verify(pki.ca.public_key, card.tbs_der, card.signature, signer_id=b"ALICE123@YAHOO.COM")


def test_leaf_used_as_ca(pki: Pki) -> None:
    """The card key signs a certificate of its own: its issuer (the card cert) is no CA."""
    child = build_certificate(
        subject=[("serialNumber", "X"), ("CN", "issued by a card")],
        subject_public_key=SM2PrivateKey.generate().public_key,
        issuer=pki.card,
        issuer_key=pki.card_key,
        not_before=CARD_START,
        not_after=CARD_END,
        is_ca=False,
        key_usage=[KeyUsage.DIGITAL_SIGNATURE],
    )
    with pytest.raises(CertificateNotCA) as exc:
        verify_chain(child, [pki.card, pki.ca], pki.root, at=NOW)
    assert _code(exc) == "CERT_NOT_CA"
    assert exc.value.depth == 1


def test_leaf_with_keycertsign_but_no_ca_flag_is_still_not_a_ca(pki: Pki) -> None:
    key = SM2PrivateKey.generate()
    pseudo_ca = _leaf(
        pki,
        subject=[("CN", "pseudo CA")],
        subject_public_key=key.public_key,
        key_usage=[KeyUsage.KEY_CERT_SIGN, KeyUsage.DIGITAL_SIGNATURE],
    )
    card = _leaf(pki, issuer=pseudo_ca, issuer_key=key)
    with pytest.raises(CertificateNotCA):
        verify_chain(card, [pseudo_ca, pki.ca], pki.root, at=NOW)


def test_path_length_exceeded_under_issuing_ca(pki: Pki) -> None:
    """The issuing CA has pathlen 0, yet signs a sub-CA that signs the card."""
    sub_key = SM2PrivateKey.generate()
    sub_ca = build_certificate(
        subject=[("C", "CN"), ("CN", "Rogue Sub CA")],
        subject_public_key=sub_key.public_key,
        issuer=pki.ca,
        issuer_key=pki.ca_key,
        not_before=T0,
        not_after=CA_END,
        is_ca=True,
        key_usage=[KeyUsage.KEY_CERT_SIGN],
    )
    card = _leaf(pki, issuer=sub_ca, issuer_key=sub_key)
    with pytest.raises(CertificatePathLenExceeded) as exc:
        verify_chain(card, [sub_ca, pki.ca], pki.root, at=NOW)
    assert _code(exc) == "CERT_PATH_LEN"
    assert exc.value.depth == 1


def test_path_length_of_the_root_applies() -> None:
    root_key, ca_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    root = build_root_ca(root_key, ROOT_NAME, not_before=T0, not_after=ROOT_END, path_length=0)
    ca = build_issuing_ca(
        ca_key.public_key,
        CA_NAME,
        issuer=root,
        issuer_key=root_key,
        not_before=T0,
        not_after=CA_END,
    )
    card = build_card_certificate(
        SM2PrivateKey.generate().public_key,
        card_sn=CARD_SN,
        common_name="c",
        issuer=ca,
        issuer_key=ca_key,
        not_before=CARD_START,
        not_after=CARD_END,
    )
    with pytest.raises(CertificatePathLenExceeded):
        verify_chain(card, [ca], root, at=NOW)


def test_card_without_digital_signature(pki: Pki) -> None:
    card = _leaf(pki, key_usage=[KeyUsage.KEY_AGREEMENT, KeyUsage.KEY_ENCIPHERMENT])
    with pytest.raises(CertificateKeyUsage) as exc:
        verify_chain(card, [pki.ca], pki.root, at=NOW)
    assert _code(exc) == "CERT_KEY_USAGE"
    assert exc.value.depth == 0


def test_ca_without_keycertsign(pki: Pki) -> None:
    key = SM2PrivateKey.generate()
    crl_only_ca = build_certificate(
        subject=[("CN", "CRL signer")],
        subject_public_key=key.public_key,
        issuer=pki.root,
        issuer_key=pki.root_key,
        not_before=T0,
        not_after=CA_END,
        is_ca=True,
        path_length=0,
        key_usage=[KeyUsage.CRL_SIGN],
    )
    card = _leaf(pki, issuer=crl_only_ca, issuer_key=key)
    with pytest.raises(CertificateKeyUsage) as exc:
        verify_chain(card, [crl_only_ca], pki.root, at=NOW)
    assert exc.value.depth == 1


def test_issuing_ca_used_as_card_certificate(pki: Pki) -> None:
    with pytest.raises(CertificateKeyUsage):
        verify_chain(pki.ca, [], pki.root, at=NOW, require_card_sn=False)


@pytest.mark.parametrize("critical", [True, False])
def test_unknown_critical_extension(pki: Pki, critical: bool) -> None:
    card = _leaf(pki, extra_extensions=[RawExtension(UNKNOWN_OID, critical, b"\x05\x00")])
    if not critical:
        verify_chain(card, [pki.ca], pki.root, at=NOW)  # a non-critical one is ignored
        return
    with pytest.raises(CertificateUnknownCriticalExtension) as exc:
        verify_chain(card, [pki.ca], pki.root, at=NOW)
    assert _code(exc) == "CERT_CRITICAL_EXTENSION"
    assert UNKNOWN_OID in str(exc.value)


def test_card_without_card_sn(pki: Pki) -> None:
    card = _leaf(pki, subject=[("CN", "no card_sn")])
    with pytest.raises(CertificateMalformed):
        verify_chain(card, [pki.ca], pki.root, at=NOW)
    assert verify_chain(card, [pki.ca], pki.root, at=NOW, require_card_sn=False).card_sn is None


def test_duplicate_card_sn_is_malformed(pki: Pki) -> None:
    with pytest.raises(CertificateMalformed):
        _leaf(pki, subject=[("serialNumber", "A"), ("serialNumber", "B")])


def test_naive_time_is_a_programming_error(pki: Pki) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_chain(pki.card, [pki.ca], pki.root, at=datetime(2026, 1, 1))


# --- malformed input -----------------------------------------------------------------------


def test_truncated_at_every_length(pki: Pki) -> None:
    der = pki.card.der
    for cut in range(len(der)):
        with pytest.raises(CertificateMalformed):
            load_der(der[:cut])


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x30\x00", b"\x30\x80\x00\x00", b"hello world", b"\x30\x03\x02\x01\x01"],
    ids=["empty", "zero", "empty-seq", "indefinite", "text", "wrong-shape"],
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(CertificateMalformed) as exc:
        load_der(data)
    assert exc.value.code == "CERT_MALFORMED"


def test_trailing_data_is_malformed(pki: Pki) -> None:
    with pytest.raises(CertificateMalformed):
        load_der(pki.card.der + b"\x00")


def test_non_minimal_length_is_malformed(pki: Pki) -> None:
    der = pki.card.der
    assert der[1] == 0x82  # SEQUENCE with a 2-octet length
    body = der[4:]
    longer = b"\x30\x83\x00" + der[2:4] + body  # same length, one octet too many
    with pytest.raises(CertificateMalformed, match="non-minimal"):
        load_der(longer)


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(CertificateMalformed, match="limit"):
        load_der(b"\x30" + b"\x00" * 20_000)


def test_other_signature_algorithm_is_malformed(pki: Pki) -> None:
    sm2_sm3 = bytes.fromhex("06082a811ccf55018375")
    ecdsa_sha256 = bytes.fromhex("06082a8648ce3d040302")
    forged = pki.card.der.replace(sm2_sm3, ecdsa_sha256)
    with pytest.raises(CertificateMalformed, match="SM2-with-SM3"):
        load_der(forged)


def test_non_sm2_public_key_is_malformed(pki: Pki) -> None:
    sm2_curve = bytes.fromhex("06082a811ccf5501822d")
    p256 = bytes.fromhex("06082a8648ce3d030107")
    with pytest.raises(CertificateMalformed, match="SM2 key"):
        load_der(_tamper(pki.card.der, sm2_curve, p256))


def test_point_off_the_curve_is_malformed(pki: Pki) -> None:
    point = pki.card.public_key.to_bytes()
    bad = point[:-1] + bytes([point[-1] ^ 1])
    with pytest.raises(CertificateMalformed):
        load_der(_tamper(pki.card.der, point, bad))


def _sign_raw_tbs(tbs: asn1_x509.TbsCertificate, key: SM2PrivateKey) -> bytes:
    alg = {"algorithm": SM2_WITH_SM3_OID}
    sig = signature_to_der(sm2_sign(key, tbs.dump()))
    cert = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": alg, "signature_value": sig}
    )
    der: bytes = cert.dump()
    return der


def _raw_tbs(key: SM2PrivateKey, **overrides: object) -> asn1_x509.TbsCertificate:
    name = asn1_x509.Name.load(build_name([("CN", "raw")]))
    fields: dict[str, object] = {
        "version": "v3",
        "serial_number": 7,
        "signature": {"algorithm": SM2_WITH_SM3_OID},
        "issuer": name,
        "validity": {
            "not_before": asn1_x509.Time(name="utc_time", value=T0),
            "not_after": asn1_x509.Time(name="utc_time", value=CA_END),
        },
        "subject": name,
        "subject_public_key_info": asn1_keys.PublicKeyInfo.load(key.public_key.to_spki_der()),
    }
    fields.update(overrides)
    return asn1_x509.TbsCertificate({k: v for k, v in fields.items() if v is not None})


def test_raw_helper_makes_an_acceptable_certificate() -> None:
    key = SM2PrivateKey.generate()
    cert = load_der(_sign_raw_tbs(_raw_tbs(key), key))
    assert cert.serial_number == 7
    assert cert.key_usage is None
    assert not cert.is_ca


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"version": "v1"}, "v3"),
        ({"serial_number": 0}, "positive"),
        ({"serial_number": -5}, "positive"),
        ({"serial_number": 1 << 170}, "20 octets"),
        ({"signature": {"algorithm": "1.2.840.10045.4.3.2"}}, "SM2-with-SM3"),
        (
            {"signature": {"algorithm": SM2_WITH_SM3_OID, "parameters": asn1_core.Null()}},
            "SM2-with-SM3",
        ),
        (
            {
                "validity": {
                    "not_before": asn1_x509.Time(name="general_time", value=T0),
                    "not_after": asn1_x509.Time(name="utc_time", value=CA_END),
                }
            },
            None,  # GeneralizedTime before 2050 is tolerated on input (OpenSSL does too)
        ),
    ],
    ids=[
        "v1",
        "serial-0",
        "serial-negative",
        "serial-too-long",
        "ecdsa-in-tbs",
        "null-param",
        "generalized-time",
    ],
)
def test_tbs_level_defects(overrides: dict[str, object], match: str | None) -> None:
    key = SM2PrivateKey.generate()
    der = _sign_raw_tbs(_raw_tbs(key, **overrides), key)
    if match is None:
        load_der(der)
        return
    with pytest.raises(CertificateMalformed, match=match):
        load_der(der)


def _with_extensions(extensions: list[asn1_x509.Extension]) -> bytes:
    key = SM2PrivateKey.generate()
    return _sign_raw_tbs(_raw_tbs(key, extensions=extensions), key)


@pytest.mark.parametrize(
    ("extensions", "match"),
    [
        (
            [
                {"extn_id": "key_usage", "critical": True, "extn_value": {"digital_signature"}},
                {"extn_id": "key_usage", "critical": True, "extn_value": {"key_cert_sign"}},
            ],
            "twice",
        ),
        (
            [
                {
                    "extn_id": "basic_constraints",
                    "critical": True,
                    "extn_value": {"ca": False, "path_len_constraint": 3},
                }
            ],
            "without cA",
        ),
        ([{"extn_id": "key_usage", "critical": True, "extn_value": set()}], "no bit"),
        (
            [
                {
                    "extn_id": "key_identifier",
                    "critical": False,
                    "extn_value": asn1_core.ParsableOctetString(b"\x04\x01\x00\x00"),
                }
            ],
            "trailing",
        ),
    ],
    ids=["duplicate", "pathlen-without-ca", "empty-key-usage", "trailing-in-extn-value"],
)
def test_extension_defects(extensions: list[object], match: str) -> None:
    with pytest.raises(CertificateMalformed, match=match):
        load_der(_with_extensions([asn1_x509.Extension(e) for e in extensions]))


def test_explicit_default_false_is_ber_not_der() -> None:
    ext = asn1_x509.Extension(
        {"extn_id": "key_usage", "critical": True, "extn_value": {"digital_signature"}}
    )
    der = _with_extensions([ext])
    # critical TRUE (01 01 FF) -> FALSE (01 01 00): DER says a DEFAULT must be omitted.
    forged = _tamper(der, bytes.fromhex("0603551d0f0101ff"), bytes.fromhex("0603551d0f010100"))
    with pytest.raises(CertificateMalformed, match="omitted"):
        load_der(forged)


@pytest.mark.parametrize(
    ("pem", "match"),
    [
        (b"", "no PEM"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "unexpected PEM"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "base64"),
        (b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "DER"),
    ],
    ids=["empty", "private-key", "bad-base64", "bad-der"],
)
def test_pem_errors(pem: bytes, match: str) -> None:
    with pytest.raises(CertificateMalformed, match=match):
        load_pem(pem)


def test_load_pem_wants_exactly_one(pki: Pki) -> None:
    with pytest.raises(CertificateMalformed, match="one PEM"):
        load_pem(pki.ca.to_pem() + pki.root.to_pem())
    with pytest.raises(CertificateMalformed, match="more than"):
        load_pem_all(pki.ca.to_pem() * 17)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutations_never_escape_the_error_hierarchy(pki: Pki, data: st.DataObject) -> None:
    """Any byte edit either fails with a CertificateError or is the original certificate.

    Strict DER makes the encoding canonical and the signature covers tbsCertificate, so no
    other byte string can verify as this certificate.
    """
    der = bytearray(pki.card.der)
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(der) - 1))
        der[index] = data.draw(st.integers(0, 255))
    try:
        verify_chain(bytes(der), [pki.ca], pki.root, at=NOW)
    except CertificateError:
        return
    assert bytes(der) == pki.card.der


# --- builder input checks ------------------------------------------------------------------


def test_builder_rejects_bad_inputs(pki: Pki) -> None:
    key = SM2PrivateKey.generate()
    with pytest.raises(ValueError, match="timezone"):
        build_root_ca(key, [("CN", "r")], not_before=datetime(2024, 1, 1), not_after=ROOT_END)
    with pytest.raises(ValueError, match="later"):
        build_root_ca(key, [("CN", "r")], not_before=ROOT_END, not_after=T0)
    with pytest.raises(ValueError, match="unknown name attribute"):
        build_root_ca(key, [("EMAIL", "x@y")], not_before=T0, not_after=ROOT_END)
    with pytest.raises(ValueError, match="PrintableString"):
        build_card_certificate(
            key.public_key,
            card_sn="卡号",
            common_name="c",
            issuer=pki.ca,
            issuer_key=pki.ca_key,
            not_before=CARD_START,
            not_after=CARD_END,
        )
    with pytest.raises(ValueError, match="does not match"):
        build_card_certificate(
            key.public_key,
            card_sn=CARD_SN,
            common_name="c",
            issuer=pki.ca,
            issuer_key=key,
            not_before=CARD_START,
            not_after=CARD_END,
        )
    with pytest.raises(ValueError, match="not a CA"):
        build_issuing_ca(
            key.public_key,
            CA_NAME,
            issuer=pki.card,
            issuer_key=pki.card_key,
            not_before=T0,
            not_after=CA_END,
        )
    with pytest.raises(ValueError, match="serial_number"):
        build_root_ca(key, [("CN", "r")], not_before=T0, not_after=ROOT_END, serial_number=0)
    with pytest.raises(ValueError, match=r"1\.\.64"):
        build_root_ca(key, [("CN", "r" * 65)], not_before=T0, not_after=ROOT_END)


# --- the error hierarchy and the DER reader ------------------------------------------------


def test_error_codes_are_stable_and_distinct() -> None:
    classes = [
        CertificateMalformed,
        CertificateExpired,
        CertificateNotYetValid,
        CertificateChainInvalid,
        CertificateSignatureInvalid,
        CertificateNotCA,
        CertificatePathLenExceeded,
        CertificateKeyUsage,
        CertificateUnknownCriticalExtension,
    ]
    codes = [c.code for c in classes]
    assert codes == [
        "CERT_MALFORMED",
        "CERT_EXPIRED",
        "CERT_NOT_YET_VALID",
        "CERT_CHAIN_INVALID",
        "CERT_SIGNATURE_INVALID",
        "CERT_NOT_CA",
        "CERT_PATH_LEN",
        "CERT_KEY_USAGE",
        "CERT_CRITICAL_EXTENSION",
    ]
    assert all(issubclass(c, CertificateError) and issubclass(c, ValueError) for c in classes)
    assert all(issubclass(c, CertificateInvalid) for c in classes[1:])
    assert not issubclass(CertificateMalformed, CertificateInvalid)


@pytest.mark.parametrize(
    ("der", "match"),
    [
        ("0201", "truncated"),
        ("1f0100", "high-tag"),
        ("020400", "truncated"),
        ("02840000000100", "too large"),
        ("0281010100", "non-minimal"),
        ("028200" + "05" + "00" * 5, "non-minimal"),
    ],
)
def test_der_reader_rejects_non_der_lengths(der: str, match: str) -> None:
    raw = bytes.fromhex(der)
    with pytest.raises(_der.DerError, match=match):
        _der.read_tlv(raw, 0, len(raw))


@pytest.mark.parametrize(
    ("der", "expected"),
    [("020100", 0), ("02017f", 127), ("02020080", 128), ("0201ff", -1), ("020180", -128)],
)
def test_der_integer(der: str, expected: int) -> None:
    raw = bytes.fromhex(der)
    assert _der.decode_integer(raw, _der.read_tlv(raw, 0, len(raw))) == expected


@pytest.mark.parametrize("der", ["02020001", "0202ff80", "0200"])
def test_der_integer_must_be_minimal(der: str) -> None:
    raw = bytes.fromhex(der)
    with pytest.raises(_der.DerError):
        _der.decode_integer(raw, _der.read_tlv(raw, 0, len(raw)))


@pytest.mark.parametrize(
    "oid",
    ["1.2.156.10197.1.501", "2.5.29.19", "1.2.840.10045.2.1", "2.25.1234567890123456789", "0.9"],
)
def test_der_oid_matches_asn1crypto(oid: str) -> None:
    raw = asn1_core.ObjectIdentifier(oid).dump()
    assert _der.decode_oid(raw, _der.read_tlv(raw, 0, len(raw))) == oid


@pytest.mark.parametrize("raw", ["0600", "060180", "06028001", "06022a81"])
def test_der_oid_malformed(raw: str) -> None:
    data = bytes.fromhex(raw)
    with pytest.raises(_der.DerError):
        _der.decode_oid(data, _der.read_tlv(data, 0, len(data)))


@pytest.mark.parametrize(
    "raw", ["170d3234303130313030303030305a", "180f32303530303130313030303030305a"]
)
def test_der_time_forms(raw: str) -> None:
    data = bytes.fromhex(raw)
    moment = _der.decode_time(data, _der.read_tlv(data, 0, len(data)))
    assert moment in (datetime(2024, 1, 1, tzinfo=UTC), datetime(2050, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "text",
    [b"2401010000Z", b"240101000000+0800", b"241301000000Z", b"24010100000aZ", b"240101000000.5Z"],
)
def test_der_time_rejects_non_rfc5280_forms(text: bytes) -> None:
    data = bytes([0x17, len(text)]) + text
    with pytest.raises(_der.DerError):
        _der.decode_time(data, _der.read_tlv(data, 0, len(data)))


def test_utctime_50_means_1950() -> None:
    data = bytes([0x17, 13]) + b"500101000000Z"
    assert _der.decode_time(data, _der.read_tlv(data, 0, len(data))).year == 1950


# --- bounds --------------------------------------------------------------------------------


def _ca_ladder(levels: int) -> tuple[Certificate, list[Certificate], Certificate]:
    """root → ``levels`` CAs without pathlen → card; returns (root, intermediates, card)."""
    key = SM2PrivateKey.generate()
    root = build_root_ca(key, [("CN", "ladder root")], not_before=T0, not_after=ROOT_END)
    issuer, issuer_key, cas = root, key, []
    for level in range(levels):
        next_key = SM2PrivateKey.generate()
        issuer = build_certificate(
            subject=[("CN", f"ladder CA {level}")],
            subject_public_key=next_key.public_key,
            issuer=issuer,
            issuer_key=issuer_key,
            not_before=T0,
            not_after=CA_END,
            is_ca=True,
            key_usage=[KeyUsage.KEY_CERT_SIGN],
        )
        issuer_key = next_key
        cas.append(issuer)
    card = build_card_certificate(
        SM2PrivateKey.generate().public_key,
        card_sn=CARD_SN,
        common_name="c",
        issuer=issuer,
        issuer_key=issuer_key,
        not_before=CARD_START,
        not_after=CARD_END,
    )
    return root, cas, card


def test_longest_accepted_chain_and_one_more() -> None:
    root, cas, card = _ca_ladder(MAX_INTERMEDIATES)
    assert len(verify_chain(card, cas[::-1], root, at=NOW).chain) == MAX_INTERMEDIATES + 2
    root, cas, card = _ca_ladder(MAX_INTERMEDIATES + 1)
    with pytest.raises(CertificateChainInvalid, match="within"):
        verify_chain(card, cas, root, at=NOW)


def test_signature_memo_is_bounded(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_verify, "SIGNATURE_MEMO_SIZE", 2)
    for _ in range(4):
        verify_chain(_leaf(pki), [pki.ca], pki.root, at=NOW)
    assert len(_verify._signature_memo) <= 2
    verify_chain(pki.card, [pki.ca], pki.root, at=NOW)  # evicted entries are simply recomputed


def test_pem_with_non_ascii_explanatory_text(pki: Pki) -> None:
    text = "颁发者: 上海\n" + pki.card.to_pem().decode()
    assert load_pem(text) == pki.card


def test_pem_input_over_the_limit_is_refused() -> None:
    with pytest.raises(CertificateMalformed, match="limit"):
        load_pem_all(b" " * (MAX_CERTIFICATE_DER_BYTES * 2 * 16 + 1))
