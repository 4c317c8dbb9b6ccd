"""Terminal request signing (终端请求签名): HMAC-SM3 over one canonical string.

Every call a HIS or POS terminal makes to the gateway (except the operational endpoints) carries
five headers::

    X-Terminal-Id         the terminal's id, 1–64 chars of [A-Za-z0-9._-]
    X-Timestamp           unix seconds, decimal digits
    X-Nonce               16–64 chars of [A-Za-z0-9_-], never reused by that terminal
    X-Signature-Version   2 (absent: version 1, below)
    X-Signature           64 lowercase hex chars: HMAC-SM3(secret, canonical string)

Version 2, the canonical string, is nine lines joined by ``\\n`` (no trailing newline)::

    SSC-REQ-v2                  the version tag
    METHOD                      upper case, e.g. POST
    path_with_query             the request target exactly as sent, e.g. /v1/echo?x=1
    timestamp                   decimal unix seconds
    nonce
    terminal_id                 X-Terminal-Id
    card_session                X-Card-Session's value, or empty when the request has none
    idempotency_key             Idempotency-Key's value, or empty when the request has none
    hex(SM3(body))              64 lowercase hex chars; SM3 of b"" for an empty body

Everything that changes what a request means is inside: whose card is charged (the card
session), which operation a retry repeats (the key), which terminal asks. A header that is
signed must appear at most once and, when present, hold 1–1024 characters of printable ASCII
with no space at either end (HTTP strips those); an empty one is refused.

Version 1 (no ``X-Signature-Version`` header) is five lines: METHOD, path_with_query,
timestamp, nonce, hex(SM3(body)). It leaves the card session, the key and the terminal id
outside the signature; the gateway refuses it unless its ``terminal_signature_v1_until``
setting keeps a transition window open (docs/card-authentication.md §6).

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
from collections.abc import Mapping
from typing import Final

__all__ = [
    "DEMO_HOSPITAL_COUNT",
    "DEMO_PHARMACY_COUNT",
    "DEMO_TERMINALS_PER_INSTITUTION",
    "DEMO_TERMINAL_COUNT",
    "HEADER_CARD_SESSION",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_SIGNATURE_VERSION",
    "HEADER_TERMINAL_ID",
    "HEADER_TIMESTAMP",
    "NONCE_MAX_CHARS",
    "NONCE_MIN_CHARS",
    "SIGNATURE_HEX_CHARS",
    "SIGNATURE_VERSION",
    "SIGNED_HEADER_MAX_CHARS",
    "TERMINAL_ID_MAX_CHARS",
    "MalformedAuthField",
    "SignatureMismatch",
    "TerminalAuthError",
    "body_digest_hex",
    "canonical_request",
    "canonical_request_v2",
    "check_nonce",
    "check_signed_header",
    "check_terminal_id",
    "demo_institution_code",
    "demo_terminal",
    "demo_terminal_id",
    "demo_terminal_secret",
    "hmac_sm3",
    "parse_signature_hex",
    "parse_timestamp",
    "sign_request",
    "sign_request_v2",
    "signed_headers",
    "verify_request_signature",
    "verify_request_signature_v2",
    "verify_signed_headers",
]

HEADER_TERMINAL_ID: Final = "X-Terminal-Id"
HEADER_TIMESTAMP: Final = "X-Timestamp"
HEADER_NONCE: Final = "X-Nonce"
HEADER_SIGNATURE: Final = "X-Signature"
HEADER_SIGNATURE_VERSION: Final = "X-Signature-Version"
# Signed in version 2 (their values decide whose card is charged and what a retry repeats).
HEADER_CARD_SESSION: Final = "X-Card-Session"
HEADER_IDEMPOTENCY_KEY: Final = "Idempotency-Key"
# The version signers send.
SIGNATURE_VERSION: Final = 2
_V2_TAG: Final = "SSC-REQ-v2"
# A card session token is ~200 chars, an Idempotency-Key at most 255: 1024 bounds both.
SIGNED_HEADER_MAX_CHARS: Final = 1024

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
# Printable ASCII, no space at either end (an HTTP parser strips it, so it cannot be signed).
_SIGNED_HEADER_RE: Final = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,1022}[\x21-\x7e])?")
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


def check_signed_header(name: str, value: str | None) -> str:
    """The canonical line of a signed header: its value, or "" when absent (None).
    MalformedAuthField if a present value is empty or outside its alphabet or length."""
    if value is None:
        return ""
    if _SIGNED_HEADER_RE.fullmatch(value) is None:
        raise MalformedAuthField(
            name, f"must be 1-{SIGNED_HEADER_MAX_CHARS} printable ASCII chars, no outer spaces"
        )
    return value


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


def canonical_request_v2(
    method: str,
    path_with_query: str,
    timestamp: int,
    nonce: str,
    body: bytes,
    *,
    terminal_id: str,
    card_session: str | None,
    idempotency_key: str | None,
) -> bytes:
    """Version 2's exact bytes (module docstring): version 1's fields, plus the version tag,
    the terminal id, the card session and the Idempotency-Key (empty lines when absent)."""
    v1 = canonical_request(method, path_with_query, timestamp, nonce, body).decode("ascii")
    method_line, path_line, timestamp_line, nonce_line, digest_line = v1.split("\n")
    lines = (
        _V2_TAG,
        method_line,
        path_line,
        timestamp_line,
        nonce_line,
        check_terminal_id(terminal_id),
        check_signed_header(HEADER_CARD_SESSION, card_session),
        check_signed_header(HEADER_IDEMPOTENCY_KEY, idempotency_key),
        digest_line,
    )
    return "\n".join(lines).encode("ascii")


def sign_request_v2(  # noqa: PLR0917
    secret: bytes,
    method: str,
    path_with_query: str,
    timestamp: int,
    nonce: str,
    body: bytes,
    *,
    terminal_id: str,
    card_session: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """X-Signature, version 2: hex(HMAC-SM3(secret, canonical_request_v2(...))), 64 chars."""
    _check_secret(secret)
    canonical = canonical_request_v2(
        method,
        path_with_query,
        timestamp,
        nonce,
        body,
        terminal_id=terminal_id,
        card_session=card_session,
        idempotency_key=idempotency_key,
    )
    return hmac_sm3(secret, canonical).hex()


def verify_request_signature_v2(  # noqa: PLR0917
    secret: bytes,
    method: str,
    path_with_query: str,
    timestamp: int,
    nonce: str,
    body: bytes,
    signature: bytes,
    *,
    terminal_id: str,
    card_session: str | None,
    idempotency_key: str | None,
) -> None:
    """Return None if ``signature`` (32 raw bytes) is version 2's right one; raise
    SignatureMismatch otherwise (compared in constant time)."""
    expected = bytes.fromhex(
        sign_request_v2(
            secret,
            method,
            path_with_query,
            timestamp,
            nonce,
            body,
            terminal_id=terminal_id,
            card_session=card_session,
            idempotency_key=idempotency_key,
        )
    )
    if not hmac.compare_digest(expected, signature):
        raise SignatureMismatch("request signature does not match")


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
    card_session: str | None = None,
    idempotency_key: str | None = None,
    version: int = SIGNATURE_VERSION,
) -> dict[str, str]:
    """The auth headers for one request, signed with ``version`` (2 unless a test asks for
    the old form); the caller chooses timestamp and a fresh nonce. ``card_session`` and
    ``idempotency_key``, when given, are signed and returned as their headers too: send the
    request with exactly these headers."""
    check_terminal_id(terminal_id)
    headers = {HEADER_TERMINAL_ID: terminal_id, HEADER_TIMESTAMP: str(timestamp)}
    headers[HEADER_NONCE] = nonce
    if version == SIGNATURE_VERSION:
        headers[HEADER_SIGNATURE_VERSION] = str(SIGNATURE_VERSION)
        headers[HEADER_SIGNATURE] = sign_request_v2(
            secret,
            method,
            path_with_query,
            timestamp,
            nonce,
            body,
            terminal_id=terminal_id,
            card_session=card_session,
            idempotency_key=idempotency_key,
        )
    elif version == 1:
        headers[HEADER_SIGNATURE] = sign_request(
            secret, method, path_with_query, timestamp, nonce, body
        )
    else:
        raise ValueError(f"unknown signature version {version}")
    if card_session is not None:
        headers[HEADER_CARD_SESSION] = card_session
    if idempotency_key is not None:
        headers[HEADER_IDEMPOTENCY_KEY] = idempotency_key
    return headers


def verify_signed_headers(
    secret: bytes, method: str, path_with_query: str, body: bytes, headers: Mapping[str, str]
) -> int:
    """Verify a request by its headers, in whichever version it says it is signed; return the
    version. Raises MalformedAuthField (a header missing or malformed) or SignatureMismatch.
    For simple verifiers (test doubles); the gateway's own also refuses repeated headers."""

    def header(name: str) -> str:
        if name not in headers:
            raise MalformedAuthField(name, "missing")
        return headers[name]

    timestamp = parse_timestamp(header(HEADER_TIMESTAMP))
    nonce = check_nonce(header(HEADER_NONCE))
    signature = parse_signature_hex(header(HEADER_SIGNATURE))
    version = headers.get(HEADER_SIGNATURE_VERSION)
    if version is None:
        verify_request_signature(secret, method, path_with_query, timestamp, nonce, body, signature)
        return 1
    if version != str(SIGNATURE_VERSION):
        raise MalformedAuthField(HEADER_SIGNATURE_VERSION, f"must be {SIGNATURE_VERSION}")
    verify_request_signature_v2(
        secret,
        method,
        path_with_query,
        timestamp,
        nonce,
        body,
        signature,
        terminal_id=check_terminal_id(header(HEADER_TERMINAL_ID)),
        card_session=headers.get(HEADER_CARD_SESSION),
        idempotency_key=headers.get(HEADER_IDEMPOTENCY_KEY),
    )
    return SIGNATURE_VERSION


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
