"""What the project's two servers (`serve` and the control helper) share: listening with a clear
error, the bearer-token check, and a guard against clients that hold connections without asking
anything (slowloris) or open too many.

The guard wraps aiohttp's protocol factory. At most `max_connections` are open; when a new one
arrives and there is no room, the connection that has been idle longest (open, but not in a
request, since it opened or since its last response) is closed to make room, and if every
connection is busy the new one is. A connection idle for CLIENT_TIMEOUT seconds is closed: a
client that sends its headers a byte at a time never finishes a request, so it is idle all along.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from probe.config import CLIENT_TIMEOUT, MAX_CONNECTIONS, CannotListen

BODY_TIMEOUT = 10.0  # seconds a request's body may take to arrive
SWEEP = 1.0


def authorised(request: web.Request, token: str | None) -> bool:
    """No token set, or the request carries it as a bearer token (compared in constant time)."""
    if not token:
        return True
    given = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())


class _Connection(asyncio.Protocol):
    """aiohttp's handler for one connection, seen by the guard."""

    def __init__(self, guard: Guard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.busy = 0  # requests under way
        self.since = time.monotonic()  # opened, or its last response sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.guard.opened(self)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed(self)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class Guard:
    """The protocol factory and the middleware that, together, bound the connections."""

    def __init__(
        self, max_connections: int = MAX_CONNECTIONS, idle: float = CLIENT_TIMEOUT
    ) -> None:
        self.max_connections = max_connections
        self.idle_limit = idle
        self.idle: OrderedDict[_Connection, None] = OrderedDict()  # oldest first
        self.open: dict[asyncio.BaseTransport, _Connection] = {}
        self.closed_by_guard = 0

    def factory(self, inner: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            if len(self.open) >= self.max_connections:
                if not self.idle:
                    self.closed_by_guard += 1
                    return _Refused()
                oldest = next(iter(self.idle))
                self.idle.pop(oldest)
                self.closed_by_guard += 1
                oldest.close()
            return _Connection(self, inner())

        return make

    def opened(self, conn: _Connection) -> None:
        assert conn.transport is not None
        self.open[conn.transport] = conn
        self.idle[conn] = None

    def closed(self, conn: _Connection) -> None:
        if conn.transport is not None:
            self.open.pop(conn.transport, None)
        self.idle.pop(conn, None)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = self.open.get(request.transport) if request.transport is not None else None
        if conn is None:
            return await handler(request)
        conn.busy += 1
        self.idle.pop(conn, None)
        try:
            return await handler(request)
        finally:
            conn.busy -= 1
            if not conn.busy and conn.transport is not None and conn.transport in self.open:
                conn.since = time.monotonic()
                self.idle[conn] = None

    async def sweep(self) -> None:
        """Close connections idle for longer than the limit, oldest first, until stopped."""
        while True:
            await asyncio.sleep(SWEEP)
            now = time.monotonic()
            while self.idle:
                oldest = next(iter(self.idle))
                if now - oldest.since < self.idle_limit:
                    break
                self.idle.pop(oldest)
                self.closed_by_guard += 1
                oldest.close()


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int, guard: Guard) -> AsyncIterator[None]:
    """`app` served on host:port, guarded, for the duration of the `async with`; CannotListen
    where the address cannot be bound."""
    app.middlewares.append(guard.middleware)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=15)
    await runner.setup()
    assert runner.server is not None  # set up just above
    loop = asyncio.get_running_loop()
    try:
        try:
            server = await loop.create_server(
                guard.factory(runner.server), host, port, reuse_address=True
            )
        except OSError as exc:
            raise CannotListen(exc.strerror or str(exc)) from None
        sweeper = asyncio.ensure_future(guard.sweep())
        try:
            yield
        finally:
            sweeper.cancel()
            server.close()
            for conn in list(guard.open.values()):
                conn.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
    finally:
        await runner.cleanup()
