"""Real servers on 127.0.0.1: TLS origins from a trustme CA and raw TCP servers with a behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
import uvloop
from aiohttp import web

from probe.config import Canaries, Settings
from probe.engine import flow
from probe.engine.deadline import Budget
from probe.engine.runtime import Runtime
from probe.model import Measurement, Target

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def settings(**kw: object) -> Settings:
    """Fast settings for loopback tests."""
    base: dict[str, object] = {
        "canaries": Canaries(off=True),  # the built-in ones are on the internet
        "timeout": 2.0,
        "dns_window": 0.2,
        "throughput_window": 1.0,
        "vantage": "test",
        "country": "ZZ",
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def quiet(args: tuple[str, ...]) -> tuple[str, ...]:
    """`check` and `serve` with no canaries (their built-in ones are on the internet): a test
    contacts nothing but 127.0.0.1. The canaries have tests of their own, on loopback."""
    if args[:1] in (("check",), ("serve",)) and "--canaries" not in args and "--help" not in args:
        return (args[0], "--canaries", "none", *args[1:])
    return args


async def measure(url: str, **kw: object) -> Measurement:
    """One measurement of `url` with `settings(**kw)`, on a runtime of its own."""
    rt = await Runtime.open(settings(**kw))
    try:
        return await flow.measure(Target.parse(url), rt, Budget(rt.settings.deadline))
    finally:
        await rt.close()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def reset(writer: asyncio.StreamWriter | asyncio.BaseTransport) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, as a censor sends."""
    transport = writer.transport if isinstance(writer, asyncio.StreamWriter) else writer
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


async def reset_after_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What an SNI filter does: read the start of the ClientHello, answer with a RST."""
    await reader.read(1)
    reset(writer)


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    """Start a TCP server on 127.0.0.1 whose connections `handler` serves; returns its port."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: Handler) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                tasks.discard(task)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
    for task in list(tasks):
        task.cancel()
    await asyncio.sleep(0)


@pytest.fixture
async def web_server() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """Start an aiohttp app on 127.0.0.1 or `host` (TLS when given a context), on a free port or
    `port`; returns its port."""
    runners: list[web.AppRunner] = []

    async def start(
        app: web.Application,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> int:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        runners.append(runner)
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    yield start
    for runner in runners:
        with contextlib.suppress(Exception):
            await runner.cleanup()


def page(title: str, size: int = 0) -> web.Application:
    """An app serving an HTML page with `title`, padded to about `size` bytes."""

    async def index(request: web.Request) -> web.Response:
        body = f"<html><head><title>{title}</title></head><body>{'x' * size}</body></html>"
        return web.Response(text=body, content_type="text/html", headers={"Server": "lab-origin"})

    app = web.Application()
    app.router.add_get("/", index)
    return app


@pytest.fixture
async def tls_origin(web_server: Callable[..., Awaitable[int]], ca: trustme.CA) -> int:
    """A trusted HTTPS origin for `localhost` and 127.0.0.1."""
    return await web_server(
        page("Hello from the origin"), server_context(ca, "localhost", "127.0.0.1")
    )


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """The QUIC tests run on asyncio's event loop and on uvloop's, which the CLI runs: their UDP
    transports differ (uvloop refuses an address for a connected socket). The rest on asyncio's."""
    if item.path.name == "test_quic.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
