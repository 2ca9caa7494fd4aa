"""A response that begins and then stops (Russia's 16-20 KB freeze) is a stall; what only looks
like one is not: a late first byte, session tickets and then silence, a TLS record that trickles
in slowly. Raw TLS servers on 127.0.0.1 that send exactly the bytes each case needs."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import trustme

from tests.loopback.conftest import Handler, measure, server_context

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n"
PAGE = b"<html><head><title>frozen</title></head><body>" + b"x" * 30_000 + b"</body></html>"
FAST = {"timeout": 2.0, "stall_after": 0.5, "throughput_window": 1.0}


class TLSPeer:
    """The server's side of TLS over memory buffers: the test decides which encrypted bytes go
    out, and when."""

    def __init__(
        self, ctx: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.reader, self.writer = reader, writer

    async def _more(self) -> None:
        self.flush()
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("the client went away")
        self.incoming.write(data)

    def flush(self) -> None:
        if self.outgoing.pending:
            self.writer.write(self.outgoing.read())

    async def request(self) -> None:
        """Shake hands and read the request (which sends TLS 1.3's session tickets)."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._more()
        got = b""
        while b"\r\n\r\n" not in got:
            try:
                got += self.tls.read(65536)
            except ssl.SSLWantReadError:
                await self._more()
        self.flush()

    def seal(self, data: bytes) -> bytes:
        """`data` as the TLS records that would carry it."""
        self.tls.write(data)
        return self.outgoing.read()


async def tls_server(
    raw_server: Callable[[Handler], Awaitable[int]],
    ca: trustme.CA,
    then: Callable[[TLSPeer], Awaitable[None]],
) -> str:
    ctx = server_context(ca, "127.0.0.1")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = TLSPeer(ctx, reader, writer)
        await peer.request()
        await writer.drain()
        await then(peer)

    return f"https://127.0.0.1:{await raw_server(handler)}/"


async def test_a_freeze_inside_the_first_tls_record_is_a_stall(
    raw_server: Callable[[Handler], Awaitable[int]], ca: trustme.CA, ca_file: str
) -> None:
    """Half of the record carrying the whole response arrives; not one byte can be read."""

    async def freeze(peer: TLSPeer) -> None:
        records = peer.seal(HEAD % len(PAGE) + PAGE[:8000])
        peer.writer.write(records[: len(records) // 2])
        await peer.writer.drain()
        await asyncio.sleep(30)

    h = (await measure(await tls_server(raw_server, ca, freeze), ca_file=ca_file, **FAST)).http
    assert h is not None and h.failure == "stall", h
    assert h.received == 0 and h.received_wire >= 4000
    assert h.error is not None and "part of a TLS record arrived" in h.error


async def test_a_freeze_after_several_records_is_a_stall_with_the_bytes_that_arrived(
    raw_server: Callable[[Handler], Awaitable[int]], ca: trustme.CA, ca_file: str
) -> None:
    async def freeze(peer: TLSPeer) -> None:
        peer.writer.write(peer.seal(HEAD % len(PAGE) + PAGE[:20_000]))
        await peer.writer.drain()
        await asyncio.sleep(30)

    h = (await measure(await tls_server(raw_server, ca, freeze), ca_file=ca_file, **FAST)).http
    assert h is not None and h.failure == "stall", h
    assert h.status == 200 and h.received > 20_000 and h.received_wire > h.received
    assert h.last_byte is not None and h.last_byte < 1.0  # it froze early; the error says when


async def test_session_tickets_then_silence_is_a_timeout_not_a_stall(
    raw_server: Callable[[Handler], Awaitable[int]], ca: trustme.CA, ca_file: str
) -> None:
    """TLS 1.3 sends tickets after the handshake: bytes arrive, but not of the response."""

    async def silent(peer: TLSPeer) -> None:
        await asyncio.sleep(30)

    h = (await measure(await tls_server(raw_server, ca, silent), ca_file=ca_file, **FAST)).http
    assert h is not None and h.failure == "timeout", h
    assert h.received == 0 and h.received_wire > 0  # the tickets did arrive


async def test_a_record_that_trickles_in_slowly_is_not_a_stall(
    raw_server: Callable[[Handler], Awaitable[int]], ca: trustme.CA, ca_file: str
) -> None:
    """Throttled: each 8 KB record takes longer than `stall_after` to arrive, its bytes never
    pausing that long. The response is moving, so the download ends at the throughput window."""

    async def trickle(peer: TLSPeer) -> None:
        records = peer.seal(HEAD % 1_000_000 + b"x" * 8000) + peer.seal(b"y" * 8000) * 3
        for i in range(0, len(records), 500):
            peer.writer.write(records[i : i + 500])
            await peer.writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(30)

    h = (await measure(await tls_server(raw_server, ca, trickle), ca_file=ca_file, **FAST)).http
    assert h is not None and h.failure is None, h
    assert h.truncated == "window" and h.status == 200


async def test_a_late_first_byte_then_the_whole_page_is_not_a_stall(
    raw_server: Callable[[Handler], Awaitable[int]], ca: trustme.CA, ca_file: str
) -> None:
    async def late(peer: TLSPeer) -> None:
        await asyncio.sleep(1.2)  # past stall_after, within the timeout
        peer.writer.write(peer.seal(HEAD % len(PAGE) + PAGE))
        await peer.writer.drain()

    h = (await measure(await tls_server(raw_server, ca, late), ca_file=ca_file, **FAST)).http
    assert h is not None and h.failure is None, h
    assert h.body_length == len(PAGE)


async def test_a_freeze_inside_the_headers_of_plain_http_is_a_stall(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def freeze(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: " + b"c" * 3000)
        await writer.drain()
        await asyncio.sleep(30)

    h = (await measure(f"http://127.0.0.1:{await raw_server(freeze)}/", **FAST)).http
    assert h is not None and h.failure == "stall", h
    assert h.status is None and h.received > 3000
