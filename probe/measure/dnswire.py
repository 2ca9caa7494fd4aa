"""DNS messages on the wire, without a DNS library: the UDP listener of a query that waits for
every answer, a resolver shared by many queries, an exchange over TCP. Asking a target's HTTPS
record this way costs a `check` no import of dnspython where the answer holds no record (most
names), and no socket of its own.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time

from probe.measure.clock import within

MAX_REPLIES = 16  # replies kept per query; more are counted in `dropped`
MAX_READS = 256  # datagrams read from a shared socket per wake-up (the loop's other work goes on)
RESEND = 1.0  # seconds before a query over UDP is sent again
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class Listener(asyncio.DatagramProtocol):
    """Collects the datagrams for one query (up to the cap), and notes an ICMP error."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[float, bytes]] = []
        self.dropped = 0
        self.icmp_error: OSError | None = None
        self.icmp_time: float | None = None
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(self.datagrams) >= MAX_REPLIES:
            self.dropped += 1
            return
        self.datagrams.append((time.perf_counter(), data))
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and self.icmp_error is None:
            self.icmp_error = exc
            self.icmp_time = time.perf_counter()
        self.arrived.set()


def connected_udp(address: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to an address literal. Made here, not by the event
    loop's `create_datagram_endpoint(remote_addr=...)`: uvloop resolves that address in its
    thread pool, behind every getaddrinfo of the system resolver under way (a busy run's queue
    of seconds, counted as the query's time)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((address, port))  # a literal: no lookup
    except OSError:
        sock.close()
        raise
    return sock


def query(name: str, qtype: int, *, message_id: int | None = None) -> bytes:
    """A query for `name` (ASCII, checked by `model.check_host`), recursion desired."""
    labels = b"".join(
        struct.pack("!B", len(label)) + label.encode("ascii")
        for label in name.rstrip(".").split(".")
    )
    ident = random.getrandbits(16) if message_id is None else message_id
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def answers(query_wire: bytes, reply: bytes) -> bool:
    """`reply` is a response to `query_wire`: its id, the QR bit, the same question."""
    return (
        len(reply) >= len(query_wire)
        and reply[:2] == query_wire[:2]
        and bool(reply[2] & 0x80)
        and reply[12 : len(query_wire)].lower() == query_wire[12:].lower()
    )


def header(reply: bytes) -> tuple[str, int, bool]:
    """A response's rcode (its name), answer count, and whether it is truncated."""
    rcode = reply[3] & 0x0F
    return RCODES.get(rcode, f"RCODE{rcode}"), int.from_bytes(reply[6:8], "big"), bool(reply[2] & 2)


class _Query:
    """A query on a shared socket: its message, its answer to come, its next resend."""

    __slots__ = ("again", "answer", "wire")

    def __init__(self, wire: bytes, answer: asyncio.Future[bytes]) -> None:
        self.wire, self.answer = wire, answer
        self.again: asyncio.TimerHandle | None = None


class _Socket:
    """One UDP socket connected to a resolver, and the queries pending on it, by id. Read by
    the event loop's reader callback: opening one takes no pause, so a burst of queries opens
    only the sockets it fills."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = connected_udp(address, port)
        self.pending: dict[int, _Query] = {}
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.open = True

    def _readable(self) -> None:
        for _ in range(MAX_READS):
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as exc:  # an ICMP error (no resolver at that address)
                for asked in self.pending.values():
                    if not asked.answer.done():
                        asked.answer.set_exception(exc)
                continue
            mine = self.pending.get(int.from_bytes(data[:2], "big"))
            if mine is not None and answers(mine.wire, data) and not mine.answer.done():
                mine.answer.set_result(data)

    def send(self, asked: _Query) -> None:
        """A query, now and again every RESEND seconds until its answer."""
        try:
            self.sock.send(asked.wire)
        except OSError as exc:  # an ICMP error reported here, a full buffer
            if not asked.answer.done():
                asked.answer.set_exception(exc)
            return
        asked.again = self.loop.call_later(RESEND, self.send, asked)

    def close(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class Resolver:
    """The UDP sockets to one resolver that the queries of a process share (the targets' HTTPS
    records): a socket per query was most of a query's cost. A socket carries at most PER_SOCKET
    queries at once (their replies fit its receive buffer: one socket for a burst of hundreds
    drops replies), another is opened where all are full. A reply is matched by its id (random,
    unique on its socket) and its question; a query is sent again every RESEND seconds (a
    datagram may be lost, as a stub resolver assumes) until its timeout; an ICMP error (no
    resolver at that address) fails the queries pending on that socket."""

    PER_SOCKET = 64

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.sockets: list[_Socket] = []

    async def ask(self, name: str, qtype: int, timeout: float) -> tuple[bytes, bytes]:
        """The query sent and the reply; TimeoutError, or the OSError of an ICMP error."""
        carrier = self._socket()
        ident = random.getrandbits(16)
        while ident in carrier.pending:
            ident = random.getrandbits(16)
        asked = _Query(query(name, qtype, message_id=ident), carrier.loop.create_future())
        carrier.pending[ident] = asked
        try:
            carrier.send(asked)
            async with within(timeout):
                return asked.wire, await asked.answer
        finally:
            if asked.again is not None:
                asked.again.cancel()
                asked.again = None  # the timer holds the query: no cycle left to collect
            del carrier.pending[ident]

    def _socket(self) -> _Socket:
        """A socket with room for one more query."""
        for carrier in self.sockets:
            if len(carrier.pending) < self.PER_SOCKET:
                return carrier
        carrier = _Socket(self.address, self.port)
        self.sockets.append(carrier)
        return carrier

    def close(self) -> None:
        for carrier in self.sockets:
            carrier.close()
        self.sockets.clear()


async def exchange_tcp(wire: bytes, address: str, port: int, timeout: float) -> bytes:
    """One message over TCP (RFC 1035 4.2.2: a two-byte length before each)."""
    async with within(timeout):
        reader, writer = await asyncio.open_connection(address, port)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()
