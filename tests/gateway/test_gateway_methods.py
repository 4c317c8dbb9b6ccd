"""HEAD and OPTIONS on every route, and 405 with the path's own Allow (RFC 9110 §9.3.2,
§9.3.7, §15.5.6): HEAD answers like GET without a body, OPTIONS lists exactly the path's
methods, and a wrong method is refused with that same list.

Each check walks every path against one app and reports every path that fails, rather than
one test (one app, one database) per path: the answers are the router's, the same for every
path's app, and 280 apps cost two minutes of the suite."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from gateway_testkit import Client, Signer, assert_problem

from gateway.routes import ROUTES
from gateway.routing import allowed_methods

PATHS: dict[str, set[str]] = {}
for _route in ROUTES:
    PATHS.setdefault(_route.path, set()).add(_route.method)
UNSIGNED_GETS = sorted(r.path for r in ROUTES if r.method == "GET" and not r.signed)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_allow_lists_head_with_get_and_options_always() -> None:
    assert allowed_methods({"GET"}) == "GET, HEAD, OPTIONS"
    assert allowed_methods({"POST"}) == "OPTIONS, POST"
    assert allowed_methods({"GET", "POST"}) == "GET, HEAD, OPTIONS, POST"


async def _failures(
    paths: Iterable[str], check: Callable[[str], Awaitable[None]]
) -> dict[str, str]:
    """``check`` on each path; the paths whose check failed, with why."""
    failed = {}
    for path in paths:
        try:
            await check(path)
        except AssertionError as error:
            failed[path] = str(error) or repr(error)
    return failed


async def test_head_answers_like_get_without_a_body(client: Client) -> None:
    async def check(path: str) -> None:
        get = await client.get(path)
        head = await client.head(path)
        assert head.status == get.status, (head.status, get.status)
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        assert await head.read() == b""
        if path != "/metrics":  # the metrics text changes between the two requests
            assert head.headers.get("Content-Length") == get.headers.get("Content-Length")

    assert UNSIGNED_GETS
    assert await _failures(UNSIGNED_GETS, check) == {}


async def test_head_on_a_signed_route_goes_through_the_signature(
    client: Client, signer: Signer
) -> None:
    unsigned = await client.head("/v1/crossprov/clearing")
    assert unsigned.status == 401
    assert await unsigned.read() == b""
    path = "/v1/issuance/stats"
    signed = await client.head(path, headers=signer.headers("HEAD", path, b""))
    get = await client.get(path, headers=signer.headers("GET", path, b""))
    # Past the signature (HEAD was signed as HEAD), to the same answer as GET.
    assert signed.status == get.status
    assert signed.status != 401
    assert await signed.read() == b""


async def test_options_lists_exactly_the_paths_methods(client: Client) -> None:
    async def check(path: str) -> None:
        response = await client.options(_concrete(path))
        assert response.status == 204, response.status
        assert response.headers["Allow"] == allowed_methods(PATHS[path]), response.headers
        assert await response.read() == b""

    assert await _failures(sorted(PATHS), check) == {}


async def test_options_on_a_fixed_path_beside_a_templated_one(client: Client) -> None:
    """/v1/settlements/pre-settle also matches /v1/settlements/{setl_id}: its own methods only."""
    response = await client.options("/v1/settlements/pre-settle")
    assert response.headers["Allow"] == "OPTIONS, POST"


async def test_a_wrong_method_is_405_with_the_paths_allow(client: Client) -> None:
    async def check(path: str) -> None:
        wrong = "DELETE" if "DELETE" not in PATHS[path] else "PATCH"
        response = await client.request(wrong, _concrete(path))
        await assert_problem(response, 405, "METHOD_NOT_ALLOWED")
        assert response.headers["Allow"] == allowed_methods(PATHS[path]), response.headers

    assert await _failures(sorted(PATHS), check) == {}


async def test_get_on_a_post_only_path_is_405_not_another_routes_handler(client: Client) -> None:
    response = await client.get("/v1/settlements/pre-settle")
    await assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "OPTIONS, POST"
