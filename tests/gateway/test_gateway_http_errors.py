"""Every rejection: the right status and stable code, problem+json, counted, nothing stored."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from aiohttp import web
from gateway_testkit import Client, Signer, assert_problem, nonce_count
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from gateway import db as gateway_db
from gateway.routing import Call, Route


class CardLost(Exception):
    """Shaped like a domain package's error: a stable .code, a safe .detail."""

    code = "DB_UNAVAILABLE"  # a registered code, standing in for e.g. CARD_LOST
    detail = "card reported lost"


class Unregistered(Exception):
    code = "NO_SUCH_CODE_ANYWHERE"  # not in gateway.errors.ERRORS


async def _boom(_call: Call[None]) -> web.Response:
    raise RuntimeError("boom: citizen 310101199001011234")


async def _domain_error(_call: Call[None]) -> web.Response:
    raise CardLost


async def _unregistered(_call: Call[None]) -> web.Response:
    raise Unregistered


# The event of the running test (an Event belongs to one event loop, and each test has its own).
RELEASE: dict[str, asyncio.Event] = {}
ENTERED: dict[str, asyncio.Event] = {}


async def _slow(_call: Call[None]) -> web.Response:
    ENTERED["slow"].set()  # it holds its in-flight slot from here
    await RELEASE["slow"].wait()
    return web.json_response({"ok": True})


@pytest.fixture
def extra_routes() -> Sequence[Route]:
    def route(path: str, handler: Any) -> Route:
        return Route(
            "GET", path, operation_id=path.strip("/"), summary="t", handler=handler, signed=False
        )

    return (
        route("/test/boom", _boom),
        route("/test/domain", _domain_error),
        route("/test/unregistered", _unregistered),
        route("/test/slow", _slow),
    )


async def test_unknown_path_is_not_found(
    client: Client, rejection_delta: Callable[[str], Callable[[], float]]
):
    delta = rejection_delta("NOT_FOUND")
    await assert_problem(await client.get("/v1/nothing-here"), 404, "NOT_FOUND")
    assert delta() == 1


async def test_wrong_method_is_not_allowed_with_allow_header(client: Client):
    response = await client.get("/v1/echo")
    await assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "OPTIONS, POST"


async def test_body_over_the_limit_by_content_length(
    signer: Signer, engine: Engine, rejection_delta: Callable[[str], Callable[[], float]]
):
    delta = rejection_delta("BODY_TOO_LARGE")
    body = {"message": "x" * (64 * 1024)}
    await assert_problem(await signer.post(body=body), 413, "BODY_TOO_LARGE")
    assert delta() == 1
    assert nonce_count(engine) == 0


async def test_body_over_the_limit_when_chunked(client: Client, engine: Engine):
    async def chunks():
        for _ in range(80):
            yield b"x" * 1024

    response = await client.post(
        "/v1/echo", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 413, "BODY_TOO_LARGE")
    assert nonce_count(engine) == 0


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_wrong_content_type(signer: Signer, engine: Engine, content_type: str):
    response = await signer.post(content_type=content_type)
    await assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert nonce_count(engine) == 0


async def test_json_with_explicit_utf8_charset_is_fine(signer: Signer):
    response = await signer.post(content_type="application/json; charset=UTF-8")
    assert response.status == 200


@pytest.mark.parametrize("raw", [b"", b'{"message":', b"{'message': 'x'}", b"\xff\xfe", b"nul"])
async def test_malformed_json(
    signer: Signer,
    engine: Engine,
    raw: bytes,
    rejection_delta: Callable[[str], Callable[[], float]],
):
    delta = rejection_delta("MALFORMED_JSON")
    await assert_problem(await signer.post(body=raw), 400, "MALFORMED_JSON")
    assert delta() == 1
    assert nonce_count(engine) == 0


@pytest.mark.parametrize(
    ("body", "field", "error_type"),
    [
        ({"message": 123}, "message", "string_type"),
        ({}, "message", "missing"),
        ({"message": "x", "citizen_id": "310101199001011234"}, "citizen_id", "extra_forbidden"),
        ({"message": ""}, "message", "string_too_short"),
        ({"message": None}, "message", "string_type"),
    ],
)
async def test_validation_failures_name_the_field_but_not_the_value(
    signer: Signer,
    engine: Engine,
    body: dict[str, Any],
    field: str,
    error_type: str,
    rejection_delta: Callable[[str], Callable[[], float]],
):
    delta = rejection_delta("VALIDATION_FAILED")
    response = await signer.post(body=body)
    problem = await assert_problem(response, 422, "VALIDATION_FAILED")
    assert {"field": field, "type": error_type} in [
        {"field": e["field"], "type": e["type"]} for e in problem["errors"]
    ]
    assert "310101199001011234" not in await response.text()
    assert delta() == 1
    assert nonce_count(engine) == 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "MALFORMED_JSON"),
        (b'{"message":' + b"[" * 5_000 + b"]" * 5_000 + b"}", "MALFORMED_JSON"),
        (b'{"message": NaN}', "VALIDATION_FAILED"),
        (b'\xef\xbb\xbf{"message":"x"}', "MALFORMED_JSON"),
        (b'{"message":"\\ud800"}', "MALFORMED_JSON"),
        (b'{"message":"x"} trailing', "MALFORMED_JSON"),
        (b'{"message":"x\\u0000y"}', "VALIDATION_FAILED"),
        (b"1e999999", "VALIDATION_FAILED"),
        (b'"just a string"', "VALIDATION_FAILED"),
        (b"null", "VALIDATION_FAILED"),
    ],
)
async def test_hostile_bodies_get_a_4xx_and_store_nothing(
    signer: Signer, engine: Engine, raw: bytes, code: str
):
    response = await signer.post(body=raw)
    await assert_problem(response, 400 if code == "MALFORMED_JSON" else 422, code)
    assert nonce_count(engine) == 0


async def test_top_level_array_is_a_validation_failure(signer: Signer):
    response = await signer.post(body=b'[{"message": "x"}]')
    problem = await assert_problem(response, 422, "VALIDATION_FAILED")
    assert problem["errors"][0]["field"] == "(body)"


async def test_unexpected_exception_is_internal_with_request_id(
    client: Client,
    caplog: pytest.LogCaptureFixture,
    rejection_delta: Callable[[str], Callable[[], float]],
):
    delta = rejection_delta("INTERNAL")
    with caplog.at_level(logging.ERROR, logger="gateway.http"):
        response = await client.get("/test/boom", headers={"X-Request-Id": "req-12345678"})
    body = await assert_problem(response, 500, "INTERNAL")
    assert body["request_id"] == "req-12345678"
    assert "boom" not in json.dumps(body)
    assert "3101011990" not in json.dumps(body)
    assert delta() == 1
    logged = [r for r in caplog.records if r.getMessage() == "unhandled exception"]
    assert logged
    assert logged[0].gateway_fields["request_id"] == "req-12345678"


async def test_untrusted_request_id_is_replaced(client: Client):
    response = await client.get("/healthz", headers={"X-Request-Id": "bad id; with=junk <script>"})
    assert response.headers["X-Request-Id"] != "bad id; with=junk <script>"
    assert len(response.headers["X-Request-Id"]) == 32


async def test_domain_error_is_mapped_by_its_code(client: Client):
    body = await assert_problem(await client.get("/test/domain"), 503, "DB_UNAVAILABLE")
    assert body["detail"] == "card reported lost"


async def test_domain_error_with_unregistered_code_is_internal(client: Client):
    await assert_problem(await client.get("/test/unregistered"), 500, "INTERNAL")


@pytest.mark.parametrize("settings_overrides", [{"max_inflight_requests": 1}])
async def test_overload_is_503_with_retry_after(signer: Signer, client: Client):
    RELEASE["slow"] = release = asyncio.Event()
    ENTERED["slow"] = entered = asyncio.Event()
    # /test/slow is bounded: it holds the only in-flight slot once its handler runs.
    held = asyncio.ensure_future(client.get("/test/slow"))
    await asyncio.wait_for(entered.wait(), 10)
    response = await signer.post()
    await assert_problem(response, 503, "OVERLOADED")
    assert response.headers["Retry-After"] == "2"
    # Probes are not bounded: a busy worker is still alive and ready.
    assert (await client.get("/healthz")).status == 200
    release.set()
    assert (await held).status == 200
    assert (await signer.post()).status == 200


async def test_readyz_is_503_when_the_database_fails(
    client: Client, monkeypatch: pytest.MonkeyPatch
):
    assert (await client.get("/readyz")).status == 200

    def down(_session: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(gateway_db, "_select_one", down)
    response = await client.get("/readyz")
    await assert_problem(response, 503, "DB_UNAVAILABLE")
    assert response.headers["Retry-After"] == "5"
    assert (await client.get("/healthz")).status == 200  # alive, just not ready
