"""SM2 X.509 CRLs (sscard.certs): build, strict parse, verify against the issuing CA."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asn1crypto import algos as asn1_algos
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509

from sscard.certs import (
    SM2_WITH_SM3_OID,
    Certificate,
    CertificateError,
    CrlExpired,
    CrlIssuerMismatch,
    CrlKeyUsage,
    CrlMalformed,
    CrlNotYetValid,
    CrlSignatureInvalid,
    CrlUnknownCriticalExtension,
    RevocationReason,
    RevokedCertificate,
    build_card_certificate,
    build_crl,
    build_issuing_ca,
    build_root_ca,
    load_crl,
    load_crl_der,
    load_crl_pem,
    verify_crl,
)
from sscard.crypto import DEFAULT_SIGNER_ID, SM2PrivateKey, signature_to_der, sm2_sign

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T_END = datetime(2034, 1, 1, tzinfo=UTC)
THIS = datetime(2026, 12, 1, tzinfo=UTC)
NEXT = datetime(2026, 12, 8, tzinfo=UTC)
AT = datetime(2026, 12, 3, 12, tzinfo=UTC)


@functools.cache
def pki() -> tuple[Certificate, SM2PrivateKey, Certificate, SM2PrivateKey]:
    root_key, ca_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    root = build_root_ca(root_key, [("C", "CN"), ("CN", "Root")], not_before=T0, not_after=T_END)
    ca = build_issuing_ca(
        ca_key.public_key,
        [("C", "CN"), ("CN", "Issuing")],
        issuer=root,
        issuer_key=root_key,
        not_before=T0,
        not_after=T_END,
    )
    return root, root_key, ca, ca_key


ENTRIES = (
    RevokedCertificate(1001, datetime(2026, 11, 2, tzinfo=UTC), RevocationReason.KEY_COMPROMISE),
    RevokedCertificate(1 << 150, datetime(2026, 11, 3, tzinfo=UTC)),
    RevokedCertificate(7, datetime(2026, 11, 4, tzinfo=UTC), RevocationReason.SUPERSEDED),
)


def make(**kwargs: Any) -> Any:
    _, _, ca, ca_key = pki()
    args: dict[str, Any] = {
        "issuer": ca,
        "issuer_key": ca_key,
        "revoked": ENTRIES,
        "this_update": THIS,
        "next_update": NEXT,
        "crl_number": 42,
    }
    args.update(kwargs)
    return build_crl(**args)


def test_built_crl_parses_back_with_every_field():
    crl = make()
    _, _, ca, _ = pki()
    again = load_crl_der(crl.der)
    assert again == crl
    assert again.issuer_der == ca.subject_der
    assert (again.this_update, again.next_update, again.crl_number) == (THIS, NEXT, 42)
    assert again.authority_key_id == ca.subject_key_id
    assert again.revoked == ENTRIES
    assert again.revoked_serials == {1001, 1 << 150, 7}
    assert load_crl_pem(crl.to_pem()) == crl
    assert load_crl(crl.to_pem()) == crl
    assert load_crl(crl.der) == crl


def test_asn1crypto_reads_the_same_fields():
    crl = make()
    parsed = asn1_crl.CertificateList.load(crl.der)
    tbs = parsed["tbs_cert_list"]
    assert tbs["crl_extensions"][0]["extn_value"].native == 42
    serials = [entry["user_certificate"].native for entry in tbs["revoked_certificates"]]
    assert serials == [1001, 1 << 150, 7]
    assert parsed["signature_algorithm"]["algorithm"].dotted == SM2_WITH_SM3_OID


def test_an_empty_list_leaves_revoked_certificates_out():
    crl = make(revoked=())
    assert crl.revoked == ()
    # RFC 5280 §5.1.2.6: absent, not an empty SEQUENCE (which load_crl_der refuses).
    assert (
        asn1_crl.CertificateList.load(crl.der)["tbs_cert_list"]["revoked_certificates"].native
        is None
    )


def test_verify_accepts_the_issuers_list_within_its_window():
    _, _, ca, _ = pki()
    crl = make()
    verify_crl(crl, ca, at=AT)
    verify_crl(crl, ca, at=THIS)  # bounds inclusive
    verify_crl(crl, ca, at=NEXT)


def test_verify_refuses_outside_the_window():
    _, _, ca, _ = pki()
    crl = make()
    with pytest.raises(CrlExpired):
        verify_crl(crl, ca, at=NEXT + timedelta(seconds=1))
    with pytest.raises(CrlNotYetValid):
        verify_crl(crl, ca, at=THIS - timedelta(seconds=1))


def test_a_list_signed_by_a_look_alike_ca_is_refused():
    root, root_key, ca, _ = pki()
    other_key = SM2PrivateKey.generate()
    look_alike = build_issuing_ca(
        other_key.public_key,
        [("C", "CN"), ("CN", "Issuing")],
        issuer=root,
        issuer_key=root_key,
        not_before=T0,
        not_after=T_END,
    )
    forged = build_crl(
        issuer=look_alike,
        issuer_key=other_key,
        revoked=ENTRIES,
        this_update=THIS,
        next_update=NEXT,
        crl_number=43,
    )
    # Same name, other key id: refused before the signature is even tried.
    with pytest.raises(CrlIssuerMismatch):
        verify_crl(forged, ca, at=AT)


def test_a_tampered_list_fails_the_signature():
    _, _, ca, _ = pki()
    crl = make()
    # The serial 1001 (0x03E9) becomes 0x03EA: still strict DER, no longer what the CA signed.
    tampered = crl.der.replace(bytes.fromhex("020203e9"), bytes.fromhex("020203ea"), 1)
    assert tampered != crl.der
    with pytest.raises(CrlSignatureInvalid):
        verify_crl(load_crl_der(tampered), ca, at=AT)


def test_another_issuers_list_and_a_non_ca_issuer_are_refused():
    root, _root_key, ca, ca_key = pki()
    with pytest.raises(CrlIssuerMismatch):
        verify_crl(make(), root, at=AT)
    card_key = SM2PrivateKey.generate()
    card = build_card_certificate(
        card_key.public_key,
        card_sn="310000D1560000050123456789ABCDEF",
        common_name="card",
        issuer=ca,
        issuer_key=ca_key,
        not_before=T0,
        not_after=T_END,
    )
    by_card = build_crl(
        issuer=card,
        issuer_key=card_key,
        revoked=(),
        this_update=THIS,
        next_update=NEXT,
        crl_number=1,
    )
    with pytest.raises(CrlKeyUsage):
        verify_crl(by_card, card, at=AT)


def test_openssl_style_empty_signer_id_is_accepted_unless_excluded():
    _, _, ca, _ = pki()
    crl = make(signer_id=b"")
    verify_crl(crl, ca, at=AT)
    with pytest.raises(CrlSignatureInvalid):
        verify_crl(crl, ca, at=AT, signer_ids=(DEFAULT_SIGNER_ID,))


# --- hand-built lists the builder would refuse to make --------------------------------------


def _algorithm() -> asn1_algos.SignedDigestAlgorithm:
    return asn1_algos.SignedDigestAlgorithm({"algorithm": SM2_WITH_SM3_OID})


def _entry(serial: int, extensions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "user_certificate": serial,
        "revocation_date": asn1_x509.Time(name="utc_time", value=THIS),
    }
    if extensions:
        entry["crl_entry_extensions"] = extensions
    return entry


def signed(*, drop: tuple[str, ...] = (), **fields: Any) -> bytes:
    """A CertificateList signed by the issuing CA with the given tbsCertList fields."""
    _, _, ca, ca_key = pki()
    tbs_fields: dict[str, Any] = {
        "version": "v2",
        "signature": _algorithm(),
        "issuer": asn1_x509.Name.load(ca.subject_der),
        "this_update": asn1_x509.Time(name="utc_time", value=THIS),
        "next_update": asn1_x509.Time(name="utc_time", value=NEXT),
        "revoked_certificates": [_entry(5)],
        "crl_extensions": [{"extn_id": "crl_number", "critical": False, "extn_value": 1}],
    }
    tbs_fields.update(fields)
    for name in drop:
        del tbs_fields[name]
    tbs = asn1_crl.TbsCertList(tbs_fields)
    signature = sm2_sign(ca_key, tbs.dump())
    der: bytes = asn1_crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": _algorithm(),
            "signature": signature_to_der(signature),
        }
    ).dump()
    return der


def test_the_hand_builder_makes_acceptable_lists():
    _, _, ca, _ = pki()
    verify_crl(load_crl_der(signed()), ca, at=AT)


@pytest.mark.parametrize(
    ("what", "der", "needle"),
    [
        ("v1 list", lambda: signed(drop=("version", "crl_extensions")), "v2"),
        ("no nextUpdate", lambda: signed(drop=("next_update",)), "nextUpdate"),
        ("no CRL number", lambda: signed(drop=("crl_extensions",)), "cRLNumber"),
        (
            "duplicate serial",
            lambda: signed(revoked_certificates=[_entry(5), _entry(5)]),
            "listed twice",
        ),
        ("serial zero", lambda: signed(revoked_certificates=[_entry(0)]), "positive"),
        ("negative serial", lambda: signed(revoked_certificates=[_entry(-3)]), "positive"),
        ("empty entry list", lambda: signed(revoked_certificates=[]), "empty"),
        (
            "nextUpdate before thisUpdate",
            lambda: signed(next_update=asn1_x509.Time(name="utc_time", value=THIS)),
            "not later",
        ),
    ],
)
def test_malformed_lists_are_refused(what: str, der: Any, needle: str):
    with pytest.raises(CrlMalformed, match=needle):
        load_crl_der(der())


def test_byte_level_malformations_are_refused():
    good = make().der
    for bad in (
        good[:-1],  # truncated
        good + b"\x00",  # trailing data
        b"\x30\x80" + good[2:],  # indefinite length (BER)
        b"",
        b"\x05\x00",
    ):
        with pytest.raises(CrlMalformed):
            load_crl_der(bad)
    with pytest.raises(CrlMalformed, match="PEM"):
        load_crl_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(CrlMalformed):
        load_crl_pem(b"not a pem")
    with pytest.raises(CrlMalformed, match="over the"):
        load_crl_der(b"\x30" + bytes(17 * 1024 * 1024))


def test_crl_errors_have_stable_codes_and_are_not_certificate_errors():
    # A route that answers CertificateError's codes must not promise a CRL's.
    assert not issubclass(CrlMalformed, CertificateError)
    assert CrlMalformed.code == "CRL_MALFORMED"
    assert CrlSignatureInvalid.code == "CRL_SIGNATURE_INVALID"
    assert CrlExpired.code == "CRL_EXPIRED"


def test_an_unknown_critical_list_extension_is_refused_at_verify():
    _, _, ca, _ = pki()
    delta = signed(
        crl_extensions=[
            {"extn_id": "crl_number", "critical": False, "extn_value": 2},
            {"extn_id": "delta_crl_indicator", "critical": True, "extn_value": 1},
        ]
    )
    crl = load_crl_der(delta)  # parses: the code says why at verify
    with pytest.raises(CrlUnknownCriticalExtension, match=r"2\.5\.29\.27"):
        verify_crl(crl, ca, at=AT)


def test_an_unknown_critical_entry_extension_is_refused_at_verify():
    _, _, ca, _ = pki()
    indirect = signed(
        revoked_certificates=[
            _entry(
                9,
                [
                    {
                        "extn_id": "certificate_issuer",
                        "critical": True,
                        "extn_value": [
                            asn1_x509.GeneralName(name="dns_name", value="other.example")
                        ],
                    }
                ],
            )
        ]
    )
    with pytest.raises(CrlUnknownCriticalExtension, match=r"2\.5\.29\.29"):
        verify_crl(load_crl_der(indirect), ca, at=AT)


def test_an_unknown_non_critical_extension_is_ignored():
    _, _, ca, _ = pki()
    with_aia = signed(
        crl_extensions=[
            {"extn_id": "crl_number", "critical": False, "extn_value": 3},
            {"extn_id": "freshest_crl", "critical": False, "extn_value": []},
        ]
    )
    verify_crl(load_crl_der(with_aia), ca, at=AT)


def test_a_bad_reason_code_is_refused():
    der = signed(
        revoked_certificates=[
            _entry(9, [{"extn_id": "crl_reason", "critical": False, "extn_value": 1}])
        ]
    )
    assert load_crl_der(der).revoked[0].reason is RevocationReason.KEY_COMPROMISE
    bad = der.replace(bytes.fromhex("0a0101"), bytes.fromhex("0a0107"), 1)  # 7 is unused
    with pytest.raises(CrlMalformed, match="reasonCode 7"):
        load_crl_der(bad)


def test_builder_refuses_naive_dates_and_a_foreign_key():
    _, _, ca, _ = pki()
    with pytest.raises(ValueError, match="timezone"):
        make(this_update=datetime(2026, 12, 1))
    with pytest.raises(ValueError, match="does not match"):
        make(issuer_key=SM2PrivateKey.generate())
    with pytest.raises(ValueError, match="later"):
        make(next_update=THIS)
    assert ca.is_ca
