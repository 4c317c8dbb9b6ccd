"""sscard.terminal_auth: the canonical string, HMAC-SM3 signing, and the demo derivation.

The golden vectors below pin the wire format: terminal_sdk must produce the same bytes.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vectors import sm_vectors

from sscard import terminal_auth as ta

SECRET = bytes(range(32))
BODY = b'{"message":"hello"}'
NONCE = "AbCdEfGhIjKlMnOp"
TS = 1_800_000_000
GOLDEN_CANONICAL = (
    b"POST\n/v1/echo?visit=42\n1800000000\nAbCdEfGhIjKlMnOp\n"
    b"2fc9746c7776c72e02a2ce95a37e2051cafc9f584929f5a4768115fec938ff0d"
)
GOLDEN_SIGNATURE = "14ded618df9775fdafb0e780561f916b0a85c49e45292c42962e7d29b45ed92c"


def _message(vector: dict[str, object]) -> bytes:
    if "message_ascii" in vector:
        return str(vector["message_ascii"]).encode()
    text, times = vector["message_ascii_repeat"]  # type: ignore[misc]
    return str(text).encode() * int(times)


@pytest.mark.parametrize("vector", sm_vectors()["sm3"])
def test_sm3_known_answers(vector: dict[str, object]):
    # GB/T 32905 vectors: the SM3 under both the body digest and the HMAC.
    assert ta.body_digest_hex(_message(vector)) == str(vector["digest"]).lower()


def _rfc2104_hmac_sm3(key: bytes, message: bytes) -> bytes:
    block = 64
    key = key.ljust(block, b"\0")
    inner = hashlib.new("sm3", bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.new("sm3", bytes(k ^ 0x5C for k in key) + inner).digest()


@pytest.mark.parametrize("key", [b"k" * 16, SECRET, b"\xff" * 64])
def test_hmac_sm3_is_rfc2104_over_sm3(key: bytes):
    assert ta.hmac_sm3(key, b"message") == _rfc2104_hmac_sm3(key, b"message")


def test_canonical_request_golden_vector():
    assert ta.canonical_request("POST", "/v1/echo?visit=42", TS, NONCE, BODY) == GOLDEN_CANONICAL


def test_sign_request_golden_vector():
    signature = ta.sign_request(SECRET, "POST", "/v1/echo?visit=42", TS, NONCE, BODY)
    assert signature == GOLDEN_SIGNATURE
    assert signature == _rfc2104_hmac_sm3(SECRET, GOLDEN_CANONICAL).hex()


def test_empty_body_digest_is_sm3_of_nothing():
    assert ta.canonical_request("GET", "/x", 0, NONCE, b"").endswith(
        hashlib.new("sm3", b"").hexdigest().encode()
    )


def test_verify_accepts_the_right_signature():
    signature = bytes.fromhex(GOLDEN_SIGNATURE)
    ta.verify_request_signature(SECRET, "POST", "/v1/echo?visit=42", TS, NONCE, BODY, signature)


@pytest.mark.parametrize(
    "change",
    [
        {"secret": b"\x01" * 32},
        {"method": "PUT"},
        {"path": "/v1/echo?visit=43"},
        {"path": "/v1/echo"},
        {"timestamp": TS + 1},
        {"nonce": NONCE + "x"},
        {"body": BODY + b" "},
        {"signature": bytes.fromhex(GOLDEN_SIGNATURE)[:-1] + b"\x00"},
    ],
)
def test_verify_rejects_any_change(change: dict[str, object]):
    args: dict[str, object] = {
        "secret": SECRET,
        "method": "POST",
        "path": "/v1/echo?visit=42",
        "timestamp": TS,
        "nonce": NONCE,
        "body": BODY,
        "signature": bytes.fromhex(GOLDEN_SIGNATURE),
        **change,
    }
    with pytest.raises(ta.SignatureMismatch):
        ta.verify_request_signature(*args.values())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "timestamp", "nonce", "field"),
    [
        ("post", "/x", TS, NONCE, "method"),
        ("POST", "x", TS, NONCE, "path"),
        ("POST", "/x\nX-Injected: 1", TS, NONCE, "path"),
        ("POST", "/a b", TS, NONCE, "path"),
        ("POST", "/x", -1, NONCE, "X-Timestamp"),
        ("POST", "/x", 10**12, NONCE, "X-Timestamp"),
        ("POST", "/x", TS, "short", "X-Nonce"),
        ("POST", "/x", TS, "n" * 65, "X-Nonce"),
        ("POST", "/x", TS, "has space in it 123", "X-Nonce"),
        ("POST", "/x", TS, "line\nbreak-0123456789", "X-Nonce"),
    ],
)
def test_fields_that_could_smuggle_a_line_are_refused(
    method: str, path: str, timestamp: int, nonce: str, field: str
):
    with pytest.raises(ta.MalformedAuthField) as info:
        ta.canonical_request(method, path, timestamp, nonce, b"")
    assert info.value.field == field


@pytest.mark.parametrize("secret", [b"", b"s" * 15, b"s" * 65])
def test_secret_length_is_bounded(secret: bytes):
    with pytest.raises(ValueError, match="terminal secret"):
        ta.sign_request(secret, "POST", "/x", TS, NONCE, b"")


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (ta.parse_timestamp, "12a"),
        (ta.parse_timestamp, "-5"),
        (ta.parse_timestamp, "1" * 13),
        (ta.parse_signature_hex, "ab" * 31),
        (ta.parse_signature_hex, "zz" * 32),
        (ta.check_terminal_id, ""),
        (ta.check_terminal_id, "-leading-dash"),
        (ta.check_terminal_id, "T" * 65),
        (ta.check_terminal_id, "bad id"),
    ],
)
def test_header_parsers_refuse_bad_values(parse: object, text: str):
    with pytest.raises(ta.MalformedAuthField):
        parse(text)  # type: ignore[operator]


def test_header_parsers_accept_good_values():
    assert ta.parse_timestamp("1800000000") == TS
    assert ta.parse_signature_hex(GOLDEN_SIGNATURE.upper()) == bytes.fromhex(GOLDEN_SIGNATURE)
    assert ta.check_terminal_id("H31000000001-01") == "H31000000001-01"


def test_signed_headers_version_1_carry_the_four():
    headers = ta.signed_headers(
        SECRET, "T-1", "POST", "/v1/echo?visit=42", BODY, timestamp=TS, nonce=NONCE, version=1
    )
    assert headers == {
        "X-Terminal-Id": "T-1",
        "X-Timestamp": str(TS),
        "X-Nonce": NONCE,
        "X-Signature": GOLDEN_SIGNATURE,
    }


# --- version 2: the card session, the Idempotency-Key and the terminal id are signed ----------

V2_TERMINAL = "H31000000001-01"
V2_SESSION = "cs2.EXAMPLE-token_value"
V2_KEY = "visit-42"
GOLDEN_CANONICAL_V2 = (
    b"SSC-REQ-v2\nPOST\n/v1/settlements\n1800000000\nAbCdEfGhIjKlMnOp\nH31000000001-01\n"
    b"cs2.EXAMPLE-token_value\nvisit-42\n"
    b"2fc9746c7776c72e02a2ce95a37e2051cafc9f584929f5a4768115fec938ff0d"
)
GOLDEN_SIGNATURE_V2 = "a4b30a625fbc793e9c8301a01311bde833b58060f5b30269be5df396f0068564"


def _v2(**change: object) -> dict[str, object]:
    args: dict[str, object] = {
        "method": "POST",
        "path_with_query": "/v1/settlements",
        "timestamp": TS,
        "nonce": NONCE,
        "body": BODY,
        "terminal_id": V2_TERMINAL,
        "card_session": V2_SESSION,
        "idempotency_key": V2_KEY,
    }
    args.update(change)
    return args


def test_canonical_request_v2_golden_vector():
    assert ta.canonical_request_v2(**_v2()) == GOLDEN_CANONICAL_V2  # type: ignore[arg-type]
    signature = ta.sign_request_v2(SECRET, **_v2())  # type: ignore[arg-type]
    assert signature == GOLDEN_SIGNATURE_V2
    assert signature == _rfc2104_hmac_sm3(SECRET, GOLDEN_CANONICAL_V2).hex()


def test_canonical_request_v2_absent_headers_are_empty_lines():
    canonical = ta.canonical_request_v2(**_v2(card_session=None, idempotency_key=None))  # type: ignore[arg-type]
    assert canonical.split(b"\n")[5:8] == [V2_TERMINAL.encode(), b"", b""]


@pytest.mark.parametrize(
    "change",
    [
        {"card_session": "cs2.ANOTHER-card"},
        {"card_session": None},
        {"idempotency_key": "visit-43"},
        {"idempotency_key": None},
        {"terminal_id": "H31000000001-02"},
        {"body": b'{"message":"hellO"}'},
    ],
)
def test_verify_v2_rejects_a_swapped_session_key_or_terminal(change: dict[str, object]):
    signature = bytes.fromhex(GOLDEN_SIGNATURE_V2)
    ta.verify_request_signature_v2(SECRET, signature=signature, **_v2())  # type: ignore[arg-type]
    with pytest.raises(ta.SignatureMismatch):
        ta.verify_request_signature_v2(SECRET, signature=signature, **_v2(**change))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", " lead", "trail ", "a\nb", "中", "k" * 1025])
def test_signed_header_values_are_bounded(value: str):
    with pytest.raises(ta.MalformedAuthField):
        ta.canonical_request_v2(**_v2(idempotency_key=value))  # type: ignore[arg-type]


def test_signed_headers_are_version_2_and_carry_the_signed_headers():
    headers = ta.signed_headers(
        SECRET,
        V2_TERMINAL,
        "POST",
        "/v1/settlements",
        BODY,
        timestamp=TS,
        nonce=NONCE,
        card_session=V2_SESSION,
        idempotency_key=V2_KEY,
    )
    assert headers == {
        "X-Terminal-Id": V2_TERMINAL,
        "X-Timestamp": str(TS),
        "X-Nonce": NONCE,
        "X-Signature-Version": "2",
        "X-Signature": GOLDEN_SIGNATURE_V2,
        "X-Card-Session": V2_SESSION,
        "Idempotency-Key": V2_KEY,
    }


@given(
    body=st.binary(max_size=512),
    nonce=st.text(alphabet="abcXYZ019_-", min_size=16, max_size=64),
    flip=st.integers(min_value=0, max_value=511 * 8),
)
def test_round_trip_and_any_bit_flip_in_the_body_fails(body: bytes, nonce: str, flip: int):
    signature = bytes.fromhex(ta.sign_request(SECRET, "POST", "/v1/echo", TS, nonce, body))
    ta.verify_request_signature(SECRET, "POST", "/v1/echo", TS, nonce, body, signature)
    if body:
        index = (flip // 8) % len(body)
        tampered = bytearray(body)
        tampered[index] ^= 1 << (flip % 8)
        with pytest.raises(ta.SignatureMismatch):
            ta.verify_request_signature(
                SECRET, "POST", "/v1/echo", TS, nonce, bytes(tampered), signature
            )


# -- DEMO ONLY derivation ------------------------------------------------------------------------


def test_demo_layout():
    assert ta.DEMO_TERMINAL_COUNT == 2400
    assert ta.demo_terminal_id(0) == "H31000000001-01"
    assert ta.demo_terminal_id(799) == "H31000000400-02"
    assert ta.demo_terminal_id(800) == "P31000000001-01"
    assert ta.demo_terminal_id(2399) == "P31000000800-02"
    ids = {ta.demo_terminal_id(n) for n in range(ta.DEMO_TERMINAL_COUNT)}
    assert len(ids) == 2400
    assert all(len(terminal_id) == 15 for terminal_id in ids)


@pytest.mark.parametrize("n", [-1, 2400])
def test_demo_terminal_number_is_bounded(n: int):
    with pytest.raises(ValueError, match="out of range"):
        ta.demo_terminal("seed", n)


def test_demo_secret_is_hmac_sm3_of_the_terminal_id():
    terminal_id, secret = ta.demo_terminal("ssc-demo-2026", 0)
    assert secret == _rfc2104_hmac_sm3(b"ssc-demo-2026", b"terminal-secret:" + terminal_id.encode())
    assert secret.hex() == "74faee3652242041e275f6dcaac9dea6b8be15be6b46e7ea56ae254109341200"
    assert ta.demo_terminal(b"ssc-demo-2026", 0) == (terminal_id, secret)
    assert ta.demo_terminal("other-seed", 0)[1] != secret


def test_demo_seed_must_not_be_empty():
    with pytest.raises(ValueError, match="seed"):
        ta.demo_terminal_secret("", "T-1")
