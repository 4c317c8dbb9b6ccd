"""Terminal request signing (终端请求签名): HMAC-SM3 over one canonical string.

Every call a HIS or POS terminal makes to the gateway (except the operational endpoints) carries
four headers::

    X-Terminal-Id   the terminal's id, 1–64 chars of [A-Za-z0-9._-]
    X-Timestamp     unix seconds, decimal digits
    X-Nonce         16–64 chars of [A-Za-z0-9_-], never reused by that terminal
    X-Signature     64 lowercase hex chars: HMAC-SM3(secret, canonical_request(...))

The canonical string is five lines joined by ``\\n`` (no trailing newline)::

    METHOD                      upper case, e.g. POST
    path_with_query             the request target exactly as sent, e.g. /v1/echo?x=1
    timestamp                   decimal unix seconds
    nonce
    hex(SM3(body))              64 lowercase hex chars; SM3 of b"" for an empty body

Every field is checked against a narrow alphabet that excludes ``\\n``, so no two different
requests share a canonical string.

This module is pure (no I/O, no clock, no randomness): the gateway (verifier) and terminal_sdk
(signer) both import it, and neither imports the other. The caller supplies the timestamp and
the nonce. Verification raises :class:`SignatureMismatch`; it never returns ``False``.

Exceptions::

    TerminalAuthError(ValueError)
     ├── MalformedAuthField     a header value is outside its alphabet or length (.field names it)
     └── SignatureMismatch      the signature does not match the request

>>> sign_request(b"k" * 32, "POST", "/v1/echo", 1700000000, "n" * 16, b"{}")[:16]
'9c5ebc1eebeec190'

The DEMO ONLY section at the end derives the demo world's terminal ids and secrets from a
seed, so any tool can act as demo terminal ``n`` without a file from the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

__all__ = [
    "DEMO_HOSPITAL_COUNT",
    "DEMO_PHARMACY_COUNT",
    "DEMO_TERMINALS_PER_INSTITUTION",
    "DEMO_TERMINAL_COUNT",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TERMINAL_ID",
    "HEADER_TIMESTAMP",
    "NONCE_MAX_CHARS",
    "NONCE_MIN_CHARS",
    "SIGNATURE_HEX_CHARS",
    "TERMINAL_ID_MAX_CHARS",
    "MalformedAuthField",
    "SignatureMismatch",
    "TerminalAuthError",
    "body_digest_hex",
    "canonical_request",
    "check_nonce",
    "check_terminal_id",
    "demo_institution_code",
    "demo_terminal",
    "demo_terminal_id",
    "demo_terminal_secret",
    "hmac_sm3",
    "parse_signature_hex",
    "parse_timestamp",
    "sign_request",
    "signed_headers",
    "verify_request_signature",
]

HEADER_TERMINAL_ID: Final = "X-Terminal-Id"
HEADER_TIMESTAMP: Final = "X-Timestamp"
HEADER_NONCE: Final = "X-Nonce"
HEADER_SIGNATURE: Final = "X-Signature"

TERMINAL_ID_MAX_CHARS: Final = 64
NONCE_MIN_CHARS: Final = 16
NONCE_MAX_CHARS: Final = 64
# SM3 digests are 32 bytes, so an HMAC-SM3 signature is 64 hex chars.
SIGNATURE_HEX_CHARS: Final = 64
# 12 digits reach year 33658: enough, and it bounds int() on attacker input.
TIMESTAMP_MAX_DIGITS: Final = 12
# A secret shorter than SM3's 32-byte output weakens the MAC; longer than a block adds nothing.
SECRET_MIN_BYTES: Final = 16
SECRET_MAX_BYTES: Final = 64

_TERMINAL_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NONCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP_RE: Final = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_METHOD_RE: Final = re.compile(r"[A-Z]{1,16}")
# RFC 3986 request-target characters (already percent-encoded): no space, no control chars.
_PATH_RE: Final = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%\[\]]*")


class TerminalAuthError(ValueError):
    """Base class of every request-signing failure."""


class MalformedAuthField(TerminalAuthError):
    """An auth header value is outside its alphabet or length; ``field`` names the header."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class SignatureMismatch(TerminalAuthError):
    """The signature does not match the request (wrong secret, or the request was altered)."""


def check_terminal_id(terminal_id: str) -> str:
    """Return ``terminal_id`` if it is 1–64 chars of [A-Za-z0-9._-]; raise MalformedAuthField."""
    if _TERMINAL_ID_RE.fullmatch(terminal_id) is None:
        raise MalformedAuthField(HEADER_TERMINAL_ID, "must be 1-64 chars of A-Z a-z 0-9 . _ -")
    return terminal_id


def check_nonce(nonce: str) -> str:
    """Return ``nonce`` if it is 16–64 chars of [A-Za-z0-9_-]; raise MalformedAuthField."""
    if _NONCE_RE.fullmatch(nonce) is None:
        raise MalformedAuthField(
            HEADER_NONCE, f"must be {NONCE_MIN_CHARS}-{NONCE_MAX_CHARS} chars of A-Z a-z 0-9 _ -"
        )
    return nonce


def parse_timestamp(text: str) -> int:
    """Parse X-Timestamp (decimal unix seconds, at most 12 digits)."""
    if _TIMESTAMP_RE.fullmatch(text) is None:
        raise MalformedAuthField(HEADER_TIMESTAMP, "must be unix seconds as decimal digits")
    return int(text)


def parse_signature_hex(text: str) -> bytes:
    """Parse X-Signature (64 hex chars) into its 32 bytes."""
    if _SIGNATURE_RE.fullmatch(text) is None:
        raise MalformedAuthField(HEADER_SIGNATURE, f"must be {SIGNATURE_HEX_CHARS} hex chars")
    return bytes.fromhex(text)


def hmac_sm3(key: bytes, message: bytes) -> bytes:
    """HMAC-SM3 (RFC 2104 over GB/T 32905 SM3): 32 bytes. OpenSSL provides 'sm3' to hashlib."""
    return hmac.new(key, message, "sm3").digest()


def body_digest_hex(body: bytes) -> str:
    """SM3 of the raw body bytes, as 64 lowercase hex chars."""
    return hashlib.new("sm3", body).hexdigest()


def canonical_request(
    method: str, path_with_query: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    """The exact bytes that are MAC'd. Raises MalformedAuthField on a field that could smuggle
    a line break or is out of range, so the five lines always parse back unambiguously."""
    if _METHOD_RE.fullmatch(method) is None:
        raise MalformedAuthField("method", "must be an upper-case HTTP method")
    if _PATH_RE.fullmatch(path_with_query) is None:
        raise MalformedAuthField("path", "must be an absolute, percent-encoded request target")
    if not 0 <= timestamp < 10**TIMESTAMP_MAX_DIGITS:
        raise MalformedAuthField(HEADER_TIMESTAMP, "out of range")
    check_nonce(nonce)
    lines = (method, path_with_query, str(timestamp), nonce, body_digest_hex(body))
    return "\n".join(lines).encode("ascii")


# The positional order below is the canonical string's order, on purpose.
def sign_request(  # noqa: PLR0917
    secret: bytes, method: str, path_with_query: str, timestamp: int, nonce: str, body: bytes
) -> str:
    """X-Signature for a request: hex(HMAC-SM3(secret, canonical_request(...))), 64 chars."""
    _check_secret(secret)
    return hmac_sm3(
        secret, canonical_request(method, path_with_query, timestamp, nonce, body)
    ).hex()


def verify_request_signature(  # noqa: PLR0917
    secret: bytes,
    method: str,
    path_with_query: str,
    timestamp: int,
    nonce: str,
    body: bytes,
    signature: bytes,
) -> None:
    """Return None if ``signature`` (32 raw bytes) is right; raise SignatureMismatch otherwise.

    Compared in constant time, so the time taken reveals nothing about the expected MAC.
    """
    _check_secret(secret)
    expected = hmac_sm3(secret, canonical_request(method, path_with_query, timestamp, nonce, body))
    if not hmac.compare_digest(expected, signature):
        raise SignatureMismatch("request signature does not match")


def signed_headers(
    secret: bytes,
    terminal_id: str,
    method: str,
    path_with_query: str,
    body: bytes,
    *,
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """The four auth headers for one request; the caller chooses timestamp and a fresh nonce."""
    check_terminal_id(terminal_id)
    return {
        HEADER_TERMINAL_ID: terminal_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: sign_request(secret, method, path_with_query, timestamp, nonce, body),
    }


def _check_secret(secret: bytes) -> None:
    if not SECRET_MIN_BYTES <= len(secret) <= SECRET_MAX_BYTES:
        raise ValueError(f"terminal secret must be {SECRET_MIN_BYTES}-{SECRET_MAX_BYTES} bytes")


# ---------------------------------------------------------------------------------------------
# DEMO ONLY. The demo world: 400 hospitals (H…), then 800 pharmacies (P…), two terminals each.
# Secrets derive from a seed that may be public, so anyone who knows the seed can act as any
# demo terminal. The gateway loads this world only into an embedded demo database.
# ---------------------------------------------------------------------------------------------

DEMO_HOSPITAL_COUNT: Final = 400
DEMO_PHARMACY_COUNT: Final = 800
DEMO_TERMINALS_PER_INSTITUTION: Final = 2
DEMO_TERMINAL_COUNT: Final = (DEMO_HOSPITAL_COUNT + DEMO_PHARMACY_COUNT) * (
    DEMO_TERMINALS_PER_INSTITUTION
)
# 310000 is Shanghai's administrative division code; NHSA-style fixed-point codes (定点医药机构编码)
# start with H (hospital) or P (pharmacy) + the division + a sequence number.
_DEMO_REGION: Final = "310000"


def demo_institution_code(index: int) -> str:
    """DEMO ONLY. Institution ``index`` in [0, 1200): H31000000001…H31000000400, then
    P31000000001…P31000000800.

    >>> demo_institution_code(0), demo_institution_code(400)
    ('H31000000001', 'P31000000001')
    """
    if not 0 <= index < DEMO_HOSPITAL_COUNT + DEMO_PHARMACY_COUNT:
        raise ValueError(f"demo institution index out of range: {index}")
    if index < DEMO_HOSPITAL_COUNT:
        return f"H{_DEMO_REGION}{index + 1:05d}"
    return f"P{_DEMO_REGION}{index - DEMO_HOSPITAL_COUNT + 1:05d}"


def demo_terminal_id(n: int) -> str:
    """DEMO ONLY. Terminal ``n`` in [0, 2400) is terminal ``n % 2 + 1`` of institution ``n // 2``.

    >>> demo_terminal_id(0), demo_terminal_id(1), demo_terminal_id(801)
    ('H31000000001-01', 'H31000000001-02', 'P31000000001-02')
    """
    if not 0 <= n < DEMO_TERMINAL_COUNT:
        raise ValueError(f"demo terminal number out of range: {n}")
    institution = demo_institution_code(n // DEMO_TERMINALS_PER_INSTITUTION)
    return f"{institution}-{n % DEMO_TERMINALS_PER_INSTITUTION + 1:02d}"


def demo_terminal_secret(seed: str | bytes, terminal_id: str) -> bytes:
    """DEMO ONLY. HMAC-SM3(seed, b"terminal-secret:" + terminal_id): 32 bytes."""
    seed_bytes = seed.encode("utf-8") if isinstance(seed, str) else seed
    if not seed_bytes:
        raise ValueError("demo seed must not be empty")
    return hmac_sm3(seed_bytes, b"terminal-secret:" + terminal_id.encode("ascii"))


def demo_terminal(seed: str | bytes, n: int) -> tuple[str, bytes]:
    """DEMO ONLY. ``(terminal_id, secret)`` of demo terminal ``n`` in [0, 2400)."""
    terminal_id = demo_terminal_id(n)
    return terminal_id, demo_terminal_secret(seed, terminal_id)
