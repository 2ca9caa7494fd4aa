"""Re-measurement and the control helper, end to end on 127.0.0.x.

The vantage's resolver sends `site.test` to 127.0.0.2, where a censor sits in front of the
origin; the control helper's resolver knows the site at 127.0.0.2 and at 127.0.0.3 (the origin
itself), and its address policy lets it reach only the latter: on loopback that is how the
control's path goes around the censor, as it does from abroad.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import dns.message
import dns.rdatatype
import pytest
import trustme
from aiohttp import web

from probe.engine import schedule
from probe.engine.runtime import Runtime
from probe.helper.server import ControlService
from probe.lab.dnsserver import DNSServer, Replies
from probe.model import Result, Target
from tests.conftest import require_root
from tests.loopback.conftest import reset, server_context, settings

Start = Callable[..., Awaitable[int]]
VANTAGE_SEES, CONTROL_SEES = "127.0.0.2", "127.0.0.3"


class Zone(DNSServer):
    def __init__(self, records: dict[str, list[str]]) -> None:
        super().__init__()
        self.records = records

    def handle(self, query: dns.message.Message) -> Replies:
        name = query.question[0].name.to_text(omit_final_dot=True)
        a = query.question[0].rdtype == dns.rdatatype.A and name in self.records
        return [(0.0, self.answer(query, self.records[name] if a else []))]


@dataclass
class Censor:
    """Resets ClientHellos naming `name` (every time, or only the first), passes the rest on."""

    upstream: int
    name: bytes
    always: bool
    triggers: list[float] = field(default_factory=list)
    connections: list[float] = field(default_factory=list)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(time.monotonic())
        hello = await reader.read(4096)
        if self.name in hello and (self.always or not self.triggers):
            self.triggers.append(time.monotonic())
            reset(writer)
            return
        up_reader, up_writer = await asyncio.open_connection(CONTROL_SEES, self.upstream)
        up_writer.write(hello)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def listen_on(
    address: str, port: int, handler: Callable[..., Awaitable[None]]
) -> asyncio.Server:
    return await asyncio.start_server(handler, address, port)


async def with_control(
    web_server: Start,
    url: str,
    vantage: Zone,
    outside: Zone,
    control_public: tuple[str, ...],
    ca_file: str,
    **kw: object,
) -> Result:
    """`url` measured from the vantage (its resolver `vantage`) with a real control helper on
    127.0.0.1 (its resolver `outside`, allowed `control_public`)."""
    helper = ControlService(
        settings(
            public_ranges=control_public,
            resolvers=(f"127.0.0.1:{outside.port}",),
            ca_file=ca_file,
        ),
        token=None,
        concurrency=4,
    )
    s = settings(
        control=f"http://127.0.0.1:{await web_server(helper.app())}",
        resolvers=(f"127.0.0.1:{vantage.port}",),
        public_ranges=("127.0.0.0/8",),
        dns_window=0.05,
        ca_file=ca_file,
        **kw,
    )
    rt = await Runtime.open(s)
    got: list[Result] = []
    try:
        await schedule.run([Target.parse(url)], rt, lambda i, r: got.append(r), count=1)
    finally:
        await rt.close()
    (result,) = got
    return result


@pytest.fixture
async def world(
    web_server: Start, ca: trustme.CA, ca_file: str
) -> AsyncIterator[Callable[..., Awaitable[Result]]]:
    """Measures https://site.test:PORT/ through a censor; returns the result."""
    servers: list[asyncio.Server] = []
    zones: list[Zone] = []

    async def measure(*, always: bool, retry_pause: float = 0.3) -> tuple[Result, Censor]:
        app = site("<title>Site</title>the site")
        origin = await web_server(app, server_context(ca, "site.test"), host=CONTROL_SEES)
        censor = Censor(origin, b"site.test", always)
        servers.append(await asyncio.start_server(censor, VANTAGE_SEES, origin))
        vantage = await Zone({"site.test": [VANTAGE_SEES]}).start()
        outside = await Zone({"site.test": [VANTAGE_SEES, CONTROL_SEES]}).start()
        zones.extend([vantage, outside])
        result = await with_control(
            web_server,
            f"https://site.test:{origin}/",
            vantage,
            outside,
            (f"{CONTROL_SEES}/32",),
            ca_file,
            retries=1,
            retry_pause=retry_pause,
        )
        return result, censor

    yield measure  # type: ignore[misc]
    for server in servers:
        server.close()
    for zone in zones:
        await zone.stop()


def site(text: str) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    return app


async def test_a_block_that_a_remeasurement_does_not_confirm_is_not_a_block(world) -> None:  # type: ignore[no-untyped-def]
    """One reset, then the site loads: one lost connection is not censorship ("1 of 2")."""
    result, _ = await world(always=False)
    d = result.diagnosis
    assert (d.verdict, d.attempts, d.agreed) == ("accessible", 2, 1), d.explanation
    assert "looked blocked" in d.explanation and "not confirmed" in d.explanation


async def test_a_block_seen_every_time_stands(world) -> None:  # type: ignore[no-untyped-def]
    """Reset every time, while the control loads the site: blocked, confirmed "2 of 2"."""
    result, _ = await world(always=True)
    d = result.diagnosis
    assert (d.verdict, str(d.blocking), d.attempts, d.agreed) == ("blocked", "tls/reset", 2, 2)
    assert "seen in 2 of 2" in d.explanation and "example.com" in d.explanation
    assert result.control is not None and result.control.measurement is not None


async def test_the_remeasurement_waits_out_the_pause(world) -> None:  # type: ignore[no-untyped-def]
    """The second measurement starts no sooner than retry_pause after the first one ended."""
    result, censor = await world(always=True, retry_pause=1.0)
    assert result.diagnosis.attempts == 2
    first_end, second = censor.triggers[0], censor.triggers[1]
    assert second - first_end >= 1.0


async def test_a_cdn_node_proven_by_the_controls_certificate_is_not_a_dns_block(
    web_server: Start, ca: trustme.CA, ca_file: str
) -> None:
    """http://news.test: the vantage is sent to a regional node (127.0.0.2) that redirects to
    the regional edition; the control to the international one (127.0.0.3). Only the control's
    handshake on 443 at 127.0.0.2 — a certificate valid for news.test — shows that node is the
    site's own: accessible, not dns/inconsistent."""
    require_root("listen on port 443, where the control validates certificates")
    port = await web_server(site("<title>News</title>" + "n" * 5000), host=CONTROL_SEES)

    async def regional(request: web.Request) -> web.Response:
        if (request.host or "").startswith("news.test"):  # the node sends this region on
            raise web.HTTPFound(f"http://ru.news.test:{port}/")
        return web.Response(text="<title>Новости</title>" + "р" * 300, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", regional)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, VANTAGE_SEES, port).start()
    await web.TCPSite(
        runner, VANTAGE_SEES, 443, ssl_context=server_context(ca, "news.test")
    ).start()
    vantage = await Zone({"news.test": [VANTAGE_SEES], "ru.news.test": [VANTAGE_SEES]}).start()
    outside = await Zone({"news.test": [CONTROL_SEES]}).start()
    try:
        result = await with_control(
            web_server,
            f"http://news.test:{port}/",
            vantage,
            outside,
            (f"{VANTAGE_SEES}/32", f"{CONTROL_SEES}/32"),
            ca_file,
        )
        assert result.verdict == "accessible", result.diagnosis.explanation
        assert result.control is not None
        assert [(t.address, t.verified) for t in result.control.validation] == [
            (VANTAGE_SEES, True)
        ]
    finally:
        await runner.cleanup()
        await vantage.stop()
        await outside.stop()
