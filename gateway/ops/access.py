"""Who may read the ops figures: the holder of the ops token (a bearer credential).

A browser cannot HMAC-SM3-sign requests the way terminals do, so the dashboard's JSON routes
take ``Authorization: Bearer <ops token>`` instead. The token comes from the ``ops_token``
setting (production: from the config file or ``GATEWAY_OPS_TOKEN``). In the demo world, with
no token configured, a random one is made once and kept in ``{data_dir}/ops-token`` (mode
0600), shared by every worker and kept across restarts, and printed at start-up. Anywhere else
with no token configured, every ops request is refused: an operator must choose one.

The comparison is in constant time over SHA-256 digests, so it takes the same time whatever
the presented token's length or content. The page keeps the token in the tab's
sessionStorage and sends it in a header, never in a URL (nothing lands in access logs or
browser history), and a header is not sent by a cross-site form: no CSRF.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.errors import ErrorCode, GatewayError
from gateway.logs import fields
from gateway.settings import Settings
from gateway.state import SETTINGS

__all__ = ["OPS_ACCESS", "OPS_TOKEN_FILE", "OpsAccess", "ops_context", "resolve_ops_access"]

log = logging.getLogger("gateway.ops")

OPS_TOKEN_FILE: Final = "ops-token"  # noqa: S105 (a file name, not a secret)
_BEARER: Final = "bearer "


@dataclass(frozen=True, slots=True)
class OpsAccess:
    """The accepted token's SHA-256, or None when no token is configured (all refused)."""

    token_sha256: bytes | None
    source: str

    def check(self, authorization: str | None) -> None:
        """Pass, or raise GatewayError(OPS_UNAUTHORIZED)."""
        if self.token_sha256 is None:
            raise GatewayError(
                ErrorCode.OPS_UNAUTHORIZED, "no ops_token is configured on this gateway"
            )
        if not authorization or not authorization[: len(_BEARER)].lower() == _BEARER:
            raise GatewayError(ErrorCode.OPS_UNAUTHORIZED, "send Authorization: Bearer <ops token>")
        presented = authorization[len(_BEARER) :].strip().encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(hashlib.sha256(presented).digest(), self.token_sha256):
            raise GatewayError(ErrorCode.OPS_UNAUTHORIZED, "the ops token is wrong")


OPS_ACCESS: Final = web.AppKey("ops_access", OpsAccess)


def resolve_ops_access(settings: Settings) -> tuple[OpsAccess, str | None]:
    """The access rule, and the token itself when this call created the demo token (so that
    the caller prints it once). Reads or creates a file: call it off the event loop."""
    if settings.ops_token:
        digest = hashlib.sha256(settings.ops_token.encode()).digest()
        return OpsAccess(digest, "the ops_token setting"), None
    if not settings.should_load_demo_world():
        return OpsAccess(None, "none: set ops_token"), None
    path = settings.data_dir / OPS_TOKEN_FILE
    token, created = _demo_token(path)
    digest = hashlib.sha256(token.encode()).digest()
    return OpsAccess(digest, f"DEMO ONLY: the file {path}"), token if created else None


def _demo_token(path: Path) -> tuple[str, bool]:
    """The token in ``path``, made first if missing. Several workers start at once: each
    writes its candidate to a private file and hard-links it into place; link() fails if the
    name exists, so exactly one candidate wins and nobody ever reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = False
    if not path.exists():
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(candidate, path)
                created = True
        finally:
            candidate.unlink(missing_ok=True)
    token = path.read_text(encoding="ascii").strip()
    assert len(token) >= 32, f"{path} holds no usable ops token"
    return token, created


async def ops_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: resolve the ops credential once per worker and say where it comes from."""
    access, created_token = await asyncio.to_thread(resolve_ops_access, app[SETTINGS])
    app[OPS_ACCESS] = access
    if created_token is not None:
        # DEMO ONLY, and only the worker that made it: the operator needs it to sign in.
        log.warning(
            "ops dashboard token created (DEMO ONLY)",
            extra=fields(path="/ops", ops_token=created_token, token_source=access.source),
        )
    else:
        log.info("ops dashboard", extra=fields(path="/ops", token_source=access.source))
    yield
