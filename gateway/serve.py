"""``python -m gateway serve``: a supervisor process and N worker processes sharing one port.

Start-up, in the supervisor, once, before any worker exists:

1. reserve the port: a socket bound with SO_REUSEPORT but not listening. It fails fast if
   another program holds the port (before the database is touched), fixes ``--port 0`` to one
   real port for every worker, and keeps the port ours while a crashed worker restarts. It
   never accepts a connection: only listening sockets take part in SO_REUSEPORT balancing;
2. empty ``{data_dir}/prometheus`` and point PROMETHEUS_MULTIPROC_DIR at it (this module and
   everything it imports at module level stay clear of prometheus_client, which reads the
   variable when first imported);
3. run the migrations, so that N workers never race to migrate;
4. load the demo world into an empty embedded database (gateway.demo), then seal every
   terminal secret still in the plaintext column under the KEK (gateway.kek; the demo
   world's rows, rows of before gw0005, rows put in by hand). A KEK that is configured but
   cannot be read stops the start (exit 2);
5. with the demo world on and no ``hub_url``, start the national hub simulator as a child
   process on a free local port and hand its URL to the workers (gateway.crossprov.embedded);
   it is stopped after the workers.

Then it starts the workers (``spawn``: a fresh interpreter, no inherited threads or locks); the
first, once it listens, prints one line for people on stderr (gateway.front_door.start_line).
Each worker binds its own listening socket with SO_REUSEPORT, so the kernel spreads incoming
connections across workers. The supervisor restarts a worker that dies (at most
``_RESTARTS_PER_WINDOW`` in ``_RESTART_WINDOW_S``, then it gives up and exits 1). On SIGTERM or
SIGINT it sends SIGTERM to every worker; a worker stops accepting, lets in-flight requests
finish (``shutdown_timeout_s``), closes its database pool and exits 0. Workers ignore SIGINT
themselves: a Ctrl-C reaches the whole process group, and one orderly SIGTERM from the
supervisor is what they act on. A second signal to the supervisor kills the workers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Final

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import migrate
from gateway.crossprov.embedded import embedded_hub
from gateway.db import for_writes, make_engine
from gateway.demo import resolve_demo_world
from gateway.enrolment.common import Actor
from gateway.enrolment.rewrap import rewrap_secrets
from gateway.kek import KekUnavailable, resolve_keys
from gateway.logs import configure_logging, fields
from gateway.settings import Settings

__all__ = ["prepare", "reserve_port", "run_worker", "serve"]

log = logging.getLogger("gateway.serve")

_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_RESTARTS_PER_WINDOW: Final = 5
_RESTART_WINDOW_S: Final = 60.0
# Beyond the workers' own drain time: for closing pools and flushing logs.
_STOP_GRACE_S: Final = 10.0


def serve(settings: Settings) -> int:
    """Run the supervisor until SIGTERM/SIGINT; return the process exit code."""
    configure_logging(settings.log_format, settings.log_level)
    # The port first: a port conflict fails in milliseconds, before the database is touched.
    try:
        guard = reserve_port(settings.host, settings.port)
    except OSError as exc:
        log.error(
            "cannot bind the port",
            extra=fields(host=settings.host, port=settings.port, error=exc.strerror),
        )
        return 1
    try:
        try:
            settings = prepare(settings)
        except KekUnavailable as exc:
            log.error("cannot read the key-encryption key", extra=fields(error=str(exc)))
            return 2
        except SQLAlchemyError as exc:
            # First line only: the rest is the failed SQL statement.
            log.error(
                "cannot prepare the database",
                extra=fields(exc_type=type(exc).__name__, error=str(exc).splitlines()[0]),
            )
            return 1
        if settings.redis_url and not _redis_answers(settings.redis_url):
            return 1
        port = guard.getsockname()[1]
        with embedded_hub(settings) as hub_url:
            if hub_url:
                settings = settings.model_copy(update={"hub_url": hub_url})
            return _Supervisor(settings, port).run()
    finally:
        guard.close()


def _redis_answers(url: str) -> bool:
    """The shared limits' Redis (gateway.limits) answers a PING; else say so and do not start:
    workers that cannot count would guard nothing."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        # Not the URL itself: it may carry a password.
        log.error(
            "cannot reach Redis at redis_url (the shared limits live there)",
            extra=fields(exc_type=type(exc).__name__, error=str(exc).splitlines()[0]),
        )
        return False
    finally:
        client.close()
    return True


def prepare(settings: Settings) -> Settings:
    """Steps 2–4 of the module docstring."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: "
            "worker metrics would not be shared"
        )
    shutil.rmtree(settings.metrics_dir, ignore_errors=True)
    settings.metrics_dir.mkdir(parents=True)
    os.environ[_MULTIPROC_ENV] = str(settings.metrics_dir)

    engine = make_engine(settings)
    try:
        before = migrate.current_revisions(engine)
        revisions = migrate.upgrade(engine)
        log.info(
            "schema current",
            extra=fields(revisions=sorted(revisions), upgraded_from=sorted(before)),
        )
        # "auto" decided here, once, for the supervisor and every worker: the demo world only
        # in a database created as one (its marker) or empty and embedded (gateway.demo).
        settings = resolve_demo_world(engine, settings)
        _seal_plaintext_secrets(settings, engine)
    finally:
        engine.dispose()
    return settings


def _seal_plaintext_secrets(settings: Settings, engine: Engine) -> None:
    keys = resolve_keys(settings)
    log.info("key-encryption key", extra=fields(kek_source=keys.source))
    if keys.ring is None:
        log.warning(
            "no key-encryption key: nothing can be enrolled, and sealed terminal secrets "
            "cannot be opened (set kek_file or GATEWAY_KEK_HEX)"
        )
        return
    ring = keys.ring
    actor = Actor("gateway:serve", "serve", time.time())
    with Session(for_writes(engine)) as session, session.begin():
        report = rewrap_secrets(session, actor, ring, plaintext_only=True)
    if report.sealed:
        log.info(
            "secrets sealed at rest (terminals, transport keys, card-session key)",
            extra=fields(sealed=report.sealed, kek_id=report.kek_id),
        )


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket on (host, port). OSError if taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    guard = socket.socket(family, kind, proto)
    try:
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        guard.bind(address)
    except OSError:
        guard.close()
        raise
    return guard


class _Supervisor:
    def __init__(self, settings: Settings, port: int) -> None:
        self._settings = settings
        self._port = port
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}
        self._restarts: collections.deque[float] = collections.deque()
        self._signals = 0

    def run(self) -> int:
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        # The C-level handler writes to this socket, so a signal wakes the wait below at once.
        previous_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            log.info(
                "gateway starting",
                extra=fields(
                    host=self._settings.host, port=self._port, workers=self._settings.workers
                ),
            )
            for slot in range(self._settings.workers):
                # The first worker says, once it listens, where people find things.
                self._start(slot, announce=slot == 0)
            failed = False
            while not self._signals and not failed:
                sentinels = {worker.sentinel: n for n, worker in self._workers.items()}
                ready = multiprocessing.connection.wait([wake_read, *sentinels], timeout=5.0)
                if wake_read in ready:
                    _drain(wake_read)
                for sentinel in ready:
                    dead = sentinels.get(sentinel) if isinstance(sentinel, int) else None
                    if dead is not None and not self._worker_died(dead):
                        failed = True
            return self._stop_all(failed=failed)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            wake_read.close()
            wake_write.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            # Impatient operator: stop waiting for in-flight requests.
            for worker in self._workers.values():
                if worker.is_alive():
                    worker.kill()

    def _start(self, slot: int, *, announce: bool = False) -> None:
        worker = self._context.Process(
            target=run_worker,
            args=(self._settings, self._port, slot, announce),
            name=f"gateway-worker-{slot}",
        )
        worker.start()
        self._workers[slot] = worker
        log.info("worker started", extra=fields(slot=slot, worker_pid=worker.pid))

    def _worker_died(self, slot: int) -> bool:
        """Restart a dead worker; False when the restart budget is spent."""
        worker = self._workers[slot]
        worker.join()
        self._forget_metrics(worker)
        log.error(
            "worker exited unexpectedly",
            extra=fields(slot=slot, worker_pid=worker.pid, exit_code=worker.exitcode),
        )
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > _RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= _RESTARTS_PER_WINDOW:
            log.error(
                "workers keep dying: giving up",
                extra=fields(restarts=len(self._restarts), window_s=_RESTART_WINDOW_S),
            )
            return False
        self._restarts.append(now)
        self._start(slot)
        self._count_restart()
        return True

    def _stop_all(self, *, failed: bool) -> int:
        log.info("gateway stopping", extra=fields(workers=len(self._workers)))
        for worker in self._workers.values():
            if worker.is_alive():
                worker.terminate()  # SIGTERM: drain, then exit 0
        deadline = time.monotonic() + self._settings.shutdown_timeout_s + _STOP_GRACE_S
        clean = not failed
        for slot, worker in self._workers.items():
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("worker did not stop in time: killed", extra=fields(slot=slot))
                worker.kill()
                worker.join()
            self._forget_metrics(worker)
            # -SIGTERM: our SIGTERM reached a worker still starting, before it installed its
            # handler. It had served nothing, so there was nothing to drain: still clean.
            clean = clean and worker.exitcode in (0, -signal.SIGTERM)
        log.info("gateway stopped", extra=fields(clean=clean))
        return 0 if clean else 1

    @staticmethod
    def _count_restart() -> None:
        # Imported only now: PROMETHEUS_MULTIPROC_DIR is set (see prepare()). The supervisor's
        # counter file sits beside the workers' and /metrics sums it with theirs.
        from gateway.metrics import WORKER_RESTARTS

        WORKER_RESTARTS.inc()

    @staticmethod
    def _forget_metrics(worker: BaseProcess) -> None:
        if worker.pid is not None:
            # Imported only now: PROMETHEUS_MULTIPROC_DIR is set (see prepare()).
            from gateway.metrics import mark_worker_dead

            mark_worker_dead(worker.pid)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(64):
            pass
    except BlockingIOError:
        pass


def run_worker(settings: Settings, port: int, slot: int, announce: bool = False) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter). ``announce``: print
    the human start-up line (gateway.front_door) once listening."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    configure_logging(settings.log_format, settings.log_level)
    try:
        _run_loop(settings.event_loop, _serve_worker(settings, port, slot, announce))
    except Exception:
        log.exception("worker failed", extra=fields(slot=slot))
        sys.exit(1)


def _run_loop(choice: str, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (``uvloop``, or ``auto`` when it is installed) or asyncio."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


async def _serve_worker(settings: Settings, port: int, slot: int, announce: bool) -> None:
    from aiohttp import web

    # Imported here, in the worker, after PROMETHEUS_MULTIPROC_DIR is in the environment.
    from gateway.app import create_app
    from gateway.front_door import start_line
    from gateway.ops.access import OPS_ACCESS

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runner = web.AppRunner(
        create_app(settings),
        handle_signals=False,
        access_log=None,  # gateway.middleware.observe logs each request
        shutdown_timeout=settings.shutdown_timeout_s,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.host,
            port,
            reuse_port=True,
            backlog=settings.listen_backlog,
        )
        await site.start()
        loop_name = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        log.info("worker ready", extra=fields(slot=slot, port=port, event_loop=loop_name))
        if announce:
            # For people, beside the JSON lines (not one of them): stderr, plain text.
            line = start_line(settings, port, runner.app[OPS_ACCESS].source)
            print(line, file=sys.stderr, flush=True)
        await stop.wait()
        log.info("worker draining", extra=fields(slot=slot))
    finally:
        # Stops accepting, closes idle keep-alive connections, waits up to shutdown_timeout_s
        # for in-flight requests, then runs cleanup_ctx (database pool, sweeper).
        await runner.cleanup()
    log.info("worker stopped", extra=fields(slot=slot))
