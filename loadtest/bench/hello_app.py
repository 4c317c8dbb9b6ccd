"""The yardstick for the auth bench: a minimal aiohttp JSON handler, N processes on one port.

``python -m loadtest.bench.hello_app --port P --workers N`` runs N worker processes, each with
its own SO_REUSEPORT listening socket on 127.0.0.1:P (as ``gateway serve`` does), serving
``GET /hello`` -> ``{"hello": "world"}`` and nothing else. It stops on SIGTERM or SIGINT, or by
itself after ``--max-seconds``, so a forgotten one cannot run on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import signal
import sys

from aiohttp import web

__all__ = ["main"]


async def _hello(_request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


async def _serve(port: int, max_seconds: float) -> None:
    app = web.Application()
    app.router.add_get("/hello", _hello)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
    finally:
        await runner.cleanup()


def _worker(port: int, max_seconds: float, use_uvloop: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if use_uvloop:
        import uvloop

        uvloop.run(_serve(port, max_seconds))
    else:
        asyncio.run(_serve(port, max_seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.hello_app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--uvloop", action="store_true", help="run each worker on uvloop")
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(args.port, args.max_seconds, args.uvloop))
        for _ in range(args.workers)
    ]
    for worker in workers:
        worker.start()

    def stop(_signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
