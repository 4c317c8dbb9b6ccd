"""Who may read the ops figures: the holder of the ops token (a bearer credential).

A browser cannot HMAC-SM3-sign requests the way terminals do, so the dashboard's JSON routes
take ``Authorization: Bearer <ops token>`` instead. The token comes from the ``ops_token``
setting (production: from the config file or ``GATEWAY_OPS_TOKEN``). In the demo world, with
no token configured, a random one is made once and kept in ``{data_dir}/ops-token`` (mode
0600), shared by every worker and kept across restarts; the start-up log names the file, never
the token. Anywhere else with no token configured, every ops request is refused: an operator
must choose one.

The comparison is in constant time over SHA-256 digests, so it takes the same time whatever
the presented token's length or content. The page keeps the token in the tab's
sessionStorage and sends it in a header, never in a URL (nothing lands in access logs or
browser history), and a header is not sent by a cross-site form: no CSRF.

:func:`authorize` is what the routes call: the check behind the brute-force guard of
:mod:`gateway.ops.guard` (a few wrong tokens from one address, then 429 for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.errors import ErrorCode, GatewayError
from gateway.limits.guards import OPS_WRONG_TOKENS
from gateway.limits.proxies import TrustedProxies
from gateway.logs import fields
from gateway.ops.guard import client_key
from gateway.settings import Settings
from gateway.state import CLOCK, REQUEST_ID, SETTINGS

__all__ = [
    "OPS_ACCESS",
    "OPS_PROXIES",
    "OPS_TOKEN_FILE",
    "OpsAccess",
    "authorize",
    "client_of",
    "ops_context",
    "resolve_ops_access",
]

log = logging.getLogger("gateway.ops")

OPS_TOKEN_FILE: Final = "ops-token"  # noqa: S105 (a file name, not a secret)
_BEARER: Final = "bearer "


@dataclass(frozen=True, slots=True)
class OpsAccess:
    """The accepted token's SHA-256, or None when no token is configured (all refused)."""

    token_sha256: bytes | None
    source: str

    def presented(self, authorization: str | None) -> bytes:
        """The bearer token sent, or raise GatewayError(OPS_UNAUTHORIZED) when no token is
        configured or none was sent (neither is a guess: the guard does not count them)."""
        if self.token_sha256 is None:
            raise GatewayError(
                ErrorCode.OPS_UNAUTHORIZED, "no ops_token is configured on this gateway"
            )
        if not authorization or not authorization[: len(_BEARER)].lower() == _BEARER:
            raise GatewayError(ErrorCode.OPS_UNAUTHORIZED, "send Authorization: Bearer <ops token>")
        return authorization[len(_BEARER) :].strip().encode("utf-8", "surrogateescape")

    def matches(self, presented: bytes) -> bool:
        """Constant time whatever ``presented`` is: both sides are 32-byte digests."""
        return self.token_sha256 is not None and hmac.compare_digest(
            hashlib.sha256(presented).digest(), self.token_sha256
        )

    def check(self, authorization: str | None) -> None:
        """Pass, or raise GatewayError(OPS_UNAUTHORIZED). No guard: routes call authorize()."""
        if not self.matches(self.presented(authorization)):
            raise _wrong_token()


def _wrong_token() -> GatewayError:
    return GatewayError(ErrorCode.OPS_UNAUTHORIZED, "the ops token is wrong")


OPS_ACCESS: Final = web.AppKey("ops_access", OpsAccess)
# Whose X-Forwarded-For names the client (the trusted_proxies setting).
OPS_PROXIES: Final = web.AppKey("ops_proxies", TrustedProxies)


def client_of(request: web.Request) -> str:
    """The guard's key for the client: the peer, or the address a trusted proxy forwarded."""
    proxies = request.app[OPS_PROXIES]
    return client_key(proxies.client(request.remote, request.headers.getall("X-Forwarded-For", [])))


async def authorize(request: web.Request) -> None:
    """Pass, or raise GatewayError: OPS_UNAUTHORIZED (401), or OPS_TOO_MANY_WRONG_TOKENS
    (429, Retry-After) for an address that sent too many wrong tokens lately (counted by every
    worker and replica together, gateway.limits), whose token is then not compared at all."""
    app = request.app
    access = app[OPS_ACCESS]
    presented = access.presented(request.headers.get("Authorization"))
    guard = app[OPS_WRONG_TOKENS]
    key = client_of(request)
    now_s = app[CLOCK]()
    wait_s = await guard.wait_s(key, now_s)
    if wait_s is not None:
        raise GatewayError(
            ErrorCode.OPS_TOO_MANY_WRONG_TOKENS,
            "too many wrong ops tokens from this address; not checked",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )
    if access.matches(presented):
        return
    if await guard.wrong(key, now_s):
        # Once per lock-out (at most one line per address and refill interval), so a brute
        # force cannot flood the log; each refused request is in the access log by its code.
        # The peer address is what an operator blocks at the firewall; never the token.
        log.warning(
            "ops token guard: too many wrong tokens; refusing this address for a while",
            extra=fields(
                request_id=request[REQUEST_ID],
                path=request.path,
                client=key,
                wrong_tokens_allowed=guard.allowed,
            ),
        )
    raise _wrong_token()


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
    app[OPS_PROXIES] = TrustedProxies.from_setting(app[SETTINGS].trusted_proxies)
    if created_token is not None:
        # DEMO ONLY, and only the worker that made it. The file's path, never the token: a
        # log is read by more people, and kept longer, than the data directory.
        log.warning(
            "ops dashboard token created (DEMO ONLY): read it from its file",
            extra=fields(path="/ops", token_source=access.source),
        )
    else:
        log.info("ops dashboard", extra=fields(path="/ops", token_source=access.source))
    yield
