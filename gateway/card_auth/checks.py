"""The card-authentication checks, as pure functions of their inputs (DESIGN §4, §5).

No I/O here: the clock arrives as numbers or datetimes, the challenge and registry rows as
records the caller read, the trust anchors and the certificate cache as objects. Each check
returns the value the next one needs, or raises GatewayError with a stable code. The service
(gateway.card_auth.service) calls them in the order DESIGN §4 fixes:

1. :func:`check_challenge`      exists, unexpired, unused, this terminal's and this card's
2. :func:`verify_certificate`   chain to the pinned root (cached by SM3), subject card_sn
3. :func:`check_signature` / :func:`check_cryptogram`   the card's own proof
4. :func:`check_card_status`    the registry: lost, superseded, expired …, and generation

The proof comes before the registry so that a refusal tells a caller without the card
nothing about the registry (whether a card_sn is lost, superseded or unknown).
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac

from gateway.card_auth.keys import KeyManager, cryptogram_matches
from gateway.card_auth.tables import ChallengeRecord, ConsumedChallenge
from gateway.card_auth.trust import TrustAnchors, VerifiedCertificateCache
from gateway.errors import ERRORS, ErrorCode, GatewayError
from issuance.errors import CardNotUsable
from issuance.registry import CardRecord, card_usability
from sscard.certs import Certificate, CertificateError, VerifiedCertificate, load_der
from sscard.crypto import SignatureInvalid, sm2_verify
from sscard.layout import CardSn, card_auth_message

__all__ = [
    "card_sn_from_hex",
    "check_card_status",
    "check_challenge",
    "check_cryptogram",
    "check_signature",
    "parse_certificate",
    "verify_certificate",
]

# Card expiry dates are calendar dates in Shanghai (UTC+8, no daylight saving time).


@functools.lru_cache(maxsize=8192)
def card_sn_from_hex(text: str) -> CardSn:
    """:meth:`CardSn.from_hex`, remembered: one authentication parsed the same card_sn four
    times (request schema, challenge, signature message, session token), ~10 µs each. CardSn is
    immutable; a text that does not parse raises and is not remembered."""
    return CardSn.from_hex(text)


def check_challenge(
    found: ConsumedChallenge, *, terminal_id: str, card_sn: str, generation: int, now_ms: int
) -> ChallengeRecord:
    """Judge an attempt to use a challenge (already marked used by the store, see
    :func:`gateway.card_auth.tables.consume_challenge`)."""
    record = found.record
    if record is None:
        raise GatewayError(ErrorCode.CHALLENGE_UNKNOWN, "no challenge has this challenge_id")
    if now_ms >= record.expires_at_ms:
        raise GatewayError(ErrorCode.CHALLENGE_EXPIRED, "the challenge has expired")
    if not found.consumed:
        raise GatewayError(ErrorCode.CHALLENGE_REUSED, "the challenge was already used")
    # Compared in constant time for good measure; neither value is secret, though.
    if not hmac.compare_digest(record.terminal_id.encode(), terminal_id.encode()):
        raise GatewayError(
            ErrorCode.CHALLENGE_MISMATCH, "the challenge was issued to another terminal"
        )
    if record.card_sn != card_sn:
        raise GatewayError(
            ErrorCode.CHALLENGE_MISMATCH, "the challenge was issued for another card"
        )
    if record.generation != generation:
        raise GatewayError(
            ErrorCode.CHALLENGE_MISMATCH,
            f"the challenge was issued for a generation {record.generation} card, "
            f"the answer is a generation {generation} card's",
        )
    return record


def _certificate_error(exc: CertificateError) -> GatewayError:
    # Every sscard.certs code is registered; a future subclass with a new code still maps to
    # a 401 rather than a 500. The message carries a depth, never a subject (personal data).
    code = exc.code if exc.code in ERRORS else ErrorCode.CERT_INVALID
    return GatewayError(ErrorCode(code), str(exc))


def parse_certificate(der: bytes) -> Certificate:
    try:
        return load_der(der)
    except CertificateError as exc:
        raise _certificate_error(exc) from None


def verify_certificate(
    leaf: Certificate,
    *,
    card_sn: str,
    trust: TrustAnchors,
    cache: VerifiedCertificateCache,
    at: dt.datetime,
) -> VerifiedCertificate:
    """The verified chain of ``leaf`` at ``at`` (from the cache when it holds it), whose
    subject card_sn must be ``card_sn``. Does not add to the cache: the caller adds only
    certificates of cards that went on to authenticate."""
    verified = cache.get(leaf.fingerprint, at)
    if verified is None:
        try:
            verified = trust.verify(leaf, at)
        except CertificateError as exc:
            raise _certificate_error(exc) from None
    if (verified.card_sn or "").upper() != card_sn:
        raise GatewayError(
            ErrorCode.CERT_CARD_MISMATCH, "the certificate's card_sn is not the card's card_sn"
        )
    return verified


def check_card_status(
    record: CardRecord | None,
    *,
    card_sn: str,
    generation: int,
    certificate_sm3: str | None,
    today: dt.date,
    legacy_accepted_until: dt.date | None,
) -> CardRecord:
    """The registry's verdict (issuance.registry.card_usability), then two consistency checks:
    the card's generation, and the certificate the registry recorded for the card."""
    try:
        usable = card_usability(
            record, card_sn=card_sn, today=today, legacy_accepted_until=legacy_accepted_until
        )
    except CardNotUsable as exc:
        # issuance's messages are written for the clerk and carry no personal data.
        raise GatewayError(ErrorCode(exc.code), exc.message) from None
    if usable.generation != generation:
        raise GatewayError(
            ErrorCode.CARD_GENERATION_MISMATCH,
            f"the registry holds a generation {usable.generation} card under this card_sn",
        )
    if (
        certificate_sm3 is not None
        and usable.cert_sm3 is not None
        and usable.cert_sm3.lower() != certificate_sm3
    ):
        raise GatewayError(
            ErrorCode.CERT_NOT_CURRENT,
            "the certificate is not the one the registry holds for this card",
        )
    return usable


def check_signature(
    verified: VerifiedCertificate,
    *,
    challenge: bytes,
    card_sn: str,
    terminal_id: str,
    signature: bytes,
) -> None:
    message = card_auth_message(challenge, card_sn_from_hex(card_sn), terminal_id)
    try:
        sm2_verify(verified.public_key, message, signature)
    except SignatureInvalid:
        raise GatewayError(
            ErrorCode.CARD_SIGNATURE_INVALID,
            "the card's SM2 signature does not verify over the challenge",
        ) from None


def check_cryptogram(
    keys: KeyManager, *, challenge: bytes, card_sn: str, cryptogram: bytes
) -> None:
    if not cryptogram_matches(keys, card_sn_from_hex(card_sn), challenge, cryptogram):
        raise GatewayError(
            ErrorCode.CRYPTOGRAM_INVALID, "the card's cryptogram does not match the challenge"
        )
