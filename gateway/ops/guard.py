"""The brute-force guard on the ops token: a client address that sent a few wrong tokens is
answered 429 OPS_TOO_MANY_WRONG_TOKENS for a while, without its token even being compared.

Each address has an allowance of :data:`WRONG_TOKENS_ALLOWED` wrong tokens; each wrong token
spends one, and one comes back every :data:`REFILL_S` seconds (a token bucket that only wrong
tokens draw from, so an operator who signs in right is never slowed). Only a token that was
presented and compared counts: a request with no ``Authorization`` header guesses nothing.
The right token from another address is unaffected.

This class counts in one worker's memory. The gateway counts in the store every worker and
replica shares (gateway.limits.guards.WrongTokenGuard, with the allowance and refill from the
settings) and falls back to this per-worker count only while that store fails. The addresses
kept are bounded (LRU, :data:`MAX_CLIENTS`): a forgotten address starts with a full allowance
again, which only ever errs towards letting a request be compared.

The key (:func:`client_key`) is the client's address, an IPv6 address reduced to its /64 (one
host usually holds the whole /64, so it must not get 2**64 allowances): the connection's peer,
or behind a proxy listed in ``trusted_proxies`` the client it names in X-Forwarded-For
(gateway.limits.proxies), so one brute-forcer does not lock out everyone behind the proxy.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Final

__all__ = [
    "MAX_CLIENTS",
    "REFILL_S",
    "WRONG_TOKENS_ALLOWED",
    "WrongTokenGuard",
    "client_key",
]

# Module constants rather than settings (gateway.settings belongs to another change): a
# person mistyping gets 5 tries; after that one try a minute.
WRONG_TOKENS_ALLOWED: Final = 5
REFILL_S: Final = 60.0
MAX_CLIENTS: Final = 10_000
_IPV6_PREFIX: Final = 64


def client_key(remote: str | None) -> str:
    """The guard's key for a peer address: the address itself, an IPv6 one as its /64."""
    if not remote:
        return "unknown"  # not a TCP peer (a unix socket): all such callers share one key
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, _IPV6_PREFIX), strict=False))
    return str(address)


class WrongTokenGuard:
    def __init__(
        self,
        *,
        allowed: int = WRONG_TOKENS_ALLOWED,
        refill_s: float = REFILL_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        assert allowed >= 1
        assert refill_s > 0
        assert max_clients >= 1
        self._allowed = float(allowed)
        self._refill_s = refill_s
        self._max_clients = max_clients
        # key -> (wrong tokens still allowed, time of last refill in seconds)
        self._clients: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait_s(self, key: str, now_s: float) -> float | None:
        """None if ``key`` may present a token now, else seconds until it may."""
        left = self._left(key, now_s)
        if left >= 1.0:
            return None
        return (1.0 - left) * self._refill_s

    def wrong(self, key: str, now_s: float) -> bool:
        """Record a wrong token from ``key``. True when that used up its allowance (the
        moment worth one log line: later refusals are in the access log by their code)."""
        left = max(0.0, self._left(key, now_s) - 1.0)
        self._clients[key] = (left, now_s)
        self._clients.move_to_end(key)
        while len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)
        return left < 1.0

    def _left(self, key: str, now_s: float) -> float:
        entry = self._clients.get(key)
        if entry is None:
            return self._allowed
        left, last_s = entry
        return min(self._allowed, left + max(0.0, now_s - last_s) / self._refill_s)
