"""Which address a request comes from, when reverse proxies stand in front of the gateway.

``trusted_proxies`` (a setting: comma-separated CIDRs, e.g. ``10.0.0.0/8, ::1/128``) names the
proxies whose ``X-Forwarded-For`` is believed. A request whose TCP peer is not one of them is
from its peer, whatever headers it sends (anyone can write ``X-Forwarded-For``). A request from
a trusted proxy is from the rightmost address of ``X-Forwarded-For`` that is not itself a
trusted proxy: each proxy appends the peer it saw, so the entries to the right are written by
proxies we trust and the ones to the left by whoever the client is (never believed). A
malformed entry stops the walk at the last trusted hop; a request through trusted proxies only
is from the leftmost of them.

Used by the guards keyed by address (the ops token's wrong-token lock-out); terminals are keyed
by their terminal id, which no proxy changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_FORWARDED_HOPS", "TrustedProxies", "parse_trusted_proxies"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Entries of X-Forwarded-For looked at, from the right: a deployment has a proxy or two; a
# longer chain is a client padding the header.
MAX_FORWARDED_HOPS: Final = 16
MAX_TRUSTED_NETWORKS: Final = 64


def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """The CIDRs of ``trusted_proxies``; raises ValueError naming the entry that is not one."""
    networks: list[IPNetwork] = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"trusted_proxies: {entry!r} is not a CIDR such as 10.0.0.0/8 or ::1/128 ({exc})"
            ) from None
    if len(networks) > MAX_TRUSTED_NETWORKS:
        raise ValueError(f"trusted_proxies: more than {MAX_TRUSTED_NETWORKS} networks")
    return tuple(networks)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_setting(cls, text: str) -> TrustedProxies:
        return cls(parse_trusted_proxies(text))

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client's address as text (``peer`` when it is not a trusted proxy)."""
        if not self.networks or not peer:
            return peer
        current = _address(peer)
        if current is None or not self.trusts(current):
            return peer
        hops = [hop for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
            address = _address(hop)
            if address is None:
                break  # not written by a proxy we trust: stop at the last trusted hop
            current = address
            if not self.trusts(address):
                break
        return str(current)
