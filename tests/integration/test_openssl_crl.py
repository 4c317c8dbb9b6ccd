"""SM2 CRLs interoperate with the system OpenSSL 3.0 CLI, both ways.

- OpenSSL reads the CRLs the project writes (``openssl crl -text``), and verifies them against
  the issuing CA (``openssl crl -CAfile``);
- the project reads and verifies the CRLs a tiny ``openssl ca`` with SM2 keys writes
  (``openssl ca -revoke`` then ``-gencrl``), and finds the revoked card certificate in them.

The OpenSSL 3.0 quirk this pins down (Debian 12's 3.0.x): CRLs are signed and verified with an
*empty* SM2 distinguishing id unless ``openssl ca -gencrl -sigopt distid:…`` is given, and
``openssl crl`` has no option to verify under another id. So ``openssl crl -CAfile`` verifies
a project CRL signed with ``signer_id=b""`` and refuses one signed with GM/T 0009's default id;
that one is checked with ``openssl dgst -sm3 -sigopt distid:…`` over the tbsCertList instead.
``sscard.certs.verify_crl`` accepts either id (``CRL_SIGNER_IDS``).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cikit import in_ci

from sscard.certs import (
    Certificate,
    CrlSignatureInvalid,
    RevocationReason,
    RevokedCertificate,
    build_crl,
    build_issuing_ca,
    build_root_ca,
    load_crl,
    load_pem,
    verify_crl,
)
from sscard.crypto import DEFAULT_SIGNER_ID, SM2PrivateKey, signature_to_der

OPENSSL = shutil.which("openssl")
DISTID = DEFAULT_SIGNER_ID.decode()
CARD_SN = "310000D1560000050123456789ABCDEF"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(OPENSSL is None and not in_ci(), reason="no openssl binary on PATH"),
]


def _run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None, "openssl binary required"
    result = subprocess.run(
        [OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# --- (a) CRLs the project writes, read by OpenSSL -------------------------------------------


def _project_ca(d: Path) -> tuple[Certificate, SM2PrivateKey]:
    root_key, ca_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    now = datetime.now(UTC)
    root = build_root_ca(
        root_key,
        [("C", "CN"), ("CN", "Project Root")],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )
    ca = build_issuing_ca(
        ca_key.public_key,
        [("C", "CN"), ("O", "上海社保卡测试"), ("CN", "Project Issuing CA")],
        issuer=root,
        issuer_key=root_key,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )
    (d / "ca.pem").write_bytes(ca.to_pem())
    return ca, ca_key


@pytest.mark.parametrize("signer_id", [b"", DEFAULT_SIGNER_ID], ids=["empty-id", "gmt-id"])
def test_openssl_reads_and_verifies_project_crls(tmp_path: Path, signer_id: bytes) -> None:
    ca, ca_key = _project_ca(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    crl = build_crl(
        issuer=ca,
        issuer_key=ca_key,
        revoked=[
            RevokedCertificate(0x3E9, now - timedelta(hours=2), RevocationReason.KEY_COMPROMISE),
            RevokedCertificate(1 << 150, now - timedelta(hours=1), RevocationReason.SUPERSEDED),
            RevokedCertificate(77, now - timedelta(hours=1)),
        ],
        this_update=now - timedelta(minutes=5),
        next_update=now + timedelta(days=7),
        crl_number=4242,
        signer_id=signer_id,
    )
    (tmp_path / "crl.pem").write_bytes(crl.to_pem())
    (tmp_path / "crl.der").write_bytes(crl.der)

    text = _run("crl", "-in", "crl.pem", "-noout", "-text", cwd=tmp_path).stdout
    assert "Version 2 (0x1)" in text
    assert text.count("Signature Algorithm: SM2-with-SM3") == 2
    assert "CN = Project Issuing CA" in text
    assert "X509v3 CRL Number: \n                4242" in text
    assert "X509v3 Authority Key Identifier" in text
    assert "Serial Number: 03E9" in text
    assert "Serial Number: 4D" in text
    assert "Key Compromise" in text
    assert "Superseded" in text
    # DER in, DER out: OpenSSL re-encodes it byte for byte (it is DER already).
    _run(
        "crl",
        "-inform",
        "DER",
        "-in",
        "crl.der",
        "-outform",
        "DER",
        "-out",
        "again.der",
        cwd=tmp_path,
    )
    assert (tmp_path / "again.der").read_bytes() == crl.der

    verdict = _run(
        "crl", "-in", "crl.pem", "-noout", "-CAfile", "ca.pem", cwd=tmp_path, check=False
    )
    if signer_id == b"":
        assert verdict.returncode == 0, verdict.stderr
        assert "verify OK" in verdict.stdout + verdict.stderr
    else:
        # OpenSSL 3.0 verifies CRLs under the empty id only (module docstring): pinned, so a
        # fixed OpenSSL shows up here. The signature itself checks out under the GM/T id:
        assert "verify failure" in verdict.stdout + verdict.stderr
        (tmp_path / "tbs.der").write_bytes(crl.tbs_der)
        (tmp_path / "sig.der").write_bytes(signature_to_der(crl.signature))
        _run("x509", "-in", "ca.pem", "-noout", "-pubkey", "-out", "ca.pub", cwd=tmp_path)
        dgst = _run(
            "dgst",
            "-sm3",
            "-verify",
            "ca.pub",
            "-sigopt",
            f"distid:{DISTID}",
            "-signature",
            "sig.der",
            "tbs.der",
            cwd=tmp_path,
        )
        assert "Verified OK" in dgst.stdout


def test_openssl_refuses_a_tampered_project_crl(tmp_path: Path) -> None:
    ca, ca_key = _project_ca(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    crl = build_crl(
        issuer=ca,
        issuer_key=ca_key,
        revoked=[RevokedCertificate(0x3E9, now - timedelta(hours=1))],
        this_update=now - timedelta(minutes=5),
        next_update=now + timedelta(days=7),
        crl_number=1,
        signer_id=b"",
    )
    tampered = crl.der.replace(bytes.fromhex("020203e9"), bytes.fromhex("020203ea"), 1)
    assert tampered != crl.der
    (tmp_path / "crl.der").write_bytes(tampered)
    verdict = _run(
        "crl",
        "-inform",
        "DER",
        "-in",
        "crl.der",
        "-noout",
        "-CAfile",
        "ca.pem",
        cwd=tmp_path,
        check=False,
    )
    assert "verify failure" in verdict.stdout + verdict.stderr


# --- (b) CRLs a tiny `openssl ca` writes, read by the project -------------------------------

_CA_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
certificate = ./ca.pem
private_key = ./ca.key
serial = ./serial
crlnumber = ./crlnumber
default_md = sm3
default_days = 30
default_crl_days = 7
policy = policy_any
unique_subject = no
crl_extensions = crl_ext
x509_extensions = card_ext
[ policy_any ]
commonName = supplied
serialNumber = optional
countryName = optional
[ card_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


@pytest.fixture
def openssl_ca(tmp_path: Path) -> Path:
    d = tmp_path
    (d / "newcerts").mkdir()
    (d / "index.txt").write_text("")
    (d / "serial").write_text("0A\n")
    (d / "crlnumber").write_text("1000\n")
    (d / "ca.cnf").write_text(_CA_CNF)
    _run("genpkey", "-algorithm", "SM2", "-out", "ca.key", cwd=d)
    _run(
        "req",
        "-new",
        "-x509",
        "-key",
        "ca.key",
        "-sm3",
        "-sigopt",
        f"distid:{DISTID}",
        "-subj",
        "/C=CN/CN=OpenSSL Issuing",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-out",
        "ca.pem",
        cwd=d,
    )
    for name in ("card1", "card2"):
        _run("genpkey", "-algorithm", "SM2", "-out", f"{name}.key", cwd=d)
        _run(
            "req",
            "-new",
            "-key",
            f"{name}.key",
            "-sm3",
            "-sigopt",
            f"distid:{DISTID}",
            "-subj",
            f"/C=CN/serialNumber={CARD_SN}/CN={name}",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        _run(
            "ca",
            "-config",
            "ca.cnf",
            "-batch",
            "-in",
            f"{name}.csr",
            "-sigopt",
            f"distid:{DISTID}",
            "-vfyopt",
            f"distid:{DISTID}",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    _run("ca", "-config", "ca.cnf", "-revoke", "card1.pem", "-crl_reason", "keyCompromise", cwd=d)
    return d


@pytest.mark.parametrize("distid", [False, True], ids=["openssl-default-id", "gmt-id"])
def test_project_reads_crls_openssl_ca_writes(openssl_ca: Path, distid: bool) -> None:
    d = openssl_ca
    sig = ["-sigopt", f"distid:{DISTID}"] if distid else []
    _run("ca", "-config", "ca.cnf", "-gencrl", *sig, "-out", "crl.pem", cwd=d)
    _run("crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der", cwd=d)

    ca = load_pem((d / "ca.pem").read_bytes())
    card1, card2 = (load_pem((d / f"{n}.pem").read_bytes()) for n in ("card1", "card2"))
    for raw in ((d / "crl.pem").read_bytes(), (d / "crl.der").read_bytes()):
        crl = load_crl(raw)
        assert crl.crl_number == 0x1000
        assert crl.issuer_der == ca.subject_der
        assert crl.authority_key_id == ca.subject_key_id
        assert crl.revoked_serials == {card1.serial_number}
        assert card2.serial_number not in crl.revoked_serials
        assert crl.revoked[0].reason is RevocationReason.KEY_COMPROMISE
        verify_crl(crl, ca, at=crl.this_update + timedelta(seconds=1))
        # Signed under exactly one of the two ids.
        only = (DEFAULT_SIGNER_ID,) if not distid else (b"",)
        with pytest.raises(CrlSignatureInvalid):
            verify_crl(crl, ca, at=crl.this_update, signer_ids=only)


def test_a_second_openssl_crl_has_a_higher_number(openssl_ca: Path) -> None:
    d = openssl_ca
    _run("ca", "-config", "ca.cnf", "-gencrl", "-out", "crl1.pem", cwd=d)
    _run("ca", "-config", "ca.cnf", "-revoke", "card2.pem", cwd=d)
    _run("ca", "-config", "ca.cnf", "-gencrl", "-out", "crl2.pem", cwd=d)
    first, second = (load_crl((d / f"crl{n}.pem").read_bytes()) for n in (1, 2))
    assert second.crl_number == first.crl_number + 1
    assert len(second.revoked) == 2
    assert second.revoked[1].reason is None
