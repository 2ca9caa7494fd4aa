"""DNS-over-HTTPS (RFC 8484, POST), over the runtime's aiohttp session: imported only when a
DoH resolver is configured."""

from __future__ import annotations

import time

import aiohttp
import dns.message

from probe.measure.clock import within
from probe.measure.dns import MAX_MESSAGE, observe
from probe.measure.failure import classify
from probe.model import DNSObservation
from probe.vocabulary import Failure


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ValueError past `limit` bytes (a read(n) may return fewer than n)."""
    data = bytearray()
    while chunk := await resp.content.read(65536):
        data += chunk
        if len(data) > limit:
            raise ValueError(f"{resp.url}: answer larger than {limit} bytes")
    return bytes(data)


def classify_client_error(exc: Exception) -> tuple[Failure, str]:
    """aiohttp's own exceptions first (those that wrap no OSError), then the common mapping."""
    failure, error = classify(exc)
    if failure is Failure.UNKNOWN:
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            failure = Failure.EOF
        elif isinstance(exc, (aiohttp.ClientResponseError, aiohttp.ClientPayloadError)):
            failure = Failure.PROTOCOL
    return failure, error


async def exchange(wire: bytes, url: str, session: aiohttp.ClientSession, timeout: float) -> bytes:
    """The answer's bytes; ValueError where the server answers no DNS message (an HTTP status
    other than 200, an answer too large for DNS), another exception where the exchange fails."""
    async with (
        within(timeout),
        session.post(
            url,
            data=wire,
            headers={
                "content-type": "application/dns-message",
                "accept": "application/dns-message",
            },
        ) as resp,
    ):
        if resp.status != 200:
            raise ValueError(f"DoH server answered HTTP {resp.status}")
        return await read_capped(resp, MAX_MESSAGE)


async def resolve(
    host: str, qtype: str, url: str, session: aiohttp.ClientSession, timeout: float
) -> DNSObservation:
    query = dns.message.make_query(host, qtype)
    query.id = 0  # RFC 8484 4.1: use 0 for cache friendliness
    start = time.perf_counter()
    try:
        data = await exchange(query.to_wire(), url, session, timeout)
    except ValueError as exc:  # not a DNS answer
        return DNSObservation(
            url, "doh", qtype, time.perf_counter() - start, failure=Failure.PROTOCOL, error=str(exc)
        )
    except Exception as exc:
        failure, error = classify_client_error(exc)
        return DNSObservation(
            url, "doh", qtype, time.perf_counter() - start, failure=failure, error=error
        )
    return observe(url, "doh", qtype, start, query, data)
