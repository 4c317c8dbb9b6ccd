"""Who may read /metrics: the metrics say how much money moves, which institutions are busy
and how the card checks go, so not anyone who reaches the port.

``metrics_token`` set: every scrape sends ``Authorization: Bearer <token>``; the token is
compared in constant time (SHA-256 of both sides, so not even its length leaks), and a missing
or wrong one is 401 METRICS_UNAUTHORIZED. Unset: only a client connecting from a loopback
address (127.0.0.0/8, ::1, or IPv4-mapped loopback) is answered, anyone else gets 403
METRICS_FORBIDDEN. The peer address is the socket's, never a forwarded header.

A reverse proxy on the gateway's own host (haproxy beside the replicas, docs/scale-out.md)
connects from loopback, so by its address every client of the proxy would be "local". A
request that carries a forwarding header (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``)
was relayed by a proxy for someone else, so without the token it is refused whatever its peer:
Prometheus scrapes each replica's own port and sends none of them. Not "believe the header
from trusted_proxies and judge the client it names", as the shared limits do: with
``trusted_proxies`` unset (the default) the header would be ignored and the world let in, and
a header can only make a request be refused here, never answered. A same-host proxy that adds
no such header is indistinguishable from a local scraper: set ``metrics_token`` (the
documented production setting) or have the proxy forward the client (``option forwardfor``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Final

from aiohttp import web

from gateway.errors import ErrorCode, GatewayError
from gateway.settings import Settings

__all__ = ["FORWARDING_HEADERS", "check_metrics_access"]

# Headers a reverse proxy adds for the client it relays (haproxy ``option forwardfor``, nginx
# ``proxy_set_header``, RFC 7239). Matched case-insensitively (aiohttp's headers).
FORWARDING_HEADERS: Final = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


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
    if any(name in request.headers for name in FORWARDING_HEADERS):
        raise GatewayError(
            ErrorCode.METRICS_FORBIDDEN,
            "no metrics_token is set and this request was relayed by a proxy: /metrics "
            "answers loopback clients only, scraping the gateway's own port",
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
