"""SM2 key encodings interoperate with the system OpenSSL 3 command line, both ways."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sscard.crypto import SM2PrivateKey, SM2PublicKey

pytestmark = pytest.mark.integration


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=True, timeout=30
    ).stdout


def test_our_private_key_pem_is_read_by_openssl(tmp_path: Path) -> None:
    key = SM2PrivateKey.generate()
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.to_pem())
    text = _openssl("pkey", "-in", str(pem), "-noout", "-text").decode()
    assert "SM2" in text
    spki = _openssl("pkey", "-in", str(pem), "-pubout", "-outform", "DER")
    assert spki == key.public_key.to_spki_der()


def test_openssl_generated_key_is_read_by_us(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2", "-out", str(pem))
    key = SM2PrivateKey.from_pem(pem.read_bytes())
    spki = _openssl("pkey", "-in", str(pem), "-pubout", "-outform", "DER")
    assert SM2PublicKey.from_spki_der(spki) == key.public_key
