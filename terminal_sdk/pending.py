"""A keyed operation whose outcome is not known yet (:class:`PendingOperation`).

Its own module, below :mod:`terminal_sdk.client` (which makes one when the answer to a keyed
request is lost) and :mod:`terminal_sdk.problems` (whose ``OutcomeUnknown`` carries it), so
that neither imports the other for it. ``terminal_sdk.client`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PendingOperation"]


@dataclass(frozen=True, slots=True)
class PendingOperation:
    """A keyed operation whose outcome is not known yet: resend it with
    :meth:`GatewayClient.resume` (same body, same Idempotency-Key). Holds no personal data:
    fee lines and dates, never the card session."""

    method: str
    path: str
    body: Mapping[str, Any]
    idempotency_key: str
    needs_card_session: bool
