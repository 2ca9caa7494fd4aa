"""Send one of our ClientHellos (`probe.measure.hello`) to an address and read the server's
first flight as far as it tells what happened: answered, reset, timeout, eof, or not TLS. A
ClientHello to be split into TCP segments is sent as two writes with a pause between them
(TCP_NODELAY: each write its own segment)."""

from __future__ import annotations

import asyncio
import socket
import time

from probe.measure import tcp
from probe.measure.clock import within
from probe.measure.failure import classify as classify_error
from probe.measure.hello import ANSWERED, MORE, Shape, classify, write
from probe.model import HelloObservation
from probe.policy import AddressPolicy
from probe.vocabulary import Failure

SEGMENT_PAUSE = 0.05  # between the segments of a split ClientHello: each leaves on its own
MAX_FIRST_FLIGHT = 8192  # what is read of an answer, at most: its first record's head suffices


async def send(
    variant: str,
    address: str,
    port: int,
    shape: Shape,
    timeout: float,
    policy: AddressPolicy,
) -> HelloObservation:
    """Connect, send the ClientHello as `shape` says, read until the answer is classified."""
    parts = write(shape)
    size = sum(len(p) for p in parts)
    sni = shape.ech.public_name if shape.ech else shape.sni
    start = time.perf_counter()
    opened, conn = await tcp.connect(address, port, timeout, policy)
    if conn is None:
        return HelloObservation(
            variant,
            address,
            port,
            sni,
            opened.elapsed,
            size,
            opened.failure or Failure.UNKNOWN,
            opened.error or "",
            connected=False,
        )
    try:
        raw = conn.writer.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = b""
        try:
            async with within(max(0.0, timeout - (time.perf_counter() - start))):
                for i, part in enumerate(parts):
                    if i:
                        await asyncio.sleep(SEGMENT_PAUSE)
                    conn.writer.write(part)
                    await conn.writer.drain()
                while True:
                    seen = classify(received)
                    if seen.outcome != MORE:
                        failure = None if seen.outcome == ANSWERED else Failure.PROTOCOL
                        return _seen(variant, conn, sni, start, size, failure, seen.what)
                    data = await conn.reader.read(MAX_FIRST_FLIGHT - len(received))
                    if not data:
                        return _seen(variant, conn, sni, start, size, Failure.EOF, "end of file")
                    received += data
        except TimeoutError:
            waited = f"no answer within {timeout:g} s"
            return _seen(variant, conn, sni, start, size, Failure.TIMEOUT, waited)
        except Exception as exc:
            failure, error = classify_error(exc)
            return _seen(variant, conn, sni, start, size, failure, error)
    finally:
        await conn.close()


def _seen(
    variant: str,
    conn: tcp.Connection,
    sni: str,
    start: float,
    size: int,
    failure: Failure | None,
    answer: str,
) -> HelloObservation:
    elapsed = time.perf_counter() - start
    return HelloObservation(variant, conn.address, conn.port, sni, elapsed, size, failure, answer)
