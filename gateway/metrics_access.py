"""Who may read /metrics: the metrics say how much money moves, which institutions are busy
and how the card checks go, so not anyone who reaches the port.

``metrics_token`` set: every scrape sends ``Authorization: Bearer <token>``; the token is
compared in constant time (SHA-256 of both sides, so not even its length leaks), and a missing
or wrong one is 401 METRICS_UNAUTHORIZED. Unset: only a client connecting from a loopback
address (127.0.0.0/8, ::1, or IPv4-mapped loopback) is answered, anyone else gets 403
METRICS_FORBIDDEN. The peer address is the socket's, never a forwarded header.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from aiohttp import web

from gateway.errors import ErrorCode, GatewayError
from gateway.settings import Settings

__all__ = ["check_metrics_access"]


def check_metrics_access(request: web.Request, settings: Settings) -> None:
    """Return if this request may read /metrics; raise GatewayError otherwise."""
    if settings.metrics_token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = hashlib.sha256(settings.metrics_token.encode()).digest()
        offered = hashlib.sha256(given.strip().encode()).digest()
        # Both compared whatever the scheme says, so a wrong scheme costs the same time.
        if not (hmac.compare_digest(expected, offered) and scheme.lower() == "bearer"):
            raise GatewayError(
                ErrorCode.METRICS_UNAUTHORIZED, "send the metrics_token as a bearer token"
            )
        return
    if not _is_loopback(request.remote):
        raise GatewayError(
            ErrorCode.METRICS_FORBIDDEN,
            "no metrics_token is set: /metrics answers loopback clients only",
        )


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
