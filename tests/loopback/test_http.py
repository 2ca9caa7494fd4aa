"""HTTP against raw servers on 127.0.0.1 that stall, reset, trickle, redirect, never end or lie."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from probe.model import Measurement
from probe.verdict import judge
from tests.conftest import free_port
from tests.loopback.conftest import Handler, measure, reset

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"


async def run(port: int, path: str = "/", **kw: object) -> Measurement:
    return await measure(f"http://127.0.0.1:{port}{path}", **kw)


async def request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_page_is_recorded_with_title_length_hash_and_headers(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    body = b"<html><head><title> Hello &amp; welcome </title></head><body>hi</body></html>"

    async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        writer.write(HEAD + b"Server: test-origin\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    m = await run(await raw_server(ok))
    h = m.http
    assert h is not None
    assert (h.status, h.title, h.body_length) == (200, "Hello & welcome", len(body))
    assert h.body_sha256 == hashlib.sha256(body).hexdigest()
    assert h.headers["server"] == "test-origin"
    assert h.address == "127.0.0.1"
    assert h.ttfb is not None
    assert judge(m).verdict == "accessible"


async def test_stalled_server_times_out_within_the_step_timeout(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        await asyncio.sleep(10)

    start = time.perf_counter()
    m = await run(await raw_server(stall), timeout=0.5)
    assert m.http is not None and m.http.failure == "timeout"
    assert time.perf_counter() - start < 10  # bounded by the timeout, not the server's 10 s
    verdict = judge(m)
    assert verdict.verdict == "inconclusive"
    assert "HTTP" in verdict.explanation and "timeout" in verdict.explanation


async def test_reset_after_the_request_is_reset(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def rst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        reset(writer)

    m = await run(await raw_server(rst))
    assert m.http is not None and m.http.failure == "reset"
    assert judge(m).verdict == "inconclusive"  # no control: an outage looks the same


async def test_trickling_body_yields_a_rate_not_a_timeout(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    """A flowing but slow download ends at the throughput window with a measured rate."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        writer.write(HEAD + b"Content-Length: 1000000\r\n\r\n")
        for _ in range(100):
            writer.write(b"x" * 100)
            await writer.drain()
            await asyncio.sleep(0.05)

    m = await run(await raw_server(trickle), throughput_window=1.0)
    h = m.http
    assert h is not None
    assert h.failure is None
    assert h.truncated == "window"
    # about 2,000 B/s; anything that flows but slowly will do on a busy machine
    assert h.throughput is not None and 200 < h.throughput < 20_000


async def test_redirects_are_followed_and_every_hop_recorded(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await request(reader)).split(b"\r\n")[0]
        if b" / " in line:
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n")
        elif b" /next " in line:
            writer.write(b"HTTP/1.1 301 Moved\r\nLocation: /final\r\nContent-Length: 0\r\n\r\n")
        else:
            writer.write(HEAD + b"Content-Length: 30\r\n\r\n<html><title>End</title></html>"[:30])
        await writer.drain()

    m = await run(await raw_server(redirect))
    h = m.http
    assert h is not None
    assert [(hop.status, hop.location) for hop in h.hops] == [(302, "/next"), (301, "/final")]
    assert h.final_url is not None and h.final_url.endswith("/final")
    assert h.status == 200


async def test_redirect_loop_ends_after_the_limit(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    m = await run(await raw_server(loop), max_redirects=3)
    assert m.http is not None
    assert m.http.failure == "protocol" and "redirects" in (m.http.error or "")
    assert len(m.http.hops) == 4


async def test_endless_body_is_capped(raw_server: Callable[[Handler], Awaitable[int]]) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        writer.write(HEAD + b"\r\n")
        chunk = b"y" * 65536
        while True:
            writer.write(chunk)
            await writer.drain()

    m = await run(await raw_server(endless), body_cap=200_000)
    h = m.http
    assert h is not None
    assert (h.failure, h.truncated, h.body_length) == (None, "cap", 200_000)
    assert h.throughput is not None and h.throughput > 0


async def test_giant_headers_are_a_protocol_failure(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def giant(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"a" * 100_000 + b"\r\n\r\n")
        await writer.drain()

    m = await run(await raw_server(giant))
    assert m.http is not None and m.http.failure == "protocol"


async def test_garbage_status_line_is_a_protocol_failure(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request(reader)
        writer.write(b"\x16\x03\x01garbage\r\n\r\n")
        await writer.drain()

    m = await run(await raw_server(garbage))
    assert m.http is not None and m.http.failure == "protocol"


async def test_nothing_listening_is_refused_at_tcp() -> None:
    m = await run(free_port())
    assert [o.failure for o in m.tcp] == ["refused"]
    assert m.http is None
    assert judge(m).summary == "TCP refused"


async def test_a_chunked_page_from_a_real_server_is_read_whole(
    web_server: Callable[..., Awaitable[int]],
) -> None:
    """aiohttp streams without a length, in chunks: the body is the page, gzip decoded."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.enable_compression()
        await resp.prepare(request)
        for i in range(50):
            await resp.write(f"<title>chunked</title> part {i} ".encode() * 10)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", chunked)
    m = await run(await web_server(app))
    h = m.http
    assert h is not None and h.failure is None
    assert h.headers.get("transfer-encoding") == "chunked"
    assert h.headers.get("content-encoding") in ("gzip", "deflate")
    assert (h.title, h.body_length) == (
        "chunked",
        sum(len(f"<title>chunked</title> part {i} ") * 10 for i in range(50)),
    )
