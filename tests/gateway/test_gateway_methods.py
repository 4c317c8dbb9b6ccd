"""HEAD and OPTIONS on every route, and 405 with the path's own Allow (RFC 9110 §9.3.2,
§9.3.7, §15.5.6): HEAD answers like GET without a body, OPTIONS lists exactly the path's
methods, and a wrong method is refused with that same list."""

from __future__ import annotations

import re

import pytest
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


@pytest.mark.parametrize("path", UNSIGNED_GETS)
async def test_head_answers_like_get_without_a_body(client: Client, path: str) -> None:
    get = await client.get(path)
    head = await client.head(path)
    assert head.status == get.status
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert await head.read() == b""
    if path != "/metrics":  # the metrics text changes between the two requests
        assert head.headers.get("Content-Length") == get.headers.get("Content-Length")


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


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_options_lists_exactly_the_paths_methods(client: Client, path: str) -> None:
    response = await client.options(_concrete(path))
    assert response.status == 204
    assert response.headers["Allow"] == allowed_methods(PATHS[path])
    assert await response.read() == b""


async def test_options_on_a_fixed_path_beside_a_templated_one(client: Client) -> None:
    """/v1/settlements/pre-settle also matches /v1/settlements/{setl_id}: its own methods only."""
    response = await client.options("/v1/settlements/pre-settle")
    assert response.headers["Allow"] == "OPTIONS, POST"


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_a_wrong_method_is_405_with_the_paths_allow(client: Client, path: str) -> None:
    wrong = "DELETE" if "DELETE" not in PATHS[path] else "PATCH"
    response = await client.request(wrong, _concrete(path))
    await assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == allowed_methods(PATHS[path])


async def test_get_on_a_post_only_path_is_405_not_another_routes_handler(client: Client) -> None:
    response = await client.get("/v1/settlements/pre-settle")
    await assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "OPTIONS, POST"
