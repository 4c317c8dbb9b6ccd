"""The front door for people: ``GET /`` is a small page (no longer a 404 that blames "the
terminal") under the same strict CSP as /ops, with its links and no script or inline style;
the start-up line names the URLs, where the ops token is (never the token) and, in the demo
world, the command to try."""

from __future__ import annotations

import html.parser
from pathlib import Path
from typing import Any

import pytest
from gateway_testkit import Client

from gateway.front_door import DOC_FILES, front_page, start_line
from gateway.ops.access import resolve_ops_access
from gateway.ops.routes import CONTENT_SECURITY_POLICY
from gateway.settings import load_settings


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts = 0
        self.styles = 0
        self.inline_styles = 0
        self.stylesheets: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        self.scripts += tag == "script"
        self.styles += tag == "style"
        self.inline_styles += "style" in found or any(k.startswith("on") for k in found)
        if tag == "link" and found.get("rel") == "stylesheet":
            self.stylesheets.append(str(found["href"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(body: str) -> _Page:
    page = _Page()
    page.feed(body)
    return page


async def test_the_front_page(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Frame-Options"] == "DENY"
    page = _parse(await response.text())
    for path in ("/ops", "/openapi.json", "/healthz", "/readyz", "/metrics"):
        assert path in page.links, path
    # CSP-clean: no script at all, no inline style or handler, one local stylesheet.
    assert (page.scripts, page.styles, page.inline_styles) == (0, 0, 0)
    assert page.stylesheets == ["/static/front.css"]
    text = " ".join(" ".join(page.text).split())
    for path, _ in DOC_FILES:
        assert path in text
    # The command to try names this gateway as the browser reached it.
    assert f"ssc-terminal demo --gateway http://{client.host}:{client.port} --reader memory" in text
    css = await client.get("/static/front.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    again = await client.get("/static/front.css", headers={"If-None-Match": css.headers["ETag"]})
    assert again.status == 304
    # Every link of the page answers (the ops page asks for its token itself).
    for link in page.links:
        assert (await client.get(link)).status == 200, link


async def test_other_paths_are_still_not_found(client: Client) -> None:
    response = await client.get("/index.html")
    assert response.status == 404
    assert (await response.json(content_type=None))["code"] == "NOT_FOUND"


def test_the_docs_link_and_the_origin_are_escaped() -> None:
    body = front_page("https://docs.example/ssc?a=1&b=<x>", 'http://evil"><script>').decode()
    page = _parse(body)
    assert page.scripts == 0
    assert "https://docs.example/ssc?a=1&b=<x>" in page.links
    assert "&lt;script&gt;" in body
    plain = front_page("", "http://127.0.0.1:8080").decode()
    assert "the documents of the repository" in plain


@pytest.mark.parametrize(
    ("overrides", "token_in_line", "demo_command"),
    [
        # "on": what `serve` resolves "auto" to for a demo (or empty embedded) database.
        ({"demo_world": "on"}, "ops-token", True),
        ({"demo_world": "on", "ops_token": "t" * 40}, "the ops_token setting", True),
        ({"demo_world": "off"}, "none: set ops_token", False),
        # "auto" not yet decided for a database trusts nothing.
        ({"demo_world": "auto"}, "none: set ops_token", False),
    ],
)
def test_the_start_up_line(
    tmp_path: Path, overrides: dict[str, Any], token_in_line: str, demo_command: bool
) -> None:
    settings = load_settings(
        environ={}, overrides={"data_dir": tmp_path, "host": "0.0.0.0", **overrides}
    )
    access, token = resolve_ops_access(settings)
    line = start_line(settings, 8123, access.source)
    assert "\n" not in line
    assert line.startswith("SSC gateway")
    for url in ("/ops", "/openapi.json", "/healthz", "/readyz", "/metrics"):
        assert f"http://127.0.0.1:8123{url}" in line
    assert token_in_line in line
    assert ("ssc-terminal demo --gateway http://127.0.0.1:8123" in line) is demo_command
    # Where the token is, never the token itself.
    secrets = [token] if token else []
    if (tmp_path / "ops-token").exists():
        secrets.append((tmp_path / "ops-token").read_text().strip())
        assert str(tmp_path / "ops-token") in line
    if settings.ops_token:
        secrets.append(settings.ops_token)
    for secret in secrets:
        assert secret not in line


def test_an_ipv6_host_is_bracketed(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path, "host": "::1"})
    assert "http://[::1]:9/ops" in start_line(settings, 9, "x")
