"""The hub simulator's HTTP face: aiohttp app factory and the listener that can refuse.

Routes::

    POST /hub/v1/{infno}     one call: request envelope in, response envelope out (HTTP 200),
                             HTTP 400 for a malformed envelope, 503 for an injected 5xx
    GET  /hub/admin/healthz  readiness
    GET  /hub/admin/faults   the fault switches in force
    PUT  /hub/admin/faults   change them; refuse_connections_s stops listening for a while

This is the single part of ``settlement`` that imports aiohttp (DESIGN §3's documented
exception): it simulates an external system and runs in its own process; nothing else in
``settlement`` imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final

from aiohttp import web

from settlement.catalogue import Catalogue, load_catalogue
from settlement.crossprov import wire
from settlement.crossprov.wire import WireError
from settlement.hub.faults import (
    FaultDecision,
    FaultPlan,
    FaultSpecInvalid,
    FaultSwitches,
    parse_fault_header,
)
from settlement.hub.province import Province, load_provinces
from settlement.hub.state import HubState
from sscard.masking import mask_psn_no

__all__ = [
    "CLOCK",
    "FAULTS",
    "LISTENER",
    "STATE",
    "Clock",
    "Listener",
    "ListenerSlot",
    "create_app",
    "start_listener",
    "utc_now",
]

log = logging.getLogger("settlement.hub")

MAX_BODY_BYTES: Final = 1024 * 1024
Clock = Callable[[], dt.datetime]
# The injected latency's sleep, as a module attribute so a unit test can observe it without
# timing anything.
_sleep = asyncio.sleep


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Listener:
    """The listening socket of a served app, which can be closed for a while and reopened on
    the same port (``refuse_connections_s``): clients then see connection refused, the
    outage a real network shows, rather than an HTTP error."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self._host = host
        self._port = port
        self._site: web.SockSite | None = None
        self._refusal: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def start(self) -> None:
        """Bind (port 0 picks a free port, kept for every later re-listen) and serve."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._site = site

    async def stop_listening(self) -> None:
        """Close the listening socket, and ask open keep-alive connections to close once their
        current request is answered (so a pooled client meets the outage too)."""
        site, self._site = self._site, None
        if site is not None:
            await site.stop()
        server = self._runner.server
        if server is not None:
            for handler in server.connections:
                handler.close()

    async def refuse_for(self, seconds: float) -> None:
        """Stop listening now (before the caller answers, so whoever asked meets the outage on
        their next connection), and listen again after ``seconds`` in the background."""
        if self._refusal is not None and not self._refusal.done():
            self._refusal.cancel()
        await self.stop_listening()
        log.warning("refusing connections", extra=_fields(seconds=seconds, port=self._port))
        self._refusal = asyncio.get_running_loop().create_task(self._listen_after(seconds))

    async def _listen_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        while self._site is None:
            try:
                await self.start()
            except OSError as exc:  # the port is briefly taken: try again, never give up
                log.error("re-listen failed", extra=_fields(error=str(exc), port=self._port))
                await asyncio.sleep(0.2)
        log.warning("listening again", extra=_fields(port=self._port))

    async def shutdown(self) -> None:
        """Stop refusing, stop listening, finish the app (its cleanup hooks run)."""
        if self._refusal is not None:
            self._refusal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refusal
        await self.stop_listening()
        await self._runner.cleanup()


STATE: Final = web.AppKey("hub_state", HubState)
FAULTS: Final = web.AppKey("hub_faults", FaultPlan)
CLOCK: Final[web.AppKey[Clock]] = web.AppKey("hub_clock")


class ListenerSlot:
    """Where the served app finds its listener (set after start-up, when the app is frozen)."""

    listener: Listener | None = None


LISTENER: Final = web.AppKey("hub_listener", ListenerSlot)


def _fields(**values: Any) -> dict[str, Any]:
    return {"hub": values}


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        content_type="application/json",
    )


def _problem(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return _json(body, status)


async def _read_json(request: web.Request) -> Any:
    """The body as JSON; ValueError for anything that is not (bad UTF-8, or nesting too deep
    for the parser, included), HTTPRequestEntityTooLarge above MAX_BODY_BYTES."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError("not JSON") from exc


async def _envelope(request: web.Request, path_infno: str) -> wire.HubRequest | web.Response:
    """The parsed request envelope, or the 400/413 answer that refuses it."""
    try:
        data = await _read_json(request)
    except web.HTTPRequestEntityTooLarge:
        return _problem(413, "ENVELOPE_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
    except ValueError:
        return _problem(400, "ENVELOPE_INVALID", "the body is not JSON")
    try:
        return wire.parse_request(data, path_infno=path_infno)
    except WireError as exc:
        return _problem(400, "ENVELOPE_INVALID", exc.message, exc.field)


# Calls being processed: a strong reference, so a call whose caller hung up runs to the end.
_IN_FLIGHT: Final[set[asyncio.Future[web.Response | wire.HubResponse]]] = set()


async def _process(
    app: web.Application,
    decision: FaultDecision,
    path_infno: str,
    envelope: wire.HubRequest | web.Response,
) -> web.Response | wire.HubResponse:
    if decision.latency_ms:
        await _sleep(decision.latency_ms / 1000)
    if decision.error_5xx:
        log.info("injected 503", extra=_fields(infno=path_infno))
        return _problem(503, "HUB_FAULT_5XX", "injected fault: nothing was processed")
    if isinstance(envelope, web.Response):
        return envelope
    return app[STATE].handle(envelope, now=app[CLOCK]())


async def _hub_call(request: web.Request) -> web.Response:
    app = request.app
    path_infno = request.match_info["infno"]
    try:
        forced = parse_fault_header(request.headers.get("X-Hub-Fault"))
    except FaultSpecInvalid as exc:
        return _problem(400, exc.code, str(exc), "X-Hub-Fault")
    decision = app[FAULTS].decide(forced)
    # The body is read first and the rest runs shielded, so a call the hub has received is
    # processed even if its caller hangs up (or is SIGKILLed) during the latency, as a real
    # server would: the caller then never learns an outcome that did happen.
    envelope = await _envelope(request, path_infno)
    task = asyncio.ensure_future(_process(app, decision, path_infno, envelope))
    _IN_FLIGHT.add(task)
    task.add_done_callback(_IN_FLIGHT.discard)
    response = await asyncio.shield(task)
    if not isinstance(response, wire.HubResponse):
        return response
    assert isinstance(envelope, wire.HubRequest)
    log.info(
        "call",
        extra=_fields(
            infno=envelope.infno,
            msgid=envelope.msgid,
            insuplc_admdvs=envelope.insuplc_admdvs,
            psn_no=mask_psn_no(envelope.input.get("psn_no", "")),
            infcode=response.infcode,
            err_code=response.err_code,
            dropped=decision.drop,
        ),
    )
    if decision.drop and request.transport is not None:
        # Committed; now vanish: the client sees the connection close with no answer.
        request.transport.abort()
        return web.Response(status=204)
    return _json(response.to_json())


async def _healthz(request: web.Request) -> web.Response:
    provinces = sorted(p.admdvs for p in request.app[STATE].provinces.values())
    # Calls received and not yet answered: lets a test wait until its call has reached the
    # hub (and sleeps there on injected latency) instead of sleeping for a guessed while.
    return _json({"status": "ok", "provinces": provinces, "calls_in_flight": len(_IN_FLIGHT)})


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[FAULTS].as_json())


async def _put_faults(request: web.Request) -> web.Response:
    try:
        body = await _read_json(request)
    except web.HTTPRequestEntityTooLarge:
        return _problem(413, FaultSpecInvalid.code, f"the body is over {MAX_BODY_BYTES} bytes")
    except ValueError:
        return _problem(400, FaultSpecInvalid.code, "the body is not JSON")
    listener = request.app[LISTENER].listener
    wants_refusal = isinstance(body, dict) and body.get("refuse_connections_s", 0) not in (0, None)
    if wants_refusal and listener is None:
        return _problem(
            409, "NO_LISTENER", "refuse_connections_s needs a hub served by settlement.hub.serve"
        )
    try:
        refuse_s = request.app[FAULTS].update(body)
    except FaultSpecInvalid as exc:
        return _problem(400, exc.code, str(exc))
    log.warning("faults changed", extra=_fields(**request.app[FAULTS].as_json()))
    if refuse_s > 0 and listener is not None:
        await listener.refuse_for(refuse_s)
    return _json({**request.app[FAULTS].as_json(), "refuse_connections_s": refuse_s})


def create_app(
    *,
    seed: str,
    faults: FaultSwitches | None = None,
    clock: Clock = utc_now,
    provinces: Mapping[str, Province] | None = None,
    catalogue: Catalogue | None = None,
) -> web.Application:
    """The simulator as an aiohttp app (fresh, empty books). Serve it with
    :func:`start_listener` to get a :class:`Listener` (needed for ``refuse_connections_s``),
    or with aiohttp's test server for in-process tests."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = HubState(
        seed=seed,
        provinces=provinces if provinces is not None else load_provinces(),
        catalogue=catalogue if catalogue is not None else load_catalogue("demo"),
    )
    app[FAULTS] = FaultPlan(faults or FaultSwitches())
    app[CLOCK] = clock
    app[LISTENER] = ListenerSlot()
    app.router.add_post("/hub/v1/{infno:[0-9]{4}}", _hub_call)
    app.router.add_get("/hub/admin/healthz", _healthz)
    app.router.add_get("/hub/admin/faults", _get_faults)
    app.router.add_put("/hub/admin/faults", _put_faults)
    return app


async def start_listener(app: web.Application, host: str, port: int) -> Listener:
    """Set up ``app`` and listen on ``host:port`` (0: a free port); ``await
    listener.shutdown()`` stops it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    listener = Listener(runner, host, port)
    app[LISTENER].listener = listener
    try:
        await listener.start()
    except BaseException:
        await runner.cleanup()
        raise
    return listener
