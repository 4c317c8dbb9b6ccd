"""Graceful shutdown: a request in flight when the worker is told to stop still completes."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import Engine

from gateway.app import create_app
from gateway.routes import ROUTES
from gateway.routing import Call, Route
from gateway.settings import Settings

STARTED: dict[str, asyncio.Event] = {}


async def _slow(_call: Call[None]) -> web.Response:
    STARTED["slow"].set()
    await asyncio.sleep(0.5)
    return web.json_response({"finished": True})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_in_flight_request_is_drained(settings: Settings, engine: Engine):
    STARTED["slow"] = asyncio.Event()
    route = Route(
        "GET", "/test/slow", operation_id="slow", summary="t", handler=_slow, signed=False
    )
    runner = web.AppRunner(
        create_app(settings, routes=(*ROUTES, route)), access_log=None, shutdown_timeout=5
    )
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(session.get(f"http://127.0.0.1:{port}/test/slow"))
        await STARTED["slow"].wait()
        await runner.cleanup()  # what a worker does on SIGTERM
        response = await in_flight
        assert response.status == 200
        assert await response.json() == {"finished": True}
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/healthz")  # no longer accepting
