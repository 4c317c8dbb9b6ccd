"""sscard.crypto against the GB/T known-answer vectors (tests/vectors/sm.json), on both backends."""

from __future__ import annotations

import hmac as std_hmac

import pytest
from gmssl import func as gm_func
from gmssl import sm3 as gm_sm3
from hypothesis import given
from hypothesis import strategies as st
from vectors import sm_vectors

from sscard.crypto import (
    DEFAULT_SIGNER_ID,
    CipherInputError,
    KeyInvalid,
    SignatureInvalid,
    SM2PrivateKey,
    SM2PublicKey,
    curve,
    get_backend,
    hmac_sm3,
    pad_iso9797_m2,
    signature_from_der,
    signature_to_der,
    sm2_digest,
    sm2_sign,
    sm2_verify,
    sm2_z,
    sm3,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
    sm4_mac,
)
from sscard.crypto.backends.gmssl import GmsslBackend

BACKENDS = ["tongsuo", "gmssl"]
V = sm_vectors()
SIGN = V["sm2_sign"][0]


def _vector_key() -> SM2PrivateKey:
    return SM2PrivateKey.from_bytes(bytes.fromhex(SIGN["private_key"]))


def _vector_sig() -> bytes:
    return bytes.fromhex(SIGN["r"] + SIGN["s"])


def _gmssl_sm3(data: bytes) -> bytes:
    return bytes.fromhex(gm_sm3.sm3_hash(gm_func.bytes_to_list(data)))


# --- SM3 / HMAC-SM3 -------------------------------------------------------------------------


@pytest.mark.parametrize("case", V["sm3"], ids=lambda c: c["digest"][:8])
def test_sm3_vectors(case: dict[str, object]) -> None:
    if "message_ascii" in case:
        message = str(case["message_ascii"]).encode()
    else:
        text, times = case["message_ascii_repeat"]  # type: ignore[misc]
        message = str(text).encode() * int(times)
    expected = bytes.fromhex(str(case["digest"]))
    assert sm3(message) == expected
    assert _gmssl_sm3(message) == expected  # the reference agrees


def test_curve_parameters_match_vector_file() -> None:
    c = V["sm2_curve"]
    assert tuple(int(c[k], 16) for k in ("p", "a", "b", "n", "gx", "gy")) == (
        curve.P,
        curve.A,
        curve.B,
        curve.N,
        curve.GX,
        curve.GY,
    )
    assert c["oid"] == curve.CURVE_OID


@pytest.mark.parametrize(("key", "message"), [(b"k", b""), (b"k" * 100, b"abc" * 50), (b"", b"x")])
def test_hmac_sm3_matches_rfc2104_over_reference_sm3(key: bytes, message: bytes) -> None:
    block = 64
    k = _gmssl_sm3(key) if len(key) > block else key
    k = k.ljust(block, b"\x00")
    inner = _gmssl_sm3(bytes(b ^ 0x36 for b in k) + message)
    expected = _gmssl_sm3(bytes(b ^ 0x5C for b in k) + inner)
    assert hmac_sm3(key, message) == expected
    assert std_hmac.compare_digest(hmac_sm3(key, message), expected)
    assert hmac_sm3(key, message + b"!") != expected


# --- SM4 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_sm4_single_block_vectors(backend: str) -> None:
    b = get_backend(backend)
    for case in V["sm4"]:
        if case.get("iterations"):
            continue
        key, pt, ct = (bytes.fromhex(case[k]) for k in ("key", "plaintext", "ciphertext"))
        if case["mode"] == "ECB":
            assert sm4_ecb_encrypt(key, pt, backend=b) == ct
            assert sm4_ecb_decrypt(key, ct, backend=b) == pt
        else:
            iv = bytes.fromhex(case["iv"])
            assert sm4_cbc_encrypt(key, iv, pt, backend=b) == ct
            assert sm4_cbc_decrypt(key, iv, ct, backend=b) == pt


@pytest.mark.slow
def test_sm4_million_iterations_vector() -> None:
    (case,) = [c for c in V["sm4"] if c.get("iterations")]
    key, block = bytes.fromhex(case["key"]), bytes.fromhex(case["plaintext"])
    # A reused encryptor: the vector is about SM4 itself, not about our per-call set-up cost.
    from tongsuopy.crypto.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    for _ in range(case["iterations"]):
        block = enc.update(block)
    assert block == bytes.fromhex(case["ciphertext"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sm4_multi_block_agrees_between_backends(backend: str) -> None:
    key, iv = bytes(range(16)), bytes(range(16, 32))
    data = bytes(range(256)) * 2
    ecb = sm4_ecb_encrypt(key, data, backend=get_backend(backend))
    assert ecb == sm4_ecb_encrypt(key, data, backend=get_backend("tongsuo"))
    cbc = sm4_cbc_encrypt(key, iv, data, backend=get_backend(backend))
    assert sm4_cbc_decrypt(key, iv, cbc, backend=get_backend("gmssl")) == data
    assert cbc[:16] == sm4_ecb_encrypt(key, bytes(a ^ b for a, b in zip(data, iv, strict=False)))


def test_sm4_mac_is_cbc_mac_with_method_2_padding() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    data = b"card_sn+challenge"  # 17 bytes -> two blocks after padding
    padded = pad_iso9797_m2(data)
    assert padded == data + b"\x80" + b"\x00" * 14
    block1 = sm4_ecb_encrypt(key, padded[:16])
    block2 = sm4_ecb_encrypt(key, bytes(a ^ b for a, b in zip(block1, padded[16:], strict=True)))
    assert sm4_mac(key, data) == block2[:4]
    assert sm4_mac(key, data, mac_len=16) == block2
    assert sm4_mac(key, data, backend=get_backend("gmssl")) == block2[:4]
    assert pad_iso9797_m2(bytes(16)) == bytes(16) + b"\x80" + bytes(15)


@pytest.mark.parametrize(
    ("key", "data"), [(bytes(15), bytes(16)), (bytes(16), bytes(15)), (bytes(17), bytes(32))]
)
def test_sm4_rejects_bad_lengths(key: bytes, data: bytes) -> None:
    with pytest.raises(CipherInputError):
        sm4_ecb_encrypt(key, data)
    with pytest.raises(CipherInputError):
        sm4_cbc_encrypt(key, bytes(16), data)


# --- SM2 --------------------------------------------------------------------------------------


def test_vector_public_key_z_and_e() -> None:
    key = _vector_key()
    assert key.public_key == SM2PublicKey(int(SIGN["public_x"], 16), int(SIGN["public_y"], 16))
    assert SIGN["signer_id_ascii"].encode() == DEFAULT_SIGNER_ID
    assert sm2_z(key.public_key).hex().upper() == SIGN["z"]
    message = SIGN["message_ascii"].encode()
    assert sm2_digest(key.public_key, message, DEFAULT_SIGNER_ID).hex().upper() == SIGN["e"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_vector_signature_verifies(backend: str) -> None:
    sm2_verify(
        _vector_key().public_key,
        SIGN["message_ascii"].encode(),
        _vector_sig(),
        backend=get_backend(backend),
    )


def test_reference_reproduces_vector_signature_with_its_nonce() -> None:
    # Only a test may fix the nonce, and only on the reference backend's private helper.
    e = bytes.fromhex(SIGN["e"])
    sig = GmsslBackend().sign_digest_with_nonce(_vector_key().d, e, int(SIGN["k"], 16))
    assert sig == (int(SIGN["r"], 16), int(SIGN["s"], 16))


@pytest.mark.parametrize(("signer", "verifier"), [("tongsuo", "gmssl"), ("gmssl", "tongsuo")])
def test_backends_agree_both_ways(signer: str, verifier: str) -> None:
    key = SM2PrivateKey.generate()
    for signer_id in (DEFAULT_SIGNER_ID, b"ALICE123@YAHOO.COM"):
        sig = sm2_sign(key, b"cross-check", signer_id=signer_id, backend=get_backend(signer))
        sm2_verify(
            key.public_key, b"cross-check", sig, signer_id=signer_id, backend=get_backend(verifier)
        )


def test_signatures_are_randomised() -> None:
    key = SM2PrivateKey.generate()
    assert sm2_sign(key, b"m") != sm2_sign(key, b"m")


def _bad_signature_cases() -> dict[str, tuple[bytes, bytes, bytes]]:
    message = SIGN["message_ascii"].encode()
    sig = _vector_sig()
    n = curve.N.to_bytes(32, "big")
    return {
        "tampered message": (message + b".", sig, DEFAULT_SIGNER_ID),
        "wrong signer id": (message, sig, b"1234567812345679"),
        "r = 0": (message, bytes(32) + sig[32:], DEFAULT_SIGNER_ID),
        "s = 0": (message, sig[:32] + bytes(32), DEFAULT_SIGNER_ID),
        "r = n": (message, n + sig[32:], DEFAULT_SIGNER_ID),
        "s = n": (message, sig[:32] + n, DEFAULT_SIGNER_ID),
        "s >= n": (message, sig[:32] + b"\xff" * 32, DEFAULT_SIGNER_ID),
        "truncated": (message, sig[:63], DEFAULT_SIGNER_ID),
        "empty": (message, b"", DEFAULT_SIGNER_ID),
        "flipped bit": (message, sig[:-1] + bytes([sig[-1] ^ 1]), DEFAULT_SIGNER_ID),
    }


@pytest.mark.parametrize("case", sorted(_bad_signature_cases()))
@pytest.mark.parametrize("backend", BACKENDS)
def test_rejections(backend: str, case: str) -> None:
    message, signature, signer_id = _bad_signature_cases()[case]
    with pytest.raises(SignatureInvalid):
        sm2_verify(
            _vector_key().public_key,
            message,
            signature,
            signer_id=signer_id,
            backend=get_backend(backend),
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_public_key_off_curve_is_rejected(backend: str) -> None:
    raw = bytearray(_vector_key().public_key.to_bytes())
    raw[-1] ^= 1
    with pytest.raises(KeyInvalid):
        sm2_verify(bytes(raw), b"m", _vector_sig(), backend=get_backend(backend))
    with pytest.raises(KeyInvalid):
        SM2PublicKey(curve.GX, curve.GY + 1)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x04" + bytes(64), b"\x02" + bytes(64), b"\x04" + b"\xff" * 64, b"\x04" * 66],
)
def test_malformed_public_keys(raw: bytes) -> None:
    with pytest.raises(KeyInvalid):
        SM2PublicKey.from_bytes(raw)


def test_gmssl_wrapper_survives_keys_starting_with_04() -> None:
    # gmssl's constructor lstrip("04")s public keys; a key whose X starts 0x04 would be
    # corrupted if the wrapper went through it.
    key = next(
        k for k in (SM2PrivateKey.generate() for _ in range(5000)) if k.public_key.x >> 248 == 0x04
    )
    sig = sm2_sign(key, b"m", backend=get_backend("tongsuo"))
    sm2_verify(key.public_key, b"m", sig, backend=get_backend("gmssl"))


def test_private_key_ranges_and_repr() -> None:
    for bad in (0, curve.N - 1, curve.N, -1):
        with pytest.raises(KeyInvalid):
            SM2PrivateKey.from_int(bad)
    key = SM2PrivateKey.from_int(curve.N - 2)
    assert f"{key.d:x}" not in repr(key)
    with pytest.raises(KeyInvalid):
        SM2PrivateKey.from_bytes(bytes(31))


def test_key_encodings_round_trip() -> None:
    key = SM2PrivateKey.generate()
    pub = key.public_key
    assert SM2PublicKey.from_bytes(pub.to_bytes()) == pub
    assert SM2PublicKey.from_spki_der(pub.to_spki_der()) == pub
    assert SM2PrivateKey.from_pem(key.to_pem()) == key
    assert SM2PrivateKey.from_pem(key.to_pem().decode()).public_key == pub
    assert SM2PrivateKey.from_bytes(key.to_bytes()) == key
    with pytest.raises(KeyInvalid):
        SM2PublicKey.from_spki_der(pub.to_spki_der()[:-1])
    with pytest.raises(KeyInvalid):
        SM2PrivateKey.from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_signature_der_round_trip_and_strictness() -> None:
    sig = _vector_sig()
    der = signature_to_der(sig)
    assert signature_from_der(der) == sig
    high_r = b"\x80" + bytes(31) + b"\x01" * 32
    assert signature_from_der(signature_to_der(high_r)) == high_r
    non_minimal = b"\x30\x08\x02\x02\x00\x01\x02\x02\x00\x01"
    for bad in (der + b"\x00", der[:-1], b"\x30\x00", non_minimal, b"\x31" + der[1:]):
        with pytest.raises(SignatureInvalid):
            signature_from_der(bad)


@given(st.binary(max_size=80))
def test_signature_from_der_never_raises_anything_else(data: bytes) -> None:
    try:
        sig = signature_from_der(data)
    except SignatureInvalid:
        return
    assert len(sig) == 64
    assert signature_from_der(signature_to_der(sig)) == sig


def test_tongsuo_fast_key_path_still_refuses_points_off_the_curve() -> None:
    # The fast path skips OpenSSL's n·Q check (redundant for cofactor 1), not the curve check.
    from sscard.crypto.backends import tongsuo

    tongsuo._public_evp_pkey(curve.GX, curve.GY)  # the generator is a valid key
    with pytest.raises(RuntimeError):
        tongsuo._public_evp_pkey(curve.GX, curve.GY + 1)
