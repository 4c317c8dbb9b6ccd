"""Typed keys for application and request state (aiohttp AppKey / RequestKey).

One module so that handlers, middleware and the app factory share the keys without importing
each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from gateway.db import Database
from gateway.limits.guards import TerminalLimits
from gateway.sealing import KeyRing
from gateway.settings import Settings
from gateway.terminals import TerminalDirectory

__all__ = [
    "CLOCK",
    "DATABASE",
    "ERROR_CODE",
    "ERROR_REASON",
    "INFLIGHT",
    "KEY_RING",
    "OPENAPI",
    "RATE_LIMITS",
    "REQUEST_ID",
    "SETTINGS",
    "TERMINALS",
    "InflightCount",
]


class InflightCount:
    """Requests being handled by this worker's bounded routes (single event loop: no lock)."""

    def __init__(self, limit: int) -> None:
        assert limit >= 1
        self.limit = limit
        self.count = 0


SETTINGS: Final = web.AppKey("settings", Settings)
# Wall clock, unix seconds. Injected so tests can move time (timestamp skew, nonce expiry).
CLOCK: Final = web.AppKey[Callable[[], float]]("clock")
DATABASE: Final = web.AppKey("database", Database)
TERMINALS: Final = web.AppKey("terminals", TerminalDirectory)
# Per-terminal rate limits, shared by every worker and replica (gateway.limits).
RATE_LIMITS: Final = web.AppKey("rate_limits", TerminalLimits)
INFLIGHT: Final = web.AppKey("inflight", InflightCount)
# This worker's KEK ring (gateway.kek): None when no KEK is configured (nothing can be sealed).
KEY_RING: Final = web.AppKey[KeyRing | None]("key_ring")
# The OpenAPI document, built once from the route table at app creation.
OPENAPI: Final = web.AppKey[dict[str, Any]]("openapi")

REQUEST_ID: Final = web.RequestKey("request_id", str)
# Set on a problem response so that the access log line can carry the error code.
ERROR_CODE: Final = web.ResponseKey("error_code", str)
# ... and the reason behind it, where the answer hides it (GatewayError.reason).
ERROR_REASON: Final = web.ResponseKey("error_reason", str)
