"""The engine's core promises, on 127.0.0.x: every target ends within its documented bound
whatever step stalls, and the HTTP evidence always names a server the same measurement's TCP/TLS
steps reached (nothing shared between targets decides where a fetch goes)."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import dns.message
import dns.rdatatype
import pytest
import trustme
from aiohttp import web

from probe.config import Settings
from probe.engine import schedule
from probe.engine.runtime import Runtime
from probe.lab.dnsserver import DNSServer, Replies
from probe.model import Result, Target
from tests.loopback.conftest import Handler, server_context, settings

Start = Callable[..., Awaitable[int]]


class Silent(DNSServer):
    def handle(self, query: dns.message.Message) -> Replies:
        return []


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a SYN gets no answer, so connecting stalls."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.socket()
    filler.connect(("127.0.0.1", port))
    yield port
    filler.close()
    listener.close()


async def results(s: Settings, urls: list[str]) -> dict[str, tuple[Result, float]]:
    """Every URL measured at once; each result with the seconds its measurement took."""
    rt = await Runtime.open(s)
    started: dict[str, float] = {}
    out: dict[str, tuple[Result, float]] = {}
    targets = [Target.parse(u) for u in urls]
    for t in targets:
        started[t.url] = time.perf_counter()

    def on_result(index: int, result: Result) -> None:
        url = result.measurement.target.url
        out[url] = (result, time.perf_counter() - started[url])

    try:
        await schedule.run(targets, rt, on_result, count=len(targets))
    finally:
        await rt.close()
    return out


async def test_a_target_that_stalls_at_any_step_ends_within_its_bound(
    raw_server: Callable[[Handler], Awaitable[int]], full_backlog: int, ca_file: str
) -> None:
    """DNS, connect, handshake, headers, body and a redirect hop each stall in turn (and one
    server is merely slow at every step): every target ends within `Settings.target_bound`, and
    its evidence names the step that failed or used the deadline up."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def no_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)

    async def half_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 16_000)
        await writer.drain()
        await asyncio.sleep(30)

    stall_headers = await raw_server(no_headers)

    async def to_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        where = f"http://127.0.0.1:{stall_headers}/"
        writer.write(f"HTTP/1.1 302 Found\r\nLocation: {where}\r\n\r\n".encode())
        await writer.drain()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Each answer just inside the timeout, then a redirect to itself: only the deadline
        ends it."""
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.8)
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: /again\r\n\r\n")
        await writer.drain()

    async with Silent() as dns_server:
        s = settings(
            timeout=1.0,
            throughput_window=0.5,
            stall_after=0.5,
            retries=1,
            retry_pause=0.1,
            max_redirects=20,
            resolvers=(f"127.0.0.1:{dns_server.port}",),
            ca_file=ca_file,
        )
        urls = {
            "dns": "http://silent-resolver.test/",
            "connect": f"http://127.0.0.1:{full_backlog}/",
            "handshake": f"https://127.0.0.1:{await raw_server(silent)}/",
            "headers": f"http://127.0.0.1:{stall_headers}/",
            "body": f"http://127.0.0.1:{await raw_server(half_body)}/",
            "hop": f"http://127.0.0.1:{await raw_server(to_stall)}/",
            "slow": f"http://127.0.0.1:{await raw_server(slow)}/",
        }
        got = await results(s, list(urls.values()))
    for step, url in urls.items():
        result, seconds = got[url]
        m, d = result.measurement, result.diagnosis
        assert seconds <= s.target_bound + 1.0, (step, seconds, s.target_bound)
        assert "a bug" not in d.explanation and "internal error" not in d.explanation
        assert d.verdict == "inconclusive", (step, d.explanation)
        assert m.deadline == s.deadline
    assert got[urls["dns"]][0].measurement.dns[0].failure == "timeout"
    assert got[urls["connect"]][0].measurement.tcp[0].failure == "timeout"
    assert got[urls["handshake"]][0].measurement.tls[0].failure == "timeout"
    assert got[urls["headers"]][0].measurement.http.failure == "timeout"  # type: ignore[union-attr]
    body = got[urls["body"]][0].measurement.http
    assert body is not None and body.failure == "stall" and body.received > 16_000
    hop = got[urls["hop"]][0].measurement
    assert hop.http is not None and hop.http.failure == "timeout" and len(hop.http.hops) == 1
    slow_m = got[urls["slow"]][0].measurement
    assert slow_m.ran_out == "http"
    assert "deadline" in got[urls["slow"]][0].diagnosis.explanation


class Late(DNSServer):
    """Answers `site.test` names with 127.0.0.1 just inside the timeout; nothing else."""

    def handle(self, query: dns.message.Message) -> Replies:
        name = query.question[0].name.to_text()
        if not name.endswith("site.test.") or query.question[0].rdtype != dns.rdatatype.A:
            return []
        return [(0.9, self.answer(query, ["127.0.0.1"]))]


async def test_with_a_control_and_http3_every_stall_ends_within_its_bound(
    raw_server: Callable[[Handler], Awaitable[int]], full_backlog: int, ca_file: str
) -> None:
    """A late DNS answer, then a stalled step; the control's answer never comes, and every
    HTTP/3 attempt goes unanswered: the schedule (measurement, the control's wait, HTTP/3)
    still fits the documented bound of each target."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    control = await raw_server(silent)  # reads the request, never answers
    handshake = await raw_server(silent)
    quiet = []
    for port in (handshake, full_backlog):  # UDP on the same ports: QUIC goes unanswered
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", port))
        quiet.append(udp)
    try:
        async with Late() as dns_server:
            s = settings(
                timeout=1.0,
                throughput_window=0.5,
                stall_after=0.5,
                retries=0,
                quic="always",
                control=f"http://127.0.0.1:{control}",
                resolvers=(f"127.0.0.1:{dns_server.port}",),
                ca_file=ca_file,
            )
            urls = {
                "dns": "https://nowhere.test/",
                "connect": f"https://a.site.test:{full_backlog}/",
                "handshake": f"https://b.site.test:{handshake}/",
            }
            got = await results(s, list(urls.values()))
    finally:
        for udp in quiet:
            udp.close()
    # its deadline, the control's grace, the HTTP/3 path, the ClientHello variants
    assert s.target_bound == 5.0 + 5.0 + 3.5 + 2.0
    for step, url in urls.items():
        result, seconds = got[url]
        assert seconds <= s.target_bound + 0.5, (step, seconds, s.target_bound)
        assert result.control is not None and result.control.measurement is None, step
        assert "control helper did not answer" in result.diagnosis.explanation, step
    quic = got[urls["handshake"]][0].measurement.quic
    assert quic is not None and quic.handshakes and quic.handshakes[0].failure == "timeout"


@asynccontextmanager
async def one_site(
    ca: trustme.CA, name: str, addresses: list[str], delay: float = 0.0
) -> AsyncIterator[int]:
    """One HTTPS site for `name` on every address, the same port (returned): each page says
    which address served it, after a random delay of up to `delay` seconds."""

    async def page(request: web.Request) -> web.Response:
        await asyncio.sleep(random.uniform(0, delay))
        here = request.transport.get_extra_info("sockname")[0]  # type: ignore[union-attr]
        return web.Response(text=f"<title>{name.split('.')[0]}</title>served by {here}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    ctx = server_context(ca, name)
    first = web.TCPSite(runner, addresses[0], 0, ssl_context=ctx)
    await first.start()
    port = int(first._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    for a in addresses[1:]:
        await web.TCPSite(runner, a, port, ssl_context=ctx).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture
async def four_servers(ca: trustme.CA) -> AsyncIterator[tuple[int, list[str]]]:
    """multi.test on 127.0.0.1-4, finishing in any order."""
    addresses = [f"127.0.0.{i}" for i in range(1, 5)]
    async with one_site(ca, "multi.test", addresses, delay=0.02) as port:
        yield port, addresses


class Shuffled(DNSServer):
    """multi.test: four addresses, in a new order for every query."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__()
        self.addresses = addresses

    def handle(self, query: dns.message.Message) -> Replies:
        if query.question[0].rdtype != dns.rdatatype.A:
            return [(0.0, self.answer(query, []))]
        return [(0.0, self.answer(query, random.sample(self.addresses, len(self.addresses))))]


async def test_many_targets_on_one_host_each_fetch_names_an_address_its_own_steps_measured(
    four_servers: tuple[int, list[str]], ca_file: str
) -> None:
    port, addresses = four_servers
    async with Shuffled(addresses) as resolver:
        s = Settings(
            timeout=3.0,
            dns_window=0.05,
            throughput_window=1.0,
            concurrency=40,
            resolvers=(f"127.0.0.1:{resolver.port}",),
            ca_file=ca_file,
        )
        got = await results(s, [f"https://multi.test:{port}/p{i}" for i in range(120)])
    seen = set()
    for result, _ in got.values():
        m = result.measurement
        assert result.verdict == "accessible", result.diagnosis.explanation
        h = m.http
        assert h is not None and h.address is not None
        handshaken = {t.address for t in m.tls if t.failure is None}
        assert h.address in handshaken
        assert f"served by {h.address}" in h.body_sample
        seen.add(h.address)
    assert len(seen) > 1  # the addresses really did take turns


class DualStack(DNSServer):
    """dual.test: 127.0.0.1 and ::1."""

    def handle(self, query: dns.message.Message) -> Replies:
        aaaa = query.question[0].rdtype == dns.rdatatype.AAAA
        return [(0.0, self.answer(query, ["::1"] if aaaa else ["127.0.0.1"]))]


@pytest.fixture
async def dual_stack_origin(ca: trustme.CA) -> AsyncIterator[int]:
    """dual.test on 127.0.0.1 and ::1."""
    async with one_site(ca, "dual.test", ["127.0.0.1", "::1"]) as port:
        yield port


@pytest.mark.parametrize("ipv6", [True, False], ids=["with-ipv6", "without-ipv6"])
async def test_both_families_are_measured_each_on_its_own_connection_unless_ipv6_is_missing(
    dual_stack_origin: int, ca_file: str, ipv6: bool
) -> None:
    async with DualStack() as resolver:
        s = settings(resolvers=(f"127.0.0.1:{resolver.port}",), ca_file=ca_file)
        rt = await Runtime.open(s)
        if not ipv6:  # what the once-per-run check finds on a vantage without IPv6
            rt.network.ipv6_problem = "this vantage has no IPv6 route"
        try:
            t = Target.parse(f"https://dual.test:{dual_stack_origin}/")
            result = await schedule.measure_and_judge(t, rt)
        finally:
            await rt.close()
    m = result.measurement
    assert result.verdict == "accessible", result.diagnosis.explanation
    assert m.http is not None and m.http.family == 4 and "served by 127.0.0.1" in m.http.body_sample
    if ipv6:
        assert sorted(t.family for t in m.tls) == [4, 6]
        assert m.http_ipv6 is not None and "served by ::1" in m.http_ipv6.body_sample
        assert "; over IPv6: accessible (HTTP 200 'dual'" in result.diagnosis.explanation
    else:
        assert [t.family for t in m.tcp] == [4] and m.http_ipv6 is None
        assert "IPv6 not measured: this vantage has no IPv6 route" in m.notes
        assert result.diagnosis.explanation.endswith("IPv6 not measured")
