"""SM2 certificates and signatures interoperate with the system OpenSSL 3.0 CLI, both ways.

OpenSSL 3.0 quirks found here (OpenSSL 3.0.x, Debian 12) and how each test deals with them:

1. **No default SM2 distinguishing id.** Without ``-sigopt``/``-vfyopt``/``-pkeyopt distid:``
   OpenSSL 3.0 signs and verifies with an *empty* id (ENTL = 0), not GM/T 0009's
   ``1234567812345678``. Every OpenSSL command below therefore names the id explicitly, and
   :func:`test_openssl_without_distid_uses_the_empty_id` pins that behaviour down.
2. **``openssl verify -vfyopt distid:…`` applies the id to the target certificate only**
   (apps/verify.c calls ``X509_set0_distinguishing_id`` on the certificate being checked;
   ``-untrusted``/``-CAfile`` certificates get none, so their signatures are checked with the
   empty id). A three-level chain in one command,
   ``openssl verify -vfyopt distid:1234567812345678 -CAfile root.pem -untrusted issuing.pem
   card.pem``, thus fails with ``error 7 at 1 depth lookup: certificate signature failure``
   although every signature is right (openssl/openssl#23471, open for 3.0 to 3.6). What does
   work, and is what we assert: verify each link with the id on the target —
   ``openssl verify -vfyopt distid:ID -CAfile root.pem issuing.pem`` then
   ``openssl verify -vfyopt distid:ID -partial_chain -CAfile issuing.pem card.pem`` — and a
   two-level chain (card issued by the root) in one command. The one-shot command is run too
   and must either pass (a fixed OpenSSL) or fail with exactly that depth-1 error.
3. ``openssl verify`` checks dates against the wall clock unless ``-attime`` is given; the
   project-built chain has fixed dates, so every verify passes ``-attime``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cikit import in_ci

from sscard.certs import (
    Certificate,
    CertificateSignatureInvalid,
    build_card_certificate,
    build_issuing_ca,
    build_root_ca,
    fingerprint_sm3,
    load_der,
    load_pem,
    verify_chain,
)
from sscard.crypto import (
    DEFAULT_SIGNER_ID,
    SignatureInvalid,
    SM2PrivateKey,
    SM2PublicKey,
    signature_from_der,
    signature_to_der,
    sm2_sign,
    sm2_verify,
)

OPENSSL = shutil.which("openssl")
DISTID = DEFAULT_SIGNER_ID.decode()  # "1234567812345678"
CARD_SN = "310000D1560000050123456789ABCDEF"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T_END = datetime(2034, 1, 1, tzinfo=UTC)
AT = datetime(2026, 6, 1, tzinfo=UTC)
AT_EPOCH = str(int(AT.timestamp()))

pytestmark = [
    pytest.mark.integration,
    # A missing binary is a skip on a laptop but a failure in CI, where the image has it.
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


def _openssl_verify(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run("verify", "-attime", AT_EPOCH, *args, cwd=cwd, check=False)


# --- (a) a chain the project builds, checked by OpenSSL ------------------------------------


@dataclass(frozen=True)
class ProjectChain:
    root: Certificate
    issuing: Certificate
    card: Certificate
    root_key: SM2PrivateKey
    dir: Path


@pytest.fixture
def project_chain(tmp_path: Path) -> ProjectChain:
    root_key, ca_key, card_key = (SM2PrivateKey.generate() for _ in range(3))
    root = build_root_ca(
        root_key,
        [("C", "CN"), ("O", "上海社保卡测试"), ("CN", "SSC Test Root")],
        not_before=T0,
        not_after=T_END,
    )
    issuing = build_issuing_ca(
        ca_key.public_key,
        [("C", "CN"), ("CN", "SSC Test Issuing CA")],
        issuer=root,
        issuer_key=root_key,
        not_before=T0,
        not_after=T_END,
    )
    card = build_card_certificate(
        card_key.public_key,
        card_sn=CARD_SN,
        common_name="card",
        issuer=issuing,
        issuer_key=ca_key,
        not_before=T0,
        not_after=T_END,
    )
    for name, cert in (("root", root), ("issuing", issuing), ("card", card)):
        (tmp_path / f"{name}.pem").write_bytes(cert.to_pem())
        (tmp_path / f"{name}.der").write_bytes(cert.der)
    return ProjectChain(root, issuing, card, root_key, tmp_path)


def test_openssl_parses_project_certificates(project_chain: ProjectChain) -> None:
    d = project_chain.dir
    card = _run("x509", "-in", "card.pem", "-noout", "-text", cwd=d).stdout
    assert "Version: 3 (0x2)" in card
    assert card.count("Signature Algorithm: SM2-with-SM3") == 2
    assert "ASN1 OID: SM2" in card
    assert f"serialNumber = {CARD_SN}" in card
    assert "Digital Signature" in card
    assert "CA:FALSE" in card
    issuing = _run("x509", "-in", "issuing.pem", "-noout", "-text", cwd=d).stdout
    assert "CA:TRUE, pathlen:0" in issuing
    assert "Certificate Sign, CRL Sign" in issuing
    assert "X509v3 Authority Key Identifier" in issuing
    # DER in, DER out: OpenSSL re-encodes our certificate to the same bytes.
    der_out = subprocess.run(
        [str(OPENSSL), "x509", "-inform", "DER", "-in", "card.der", "-outform", "DER"],
        cwd=d,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert der_out == project_chain.card.der
    # openssl's SM3 fingerprint is ours.
    fp = _run("x509", "-in", "card.pem", "-noout", "-fingerprint", "-sm3", cwd=d).stdout
    assert (
        fp.split("=", 1)[1].strip().replace(":", "").lower()
        == fingerprint_sm3(project_chain.card.der).hex()
    )


def test_openssl_verifies_project_chain_link_by_link(project_chain: ProjectChain) -> None:
    d = project_chain.dir
    vfy = f"distid:{DISTID}"
    root_to_issuing = _openssl_verify(d, "-vfyopt", vfy, "-CAfile", "root.pem", "issuing.pem")
    assert root_to_issuing.returncode == 0, root_to_issuing.stdout + root_to_issuing.stderr
    assert "issuing.pem: OK" in root_to_issuing.stdout
    issuing_to_card = _openssl_verify(
        d, "-vfyopt", vfy, "-partial_chain", "-CAfile", "issuing.pem", "card.pem"
    )
    assert issuing_to_card.returncode == 0, issuing_to_card.stdout + issuing_to_card.stderr
    assert "card.pem: OK" in issuing_to_card.stdout
    # ... and the project agrees.
    verify_chain(project_chain.card, [project_chain.issuing], project_chain.root, at=AT)


def test_openssl_one_shot_chain_command(project_chain: ProjectChain) -> None:
    """The brief's one-liner: passes on a fixed OpenSSL, else fails only by quirk 2."""
    result = _openssl_verify(
        project_chain.dir,
        "-vfyopt",
        f"distid:{DISTID}",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuing.pem",
        "card.pem",
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        # Depth 1 is the issuing CA, checked without the id: openssl/openssl#23471.
        assert "error 7 at 1 depth lookup: certificate signature failure" in output, output


def test_openssl_verifies_two_level_chain_in_one_command(project_chain: ProjectChain) -> None:
    d = project_chain.dir
    card = build_card_certificate(
        SM2PrivateKey.generate().public_key,
        card_sn=CARD_SN,
        common_name="direct",
        issuer=project_chain.root,
        issuer_key=project_chain.root_key,
        not_before=T0,
        not_after=T_END,
    )
    (d / "direct.pem").write_bytes(card.to_pem())
    ok = _openssl_verify(d, "-vfyopt", f"distid:{DISTID}", "-CAfile", "root.pem", "direct.pem")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "direct.pem: OK" in ok.stdout


def test_openssl_rejects_tampered_card_and_wrong_distid(project_chain: ProjectChain) -> None:
    """Negative controls: the OK above is OpenSSL really checking our SM2 signatures."""
    d = project_chain.dir
    der = project_chain.card.der
    assert der.count(b"card") == 1
    (d / "forged.der").write_bytes(der.replace(b"card", b"cark"))
    _run("x509", "-inform", "DER", "-in", "forged.der", "-out", "forged.pem", cwd=d)
    common = ("-partial_chain", "-CAfile", "issuing.pem")
    forged = _openssl_verify(d, "-vfyopt", f"distid:{DISTID}", *common, "forged.pem")
    assert forged.returncode != 0
    assert "certificate signature failure" in forged.stdout + forged.stderr
    wrong_id = _openssl_verify(d, "-vfyopt", "distid:8765432187654321", *common, "card.pem")
    assert wrong_id.returncode != 0
    assert "certificate signature failure" in wrong_id.stdout + wrong_id.stderr


# --- (b) a chain OpenSSL builds, checked by the project ------------------------------------

_ROOT_EXT = """\
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
"""
_ISSUING_EXT = """\
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""
_CARD_EXT = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""


def _genkey(d: Path, name: str) -> None:
    _run(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:SM2",
        "-out",
        f"{name}.key",
        cwd=d,
    )


def _openssl_issue(
    d: Path, name: str, subject: str, ext: str, issuer: str | None, *, distid: bool = True
) -> None:
    """``openssl req`` + ``openssl x509 -req`` with SM3 and (by default) the GM/T distid."""
    sig = ["-sigopt", f"distid:{DISTID}"] if distid else []
    vfy = ["-vfyopt", f"distid:{DISTID}"] if distid else []  # checks the CSR's self-signature
    (d / f"{name}.ext").write_text(ext)
    _run(
        "req",
        "-new",
        "-key",
        f"{name}.key",
        "-subj",
        subject,
        "-sm3",
        *sig,
        "-out",
        f"{name}.csr",
        cwd=d,
    )
    signer = (
        ["-signkey", f"{name}.key"]
        if issuer is None
        else ["-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key", "-CAcreateserial"]
    )
    _run(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        *signer,
        "-sm3",
        *sig,
        *vfy,
        "-extfile",
        f"{name}.ext",
        "-days",
        "30",
        "-out",
        f"{name}.pem",
        cwd=d,
    )


@pytest.fixture
def openssl_chain(tmp_path: Path) -> Path:
    for name in ("root", "issuing", "card"):
        _genkey(tmp_path, name)
    _openssl_issue(tmp_path, "root", "/C=CN/O=OpenSSL Test/CN=OpenSSL Root", _ROOT_EXT, None)
    _openssl_issue(tmp_path, "issuing", "/C=CN/CN=OpenSSL Issuing", _ISSUING_EXT, "root")
    _openssl_issue(
        tmp_path, "card", f"/C=CN/serialNumber={CARD_SN}/CN=OpenSSL Card", _CARD_EXT, "issuing"
    )
    return tmp_path


def test_project_verifies_openssl_built_chain(openssl_chain: Path) -> None:
    d = openssl_chain
    root, issuing, card = (
        load_pem((d / f"{n}.pem").read_bytes()) for n in ("root", "issuing", "card")
    )
    at = max(c.not_before for c in (root, issuing, card))
    verified = verify_chain(card, [issuing], root, at=at)
    assert verified.card_sn == CARD_SN
    assert card.common_name == "OpenSSL Card"
    assert issuing.path_length == 0
    # The key in the certificate is the key OpenSSL generated, read two independent ways.
    spki = subprocess.run(
        [str(OPENSSL), "pkey", "-in", "card.key", "-pubout", "-outform", "DER"],
        cwd=d,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert verified.public_key == SM2PublicKey.from_spki_der(spki)
    assert verified.public_key == SM2PrivateKey.from_pem((d / "card.key").read_bytes()).public_key
    # OpenSSL-issued DER survives our strict reader unchanged.
    assert load_der(card.der).der == card.der
    # Negative control: the distid matters, so the OK above used the GM/T default id.
    with pytest.raises(CertificateSignatureInvalid):
        verify_chain(card, [issuing], root, at=at, signer_id=b"8765432187654321")
    # OpenSSL agrees with itself link by link (quirk 2 again), with the same files.
    vfy = f"distid:{DISTID}"
    assert (
        _run("verify", "-vfyopt", vfy, "-CAfile", "root.pem", "issuing.pem", cwd=d).returncode == 0
    )
    assert (
        _run(
            "verify", "-vfyopt", vfy, "-partial_chain", "-CAfile", "issuing.pem", "card.pem", cwd=d
        ).returncode
        == 0
    )


def test_openssl_without_distid_uses_the_empty_id(openssl_chain: Path) -> None:
    """Quirk 1: a certificate signed with no ``-sigopt distid`` carries an empty-id signature."""
    d = openssl_chain
    _genkey(d, "nodistid")
    _openssl_issue(
        d,
        "nodistid",
        f"/C=CN/serialNumber={CARD_SN}/CN=No distid",
        _CARD_EXT,
        "issuing",
        distid=False,
    )
    issuing, root = (
        load_pem((d / "issuing.pem").read_bytes()),
        load_pem((d / "root.pem").read_bytes()),
    )
    card = load_pem((d / "nodistid.pem").read_bytes())
    with pytest.raises(CertificateSignatureInvalid):
        verify_chain(card, [issuing], root, at=card.not_before)
    sm2_verify(issuing.public_key, card.tbs_der, card.signature, signer_id=b"")


# --- (c) raw SM2 signatures, both ways -----------------------------------------------------

MESSAGE = b"challenge 0123456789abcdef | card 310000D156000005 | terminal T-0001"


def test_openssl_pkeyutl_signature_verifies_with_sm2_verify(tmp_path: Path) -> None:
    _genkey(tmp_path, "k")
    (tmp_path / "msg.bin").write_bytes(MESSAGE)
    _run(
        "pkeyutl",
        "-sign",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        f"distid:{DISTID}",
        "-inkey",
        "k.key",
        "-in",
        "msg.bin",
        "-out",
        "sig.der",
        cwd=tmp_path,
    )
    public_key = SM2PrivateKey.from_pem((tmp_path / "k.key").read_bytes()).public_key
    signature = signature_from_der((tmp_path / "sig.der").read_bytes())
    sm2_verify(public_key, MESSAGE, signature)
    with pytest.raises(SignatureInvalid):
        sm2_verify(public_key, MESSAGE + b"!", signature)


def test_openssl_dgst_signature_verifies_with_sm2_verify(tmp_path: Path) -> None:
    _genkey(tmp_path, "k")
    (tmp_path / "msg.bin").write_bytes(MESSAGE)
    _run(
        "dgst",
        "-sm3",
        "-sign",
        "k.key",
        "-sigopt",
        f"distid:{DISTID}",
        "-out",
        "sig.der",
        "msg.bin",
        cwd=tmp_path,
    )
    public_key = SM2PrivateKey.from_pem((tmp_path / "k.key").read_bytes()).public_key
    sm2_verify(public_key, MESSAGE, signature_from_der((tmp_path / "sig.der").read_bytes()))


def test_sm2_sign_signature_verifies_with_openssl(tmp_path: Path) -> None:
    key = SM2PrivateKey.generate()
    (tmp_path / "pub.pem").write_bytes(key.public_key.to_pem())
    (tmp_path / "msg.bin").write_bytes(MESSAGE)
    (tmp_path / "forged.bin").write_bytes(MESSAGE + b"!")
    (tmp_path / "sig.der").write_bytes(signature_to_der(sm2_sign(key, MESSAGE)))
    common = (
        "pkeyutl",
        "-verify",
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        f"distid:{DISTID}",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-sigfile",
        "sig.der",
    )
    ok = _run(*common, "-in", "msg.bin", cwd=tmp_path, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    bad = _run(*common, "-in", "forged.bin", cwd=tmp_path, check=False)
    assert bad.returncode != 0
    assert "Signature Verification Failure" in bad.stdout + bad.stderr
    # dgst agrees, and signs with our PKCS#8 key for us to verify.
    (tmp_path / "key.pem").write_bytes(key.to_pem())
    dgst_ok = _run(
        "dgst",
        "-sm3",
        "-verify",
        "pub.pem",
        "-sigopt",
        f"distid:{DISTID}",
        "-signature",
        "sig.der",
        "msg.bin",
        cwd=tmp_path,
    )
    assert "Verified OK" in dgst_ok.stdout
    _run(
        "dgst",
        "-sm3",
        "-sign",
        "key.pem",
        "-sigopt",
        f"distid:{DISTID}",
        "-out",
        "sig2.der",
        "msg.bin",
        cwd=tmp_path,
    )
    sm2_verify(key.public_key, MESSAGE, signature_from_der((tmp_path / "sig2.der").read_bytes()))
