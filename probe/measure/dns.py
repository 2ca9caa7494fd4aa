"""DNS: the system resolver, plain UDP (listening for every answer), TCP on truncation, and DoH.

Over UDP the socket stays open `window` seconds after the first answer: an on-path injector
answers first and the real resolver later, so two different answers to one query are the
evidence of injection. An ICMP port-unreachable from an address that also "answered" means
something on the path answered for a host that runs no resolver.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

import aiohttp
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from probe.config import parse_resolver_address
from probe.measure.failure import classify, describe
from probe.measure.http import read_capped
from probe.model import DNSObservation, DNSResponse

_RCODE_FAILURES = {"NXDOMAIN": "nxdomain", "SERVFAIL": "servfail", "REFUSED": "refused"}
MAX_DOH_BODY = 65535


async def resolve(
    host: str,
    resolver: str,
    *,
    timeout: float,
    window: float,
    session: aiohttp.ClientSession | None = None,
) -> list[DNSObservation]:
    """Ask one resolver for the A and AAAA records of `host`."""
    if resolver == "system":
        return [await resolve_system(host, timeout)]
    if resolver.startswith("https://"):
        if session is None:
            raise ValueError("DoH needs an aiohttp session")
        return list(
            await asyncio.gather(
                *(resolve_doh(host, q, resolver, session, timeout) for q in ("A", "AAAA"))
            )
        )
    address, port = parse_resolver_address(resolver)
    return list(
        await asyncio.gather(
            *(
                resolve_udp(host, q, address, port, timeout=timeout, window=window, label=resolver)
                for q in ("A", "AAAA")
            )
        )
    )


async def resolve_system(host: str, timeout: float) -> DNSObservation:
    """getaddrinfo, as an application on this machine resolves (/etc/hosts, nsswitch...)."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except Exception as exc:
        failure, error = classify(exc)
        return DNSObservation(
            "system", "system", "A+AAAA", time.perf_counter() - start, failure=failure, error=error
        )
    addresses: list[str] = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    return DNSObservation(
        "system",
        "system",
        "A+AAAA",
        time.perf_counter() - start,
        rcode="NOERROR",
        addresses=tuple(addresses),
        failure=None if addresses else "no_answer",
    )


class _Listener(asyncio.DatagramProtocol):
    """Collects every datagram for one query, and notes an ICMP error."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[float, bytes]] = []
        self.icmp_error: OSError | None = None
        self.icmp_time: float | None = None
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams.append((time.perf_counter(), data))
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and self.icmp_error is None:
            self.icmp_error = exc
            self.icmp_time = time.perf_counter()
        self.arrived.set()


async def resolve_udp(
    host: str,
    qtype: str,
    address: str,
    port: int = 53,
    *,
    timeout: float,
    window: float,
    label: str | None = None,
) -> DNSObservation:
    """One UDP query; every reply that arrives until `window` after the first is recorded."""
    label = label or address
    query = dns.message.make_query(host, qtype)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = start + timeout
    listener = _Listener()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: listener, remote_addr=(address, port)
        )
    except Exception as exc:
        failure, error = classify(exc)
        return DNSObservation(
            label, "udp", qtype, time.perf_counter() - start, failure=failure, error=error
        )
    responses: list[DNSResponse] = []
    first_valid: dns.message.Message | None = None
    until = deadline
    try:
        transport.sendto(query.to_wire())
        handled = 0
        while True:
            for arrived, data in listener.datagrams[handled:]:
                response, message = _parse_reply(query, data, arrived - start)
                responses.append(response)
                if message is not None and first_valid is None:
                    first_valid = message
                    until = min(until, arrived + window)
            handled = len(listener.datagrams)
            if listener.icmp_time is not None:
                until = min(until, listener.icmp_time + window)
            remaining = until - time.perf_counter()
            if remaining <= 0:
                break
            # datagram_received runs only while we await: nothing arrives between here and there
            listener.arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await listener.arrived.wait()
            except TimeoutError:
                pass
    finally:
        transport.close()

    unreachable = listener.icmp_error is not None
    if first_valid is not None and first_valid.flags & dns.flags.TC:
        return await _tcp_fallback(
            query, address, port, label, qtype, start, deadline, responses, unreachable
        )
    return _observation(
        label, "udp", qtype, start, first_valid, responses, unreachable, listener.icmp_error
    )


def _parse_reply(
    query: dns.message.Message, data: bytes, elapsed: float
) -> tuple[DNSResponse, dns.message.Message | None]:
    try:
        message = dns.message.from_wire(data, ignore_trailing=True)
    except Exception as exc:  # dnspython raises many types on hostile bytes
        return DNSResponse(round(elapsed, 6), error=f"malformed reply: {describe(exc)}"), None
    if not query.is_response(message):
        return DNSResponse(round(elapsed, 6), error="reply does not match the query"), None
    addresses, ttl = _addresses(message, query.question[0].rdtype)
    return DNSResponse(
        round(elapsed, 6), dns.rcode.to_text(message.rcode()), addresses, ttl
    ), message


def _addresses(message: dns.message.Message, rdtype: int) -> tuple[tuple[str, ...], int | None]:
    addresses: list[str] = []
    ttls: list[int] = []
    for rrset in message.answer:
        if rrset.rdtype == rdtype:
            ttls.append(rrset.ttl)
            addresses.extend(rd.to_text() for rd in rrset if rd.to_text() not in addresses)
    return tuple(addresses), (min(ttls) if ttls else None)


async def _tcp_fallback(
    query: dns.message.Message,
    address: str,
    port: int,
    label: str,
    qtype: str,
    start: float,
    deadline: float,
    responses: list[DNSResponse],
    unreachable: bool,
) -> DNSObservation:
    """The UDP answer was truncated: ask again over TCP, keeping the UDP replies as evidence."""
    try:
        message = await dns.asyncquery.tcp(
            query, address, timeout=max(0.1, deadline - time.perf_counter()), port=port
        )
    except Exception as exc:
        failure, error = (
            classify(exc)
            if not isinstance(exc, dns.exception.Timeout)
            else ("timeout", describe(exc))
        )
        if failure == "unknown" and isinstance(exc, dns.exception.DNSException):
            failure = "protocol"
        return DNSObservation(
            label,
            "tcp",
            qtype,
            time.perf_counter() - start,
            failure=failure,
            error=f"TCP retry after a truncated UDP answer: {error}",
            responses=tuple(responses),
            port_unreachable=unreachable,
        )
    addresses, ttl = _addresses(message, query.question[0].rdtype)
    responses.append(
        DNSResponse(
            round(time.perf_counter() - start, 6),
            dns.rcode.to_text(message.rcode()),
            addresses,
            ttl,
        )
    )
    return _observation(label, "tcp", qtype, start, message, responses, unreachable, None)


def _observation(
    label: str,
    transport: str,
    qtype: str,
    start: float,
    message: dns.message.Message | None,
    responses: Sequence[DNSResponse],
    unreachable: bool,
    icmp_error: OSError | None,
) -> DNSObservation:
    elapsed = time.perf_counter() - start
    if message is None:
        if icmp_error is not None:
            failure, error = classify(icmp_error)
            if failure == "refused":  # ICMP port unreachable: no resolver at that address
                failure, error = "unreachable", "ICMP port unreachable: no resolver at that address"
        elif responses:
            failure, error = "protocol", "only malformed or unrelated replies arrived"
        else:
            failure, error = "timeout", "no reply"
        return DNSObservation(
            label,
            transport,
            qtype,
            elapsed,
            failure=failure,
            error=error,
            responses=tuple(responses),
            port_unreachable=unreachable,
        )
    rcode = dns.rcode.to_text(message.rcode())
    addresses, ttl = _addresses(message, dns.rdatatype.from_text(qtype))
    outcome = _RCODE_FAILURES.get(rcode)
    if outcome is None and rcode != "NOERROR":
        outcome = "protocol"
    if outcome is None and not addresses:
        outcome = "no_answer"
    return DNSObservation(
        label,
        transport,
        qtype,
        elapsed,
        rcode=rcode,
        addresses=addresses,
        ttl=ttl,
        failure=outcome,
        error=None if outcome is None else rcode,
        responses=tuple(responses),
        port_unreachable=unreachable,
    )


async def resolve_doh(
    host: str, qtype: str, url: str, session: aiohttp.ClientSession, timeout: float
) -> DNSObservation:
    """RFC 8484 over POST."""
    query = dns.message.make_query(host, qtype)
    query.id = 0  # RFC 8484 4.1: use 0 for cache friendliness
    start = time.perf_counter()
    try:
        async with (
            asyncio.timeout(timeout),
            session.post(
                url,
                data=query.to_wire(),
                headers={
                    "content-type": "application/dns-message",
                    "accept": "application/dns-message",
                },
            ) as resp,
        ):
            if resp.status != 200:
                return DNSObservation(
                    url,
                    "doh",
                    qtype,
                    time.perf_counter() - start,
                    failure="protocol",
                    error=f"DoH server answered HTTP {resp.status}",
                )
            data = await read_capped(resp, MAX_DOH_BODY)
    except Exception as exc:
        # an answer too large for DNS is not DNS
        failure, error = ("protocol", str(exc)) if isinstance(exc, ValueError) else classify(exc)
        return DNSObservation(
            url, "doh", qtype, time.perf_counter() - start, failure=failure, error=error
        )
    response, message = _parse_reply(query, data, time.perf_counter() - start)
    return _observation(url, "doh", qtype, start, message, [response], False, None)
