"""TCP: connect to one address under the address policy, and the connection the later steps
ride on (plain, or TLS once `probe.measure.tls.handshake` secured it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time

from probe.measure.clock import within
from probe.measure.failure import classify
from probe.model import TCPObservation
from probe.policy import AddressPolicy
from probe.vocabulary import Failure

CLOSE_WAIT = 1.0  # how long closing may wait for a peer that never acknowledges
READ_SIZE = 1 << 16


class Connection:
    """An open connection: bytes in and out, in the clear or through TLS (`secure`).

    TLS runs over memory buffers (`ssl.SSLObject`) rather than asyncio's own TLS transport, so
    that the connection whose TCP step was measured is the one TLS secures, the records' framing
    is followed (`record_incomplete`), and what waits to be read is always visible (`pending`)."""

    def __init__(
        self, address: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.address = address
        self.port = port
        self.reader = reader
        self.writer = writer
        self.tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.wire = 0  # bytes received, TLS records included
        self.arrival: float | None = None  # perf_counter() when the last of them arrived
        self._left = 0  # bytes of the TLS record under way still to come
        self._head = b""  # the part of a record's 5-byte header that has arrived

    def secure(self, context: ssl.SSLContext, sni: str) -> ssl.SSLObject:
        """The TLS object for a handshake on this connection (not yet done)."""
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=sni)
        return self.tls

    def flush(self) -> None:
        """Send what TLS has produced."""
        if self._outgoing.pending:
            self.writer.write(self._outgoing.read())

    async def receive(self) -> bool:
        """Feed the next bytes from the network to TLS; False at EOF."""
        data = self._arrived(await self.reader.read(READ_SIZE))
        if data:
            self._incoming.write(data)
            self._frame(data)
        else:
            self._incoming.write_eof()
        return bool(data)

    def _arrived(self, data: bytes) -> bytes:
        if data:
            self.wire += len(data)
            self.arrival = time.perf_counter()
        return data

    def _frame(self, data: bytes) -> None:
        """Follow the TLS record boundaries (their headers travel in the clear), so that a record
        cut short — a response that began, then froze — is told from complete records that
        carried no data (session tickets)."""
        i, n = 0, len(data)
        while i < n:
            if self._left:
                step = min(self._left, n - i)
                self._left -= step
                i += step
                continue
            take = data[i : i + 5 - len(self._head)]
            self._head += take
            i += len(take)
            if len(self._head) == 5:
                self._left = int.from_bytes(self._head[3:5], "big")
                self._head = b""

    @property
    def record_incomplete(self) -> bool:
        """Part of a TLS record has arrived and the rest has not."""
        return bool(self._left or self._head)

    async def read(self) -> bytes:
        """The next bytes of the stream, b"" at its end."""
        if self.tls is None:
            return self._arrived(await self.reader.read(READ_SIZE))
        while True:
            try:
                return self.tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                self.flush()
                await self.receive()
            except ssl.SSLZeroReturnError:  # close_notify: the orderly end
                return b""

    def write(self, data: bytes) -> None:
        if self.tls is None:
            self.writer.write(data)
        else:
            self.tls.write(data)
            self.flush()

    async def drain(self) -> None:
        await self.writer.drain()

    def pending(self) -> bool:
        """Whether bytes wait to be read: in TLS's buffers, the reader's, or the kernel's (a
        busy event loop may not have handed them over yet)."""
        if self.tls is not None and (self.tls.pending() or self._incoming.pending):
            return True
        if self.reader._buffer:  # type: ignore[attr-defined]  # asyncio has no public accessor
            return True
        raw = self.writer.get_extra_info("socket")
        if raw is None:
            return False
        try:
            with socket.socket(fileno=os.dup(raw.fileno())) as sock:
                sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # data, or b"" for a FIN
        except BlockingIOError:  # nothing there
            return False
        except OSError:  # a reset waits, or the socket is gone: reading will say which
            return True
        return True

    async def close(self) -> None:
        """Close without waiting long on a peer that may never acknowledge."""
        self.writer.close()
        # the peer reset or vanished: nothing left to close
        with contextlib.suppress(Exception):
            async with within(CLOSE_WAIT):
                await self.writer.wait_closed()


async def connect(
    address: str, port: int, timeout: float, policy: AddressPolicy
) -> tuple[TCPObservation, Connection | None]:
    """Open a connection, unless the policy refuses the address; the caller closes it."""
    if not policy.allows(address):
        return TCPObservation(
            address,
            port,
            0.0,
            Failure.FORBIDDEN,
            f"{address}: a special-purpose address, refused by the address policy",
        ), None
    start = time.perf_counter()
    try:
        async with within(timeout):
            reader, writer = await asyncio.open_connection(address, port, limit=READ_SIZE)
    except Exception as exc:
        failure, error = classify(exc)
        return TCPObservation(address, port, time.perf_counter() - start, failure, error), None
    elapsed = time.perf_counter() - start
    return TCPObservation(address, port, elapsed), Connection(address, port, reader, writer)
