"""Card session tokens: a short-lived, stateless proof that a card authenticated at a terminal.

Issued by a successful ``POST /v1/card-auth/response``; the settlement routes call
:func:`require_card_session` with the token, the calling terminal and the clock. Stateless, so
any worker or replica verifies it with the shared key (gateway_secrets) and no database read.

Format: ``cs1.`` + base64url (no padding) of ``payload || HMAC-SM3(key, DOMAIN || payload)``::

    offset  size  payload field
    0       1     version (2; version 1 had no route byte)
    1       1     card generation (3 or 2)
    2       8     expiry, unix seconds, big-endian
    10      8     holder id (registry row id, not personal data), big-endian
    18      16    card_sn
    34      1     route of the holder's settlements: 1 local, 2 in-province remote,
                  3 cross-province (version 2 only)
    35      1     n, length of the terminal id (1..64)
    36      n     terminal id, ASCII

The route is read in the authentication's own transaction (settlement.counter.holders
.insured_route), so the settlement routes know which way a visit goes before any transaction
of theirs begins (docs/architecture.md, "How a visit flows"); a version 1 token, issued before
the route was carried, leaves it to be read. The token is signed, not encrypted: the terminal
may read what it was given, and nothing in it is personal data (the route names no place).
It cannot be revoked before it expires (minutes); a card reported lost is refused at its next
authentication, and settlement re-checks the registry itself before money moves.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Final

from gateway.card_auth.checks import card_sn_from_hex
from gateway.errors import ErrorCode, GatewayError
from settlement.crossprov.routing import Route
from sscard.crypto import hmac_sm3

__all__ = ["CardSession", "issue_card_session", "require_card_session"]

TOKEN_PREFIX: Final = "cs1."  # noqa: S105 - a format marker, not a secret
TOKEN_VERSION: Final = 2
SESSION_KEY_LEN: Final = 32
_DOMAIN: Final = b"SSC-CARD-SESSION-v1"
_MAC_LEN: Final = 32
# The fixed part of the payload, per version (version 2 adds the route byte).
_FIXED_LEN: Final = {1: 35, 2: 36}
# Longest token: prefix + base64 of (36 + 64 + 32) bytes. Anything longer is not ours.
MAX_TOKEN_CHARS: Final = len(TOKEN_PREFIX) + 4 * ((_FIXED_LEN[2] + 64 + _MAC_LEN + 2) // 3)
_ROUTE_BYTES: Final = {Route.LOCAL: 1, Route.IN_PROVINCE_REMOTE: 2, Route.CROSS_PROVINCE: 3}
_ROUTES: Final = {value: route for route, value in _ROUTE_BYTES.items()}


@dataclass(frozen=True, slots=True)
class CardSession:
    terminal_id: str
    card_sn: str
    generation: int
    holder_id: int
    expires_at_s: int
    # Which way the holder's settlements go, as read when the card authenticated; None only
    # in a version 1 token (the settlement routes then read it before they transact).
    route: Route | None = Route.LOCAL


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac_sm3(key, _DOMAIN + payload)


def issue_card_session(key: bytes, session: CardSession) -> str:
    terminal = session.terminal_id.encode("ascii")
    assert 1 <= len(terminal) <= 64
    assert session.generation in (2, 3)
    assert session.route is not None
    payload = (
        bytes([TOKEN_VERSION, session.generation])
        + session.expires_at_s.to_bytes(8, "big")
        + session.holder_id.to_bytes(8, "big")
        + card_sn_from_hex(session.card_sn).raw
        + bytes([_ROUTE_BYTES[session.route], len(terminal)])
        + terminal
    )
    raw = payload + _mac(key, payload)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _invalid(detail: str) -> GatewayError:
    return GatewayError(ErrorCode.CARD_SESSION_INVALID, detail)


def require_card_session(key: bytes, token: str, terminal_id: str, now_s: float) -> CardSession:
    """The session the token proves, for this terminal, now; or raise

    CARD_SESSION_INVALID (not a token of ours, or altered), CARD_SESSION_EXPIRED, or
    CARD_SESSION_WRONG_TERMINAL (issued to another terminal: a token must not travel).
    """
    if len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
        raise _invalid("not a card session token")
    body = token.removeprefix(TOKEN_PREFIX)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("card session token is not base64url") from None
    if len(raw) < _FIXED_LEN[1] + 1 + _MAC_LEN:
        raise _invalid("card session token is truncated")
    payload, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
    # MAC first, in constant time: nothing of an unauthenticated payload is interpreted.
    if not hmac.compare_digest(_mac(key, payload), mac):
        raise _invalid("card session token signature does not match")
    version = payload[0]
    fixed = _FIXED_LEN.get(version)
    if fixed is None or len(payload) < fixed or len(payload) != fixed + payload[fixed - 1]:
        raise _invalid("card session token has an unknown layout")
    route: Route | None = None
    if version >= 2:
        route = _ROUTES.get(payload[34])
        if route is None:
            raise _invalid("card session token has an unknown layout")
    session = CardSession(
        terminal_id=payload[fixed:].decode("ascii"),
        card_sn=payload[18:34].hex().upper(),
        generation=payload[1],
        holder_id=int.from_bytes(payload[10:18], "big"),
        expires_at_s=int.from_bytes(payload[2:10], "big"),
        route=route,
    )
    if now_s >= session.expires_at_s:
        raise GatewayError(ErrorCode.CARD_SESSION_EXPIRED, "card session token has expired")
    if not hmac.compare_digest(session.terminal_id.encode(), terminal_id.encode()):
        raise GatewayError(
            ErrorCode.CARD_SESSION_WRONG_TERMINAL,
            "card session token was issued to another terminal",
        )
    return session
