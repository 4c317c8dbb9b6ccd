"""The front door for people: the page at ``GET /`` and the line printed at start-up.

A person who opens the gateway in a browser gets a small static page (what this is, links to
/ops, /openapi.json, /healthz, /readyz, /metrics and the documentation) under the same strict
Content-Security-Policy as /ops: no script at all, one local stylesheet. Two values are filled
in per request, HTML-escaped: the documentation link (setting ``docs_url``; empty: the page
names the repository's files) and this gateway's own origin in the ``ssc-terminal demo``
command.

A person who starts it gets one plain line on stderr, beside the JSON log lines (which stay as
they are): the URLs, where the ops token is (a file path or a setting's name, never the token
itself), and in the demo world the ``ssc-terminal demo`` command to try. The first worker prints
it once it listens (gateway.serve), so the URLs answer when the line appears.
"""

from __future__ import annotations

import hashlib
import html
from functools import lru_cache
from importlib import resources
from typing import Final

from aiohttp import web

from gateway.ops.routes import CONTENT_SECURITY_POLICY
from gateway.routing import Call, Route
from gateway.settings import Settings
from gateway.state import SETTINGS

__all__ = ["DOC_FILES", "FRONT_DOOR_ROUTES", "front_page", "start_line"]

_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
# The repository's documents for people, in reading order.
DOC_FILES: Final = (
    ("README.md", "what this is, how to run and test it"),
    ("docs/integration-guide.md", "for HIS and POS integrators: terminal_sdk, signing, visits"),
    ("docs/operations.md", "for the people on call: alerts and their runbooks"),
    ("docs/cross-province.md", "cross-province settlement through the national hub"),
    ("docs/CONTRACTS.md", "the /v1 contract, route by route"),
)
_DOCS_MARK: Final = "<!--DOCS-->"
_ORIGIN_MARK: Final = '<span id="origin">http://127.0.0.1:8080</span>'


def _static(name: str) -> str:
    return resources.files("gateway").joinpath("static", name).read_text(encoding="utf-8")


_PAGE: Final = _static("front.html")
_CSS: Final = _static("front.css").encode()
_CSS_ETAG: Final = '"' + hashlib.sha256(_CSS).hexdigest()[:32] + '"'
assert _DOCS_MARK in _PAGE
assert _ORIGIN_MARK in _PAGE


def _docs_html(docs_url: str) -> str:
    items = "\n".join(
        f'    <li><code>{html.escape(path)}</code> <span class="muted">{html.escape(what)}'
        "</span></li>"
        for path, what in DOC_FILES
    )
    if docs_url:
        where = f'<a href="{html.escape(docs_url)}">the documentation</a> ({html.escape(docs_url)})'
    else:
        where = "the documents of the repository this gateway was installed from"
    return f"<p>Read {where}:</p>\n  <ul>\n{items}\n  </ul>"


# Keyed by the docs_url setting: one entry in a serving process; bounded for processes that
# build many apps (tests), which rebuild an evicted page (a string replace).
_PAGES_MAX: Final = 8


@lru_cache(maxsize=_PAGES_MAX)
def _page_with_docs(docs_url: str) -> str:
    return _PAGE.replace(_DOCS_MARK, _docs_html(docs_url))


def front_page(docs_url: str, origin: str) -> bytes:
    """The page, for a gateway whose docs are at ``docs_url`` and that is reached at
    ``origin`` (scheme://host[:port], as the browser asked for it: escaped)."""
    return (
        _page_with_docs(docs_url)
        .replace(_ORIGIN_MARK, f'<span id="origin">{html.escape(origin)}</span>')
        .encode()
    )


async def _front(call: Call[None]) -> web.Response:
    request = call.request
    body = front_page(call.app[SETTINGS].docs_url, f"{request.scheme}://{request.host}")
    return web.Response(body=body, headers={**_HEADERS, "Content-Type": "text/html; charset=utf-8"})


async def _front_css(call: Call[None]) -> web.Response:
    if _CSS_ETAG in call.request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={**_HEADERS, "ETag": _CSS_ETAG})
    return web.Response(
        body=_CSS, headers={**_HEADERS, "ETag": _CSS_ETAG, "Content-Type": "text/css"}
    )


FRONT_DOOR_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "GET",
        "/",
        operation_id="front_page",
        summary="A page for people who open the gateway in a browser: what it is, and links.",
        handler=_front,
        response_media_type="text/html",
        response_schema={"type": "string"},
        tags=("operations",),
        signed=False,
        bounded=False,
    ),
    Route(
        "GET",
        "/static/front.css",
        operation_id="front_page_css",
        summary="The front page's stylesheet.",
        handler=_front_css,
        response_media_type="text/css",
        response_schema={"type": "string"},
        tags=("operations",),
        signed=False,
        bounded=False,
    ),
)


def start_line(settings: Settings, port: int, token_source: str) -> str:
    """The one human line printed at start-up. ``token_source`` says where the ops token
    comes from (gateway.ops.access: a setting or a file path; never the token itself)."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (naming the wildcard, not binding it)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{port}"
    demo = settings.should_load_demo_world()
    parts = [
        f"SSC gateway{' (DEMO world)' if demo else ''} ready at {base}/",
        f"ops dashboard {base}/ops (ops token: {token_source})",
        f"API {base}/openapi.json",
        f"health {base}/healthz {base}/readyz",
        f"metrics {base}/metrics",
    ]
    if demo:
        parts.append(f"try: ssc-terminal demo --gateway {base} --reader memory")
    return " | ".join(parts)
