"""A small authoritative DNS server over UDP and TCP: subclass it and override `handle()`.

The lab runs it as the "internet" resolver of its zone (answering a little late, as distant
resolvers do) and as the ISP's lying resolver; the tests subclass it to answer, refuse, stay
silent, answer twice or answer garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Sequence

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

# What a handler returns: replies, each with a delay in seconds; a reply is a Message or raw bytes.
Replies = Sequence[tuple[float, "dns.message.Message | bytes"]]


# A lab resolver stands for many machines: a round's burst of queries from every vantage would
# overflow a default receive buffer (~200 datagrams), and a query dropped there after the border
# saw it leaves its injection a lone forged answer.
SO_RCVBUFFORCE = 33  # Linux; the socket module does not name it
RECEIVE_BUFFER = 8 << 20


class DNSServer:
    """Serve DNS on (host, port); `handle()` decides what, if anything, goes back and when."""

    keeps_queries = True  # `queries` lists every query (a test's server); off for the lab's

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.queries: list[dns.message.Message] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, query: dns.message.Message) -> Replies:
        """Override: the replies to `query`. The default refuses everything."""
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.REFUSED)
        return [(0.0, reply)]

    @staticmethod
    def answer(
        query: dns.message.Message,
        addresses: Sequence[str],
        ttl: int = 60,
        rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    ) -> dns.message.Message:
        """A reply to `query` with the given addresses of the queried type."""
        reply = dns.message.make_response(query)
        reply.set_rcode(rcode)
        question = query.question[0]
        if addresses:
            reply.answer.append(
                dns.rrset.from_text_list(
                    question.name,
                    ttl,
                    "IN",
                    dns.rdatatype.to_text(question.rdtype),
                    list(addresses),
                )
            )
        return reply

    @property
    def address(self) -> str:
        """`host:port` as the probe's `--resolver` takes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> DNSServer:
        """Bind UDP and TCP on one port; with port 0, retry where TCP finds that port taken."""
        loop = asyncio.get_running_loop()
        attempts = 0
        while True:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDP(self), local_addr=(self.host, self.port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
                break
            except OSError:
                transport.close()
                attempts += 1
                if self.port or attempts == 10:
                    raise
        with contextlib.suppress(OSError):  # only root passes rmem_max; the lab runs as root
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        self._udp, self.port = transport, port
        return self

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> DNSServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def respond(self, query: dns.message.Message) -> Replies:
        """Override instead of `handle()` where answering needs to await (e.g. forwarding)."""
        return self.handle(query)

    async def _replies(self, data: bytes, tcp: bool) -> Replies:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # garbage in: no reply, as a real server would
            return []
        if self.keeps_queries:
            self.queries.append(query)
        replies = await self.respond(query)
        if tcp:
            return replies
        return [
            (delay, self.udp_wire(reply) if isinstance(reply, dns.message.Message) else reply)
            for delay, reply in replies
        ]

    @staticmethod
    def udp_wire(reply: dns.message.Message) -> bytes:
        """The reply as a UDP datagram: over 512 bytes, truncated (RFC 1035: the client asks
        again over TCP)."""
        wire = reply.to_wire()
        if len(wire) > 512:
            reply.flags |= dns.flags.TC
            reply.answer.clear()
            wire = reply.to_wire()
        return wire

    def _answer_udp(self, data: bytes, send: Callable[[bytes], None]) -> None:
        async def go() -> None:
            started = loop.time()
            for delay, reply in sorted(await self._replies(data, tcp=False), key=lambda r: r[0]):
                await asyncio.sleep(max(0.0, delay - (loop.time() - started)))
                send(reply.to_wire() if isinstance(reply, dns.message.Message) else reply)

        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(length)
                for delay, reply in await self._replies(data, tcp=True):
                    await asyncio.sleep(delay)
                    wire = reply.to_wire() if isinstance(reply, dns.message.Message) else reply
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self.transport
        if transport is None:
            return
        self.server._answer_udp(data, lambda wire: transport.sendto(wire, addr))
