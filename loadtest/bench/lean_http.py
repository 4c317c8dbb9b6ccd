"""A lean HTTP/1.1 keep-alive client for the benchmarks' load generator.

The generator shares the machine's two cores with the server it measures, so every
microsecond it spends is one the server does not get. aiohttp's client spends ~0.2 ms of CPU
per request on things a benchmark does not need (URL objects, cookie jar, tracing hooks,
timeouts as tasks, a payload registry, a streaming reader). This client sends one
pre-assembled ``bytes`` per request (one ``send``) on a pooled keep-alive connection and parses
only what a benchmark reads: the status code and a ``Content-Length`` body.

It speaks ordinary HTTP/1.1 to the real server (``Host``, ``Content-Length``, keep-alive); what
it sends is exactly what any client would send. It refuses what it does not implement (chunked
or unsized bodies, 1xx answers) with :class:`LeanHttpError` rather than misreading them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Final, cast

__all__ = ["LeanHttpClient", "LeanHttpError"]

_HEAD_END: Final = b"\r\n\r\n"
# A response head larger than this is not one of the gateway's: refuse rather than buffer.
_MAX_HEAD_BYTES: Final = 16 * 1024


class LeanHttpError(Exception):
    """The connection failed, timed out, or the answer was not plain HTTP/1.1 we can read.
    ``kind`` is a short fixed code (for error counts), the message says more."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = True
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.transport = None
        self._fail(LeanHttpError("CLOSED", "connection closed"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self._parse()
        except LeanHttpError as exc:
            self._fail(exc)
            return
        if answer is not None:
            self._waiter = None
            waiter.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _parse(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        end = buffer.find(_HEAD_END)
        if end < 0:
            if len(buffer) > _MAX_HEAD_BYTES:
                raise LeanHttpError("HEAD_TOO_LARGE", "response head too large")
            return None
        head = bytes(buffer[:end]).decode("latin-1")
        status_line, _, header_text = head.partition("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise LeanHttpError("NOT_HTTP", "not an HTTP/1.x status line")
        status = int(parts[1])
        if status < 200:
            raise LeanHttpError("INFORMATIONAL", "1xx answers are not supported")
        length = None
        for line in header_text.split("\r\n"):
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding":
                raise LeanHttpError("CHUNKED", "chunked answers are not supported")
            elif name == "connection" and value.strip().lower() == "close":
                self.reusable = False
        if length is None:
            raise LeanHttpError("NO_LENGTH", "answer without Content-Length")
        start = end + len(_HEAD_END)
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        return status, body

    async def exchange(self, request: bytes, timeout_s: float) -> tuple[int, bytes]:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise LeanHttpError("CLOSED", "connection closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self._waiter = waiter
        # One timer handle per request (cheaper than asyncio.timeout's task bookkeeping).
        timer = loop.call_later(timeout_s, self._time_out)
        try:
            transport.write(request)
            return await waiter
        except BaseException:
            # Cancelled or failed mid-exchange: a late answer must never be read as the next
            # request's, so the connection is not used again.
            self.reusable = False
            raise
        finally:
            timer.cancel()

    def _time_out(self) -> None:
        self._fail(LeanHttpError("TIMEOUT", "timed out"))
        if self.transport is not None:
            self.transport.abort()


class LeanHttpClient:
    """Up to ``limit`` keep-alive connections to one ``host:port``; a request waits for a free
    connection when all are busy. Use as an async context manager (closes every connection)."""

    def __init__(self, host: str, port: int, *, limit: int, timeout_s: float) -> None:
        assert limit >= 1
        self._host = host
        self._port = port
        self._host_header = f"Host: {host}:{port}\r\n".encode("ascii")
        self._limit = limit
        self._timeout_s = timeout_s
        self._idle: deque[_Connection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> LeanHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        while self._idle:
            connection = self._idle.popleft()
            if connection.transport is not None:
                connection.transport.close()
        self._open = 0

    async def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request; return ``(status, body)``. Raises LeanHttpError."""
        lines = [f"{method} {path} HTTP/1.1\r\n".encode("ascii"), self._host_header]
        lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items())
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        return await self.send(b"".join(lines))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one complete, already assembled HTTP/1.1 request (request line, ``Host``,
        headers, ``Content-Length``, body: what :meth:`request` builds); return ``(status,
        body)``. For a generator that keeps the parts that never change pre-encoded and adds
        only the per-request ones. Raises LeanHttpError."""
        connection = await self._acquire()
        try:
            return await connection.exchange(request, self._timeout_s)
        finally:
            self._release(connection)

    async def _acquire(self) -> _Connection:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if connection.reusable and connection.transport is not None:
                    return connection
                self._open -= 1
            if self._open < self._limit:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on
                raise

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, self._host, self._port), self._timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise LeanHttpError("CONNECT", f"cannot connect: {type(exc).__name__}") from None
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.reusable and connection.transport is not None:
            self._idle.append(connection)
        else:
            self._open -= 1
            if connection.transport is not None:
                connection.transport.abort()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
