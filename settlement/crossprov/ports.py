"""What the flows through the hub need from outside settlement, passed in.

The gateway's Database runs units of work (:class:`Units`); its per-worker hub context
(client, breaker, the reversal task it can wake) is a :class:`Hub`. Both are protocols, so the
flows take neither a web application nor anything that knows HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from settlement.crossprov.calls import HubClient
from settlement.errors import HubUnavailable

__all__ = ["Hub", "Units", "require_client", "unavailable"]

T = TypeVar("T")


class Units(Protocol):
    """Runs a unit of work ``unit(session) -> T`` in one transaction."""

    async def read(self, unit: Callable[[Session], T]) -> T: ...

    async def write(
        self,
        unit: Callable[[Session], T],
        *,
        durable: bool = True,
        grouped: bool = False,
        concurrent: bool = False,
    ) -> T: ...


class Hub(Protocol):
    """The national hub as one worker sees it."""

    @property
    def client(self) -> HubClient | None:
        """None when no hub is configured: every flow answers HUB_UNAVAILABLE."""

    @property
    def owner(self) -> str:
        """This worker's name on the leases it takes (cancel checks, reversals)."""

    @property
    def lease(self) -> dt.timedelta:
        """How long a lease outlives the longest call."""

    def backoff(self, attempts: int) -> dt.timedelta: ...

    def queue_changed(self) -> None:
        """Something was queued for reversal: send it now rather than at the next poll."""


def require_client(hub: Hub) -> HubClient:
    """The hub's client, if one is configured and its circuit is not open."""
    client = hub.client
    if client is None:
        raise HubUnavailable("no national hub is configured")
    breaker = client.breaker
    if breaker.state.name == "OPEN":
        raise HubUnavailable(
            "the hub circuit is open after repeated connection failures",
            retry_after_s=breaker.retry_after_s(),
        )
    return client


def unavailable(hub: Hub, error: str) -> HubUnavailable:
    """Nothing reached the hub: retry after the breaker's wait."""
    client = hub.client
    assert client is not None
    return HubUnavailable(
        f"nothing reached the hub ({error[:80]})", retry_after_s=client.breaker.retry_after_s()
    )
