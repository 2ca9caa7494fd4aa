"""DNS: plain UDP to an address (listening for every answer), with TCP when the answer is
truncated. The system resolver is `probe.measure.system`, DNS-over-HTTPS `probe.measure.doh`.

Over UDP the socket stays open `window` seconds after the first answer: an on-path injector
answers first and the real resolver later, so two different answers to one query are the
evidence of injection. An ICMP port-unreachable from an address that also "answered" means
something on the path answered for a host that runs no resolver. A flood of replies (an injector,
or an attacker) is bounded: the first `dnswire.MAX_REPLIES` are kept, the rest only counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from probe.measure.clock import within
from probe.measure.dnswire import RESEND, Listener, connected_udp, exchange_tcp
from probe.measure.failure import classify, describe
from probe.measure.system import MAX_ADDRESSES
from probe.model import DNSObservation, DNSResponse
from probe.vocabulary import Failure

RCODE_FAILURES = {
    "NXDOMAIN": Failure.NXDOMAIN,
    "SERVFAIL": Failure.SERVFAIL,
    "REFUSED": Failure.REFUSED,
}
MAX_MESSAGE = 65535


async def resolve_udp(
    host: str,
    qtype: str,
    address: str,
    port: int = 53,
    *,
    timeout: float,
    window: float,
    label: str | None = None,
    resend: bool = True,
) -> DNSObservation:
    """One UDP query, sent again every RESEND seconds until an answer comes (one lost datagram
    is no censorship) unless `resend` is off (a remote measurement's contacts are paced: each
    datagram is one); every reply that arrives until `window` after the first is recorded."""
    label = label or address
    query = dns.message.make_query(host, qtype)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = start + timeout
    listener = Listener()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: listener, sock=connected_udp(address, port)
        )
    except Exception as exc:
        failure, error = classify(exc)
        return DNSObservation(
            label, "udp", qtype, time.perf_counter() - start, failure=failure, error=error
        )
    responses: list[DNSResponse] = []
    first_valid: dns.message.Message | None = None
    until = deadline
    wire = query.to_wire()
    again = start + RESEND if resend else deadline
    try:
        transport.sendto(wire)
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
            now = time.perf_counter()
            if now >= until:
                break
            if first_valid is None and listener.icmp_time is None and now >= again:
                transport.sendto(wire)  # a datagram may be lost: asked again, as a stub does
                again = now + RESEND
            wake = until if first_valid is not None else min(until, again)
            # datagram_received runs only while we await: nothing arrives between here and there
            listener.arrived.clear()
            try:
                async with within(wake - now):
                    await listener.arrived.wait()
            except TimeoutError:
                pass
    finally:
        transport.close()

    if first_valid is not None and first_valid.flags & dns.flags.TC:
        return await _tcp_fallback(
            query, address, port, label, qtype, start, deadline, responses, listener
        )
    return _observation(label, "udp", qtype, start, first_valid, responses, listener)


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
    return tuple(addresses[:MAX_ADDRESSES]), (min(ttls) if ttls else None)


async def query_tcp(
    query: dns.message.Message, address: str, port: int, timeout: float
) -> dns.message.Message:
    """One query over TCP."""
    message = dns.message.from_wire(await exchange_tcp(query.to_wire(), address, port, timeout))
    if not query.is_response(message):
        raise ValueError("the TCP reply does not match the query")
    return message


async def _tcp_fallback(
    query: dns.message.Message,
    address: str,
    port: int,
    label: str,
    qtype: str,
    start: float,
    deadline: float,
    responses: list[DNSResponse],
    listener: Listener,
) -> DNSObservation:
    """The UDP answer was truncated: ask again over TCP, keeping the UDP replies as evidence."""
    try:
        message = await query_tcp(query, address, port, max(0.1, deadline - time.perf_counter()))
    except Exception as exc:
        failure, error = classify(exc)
        if failure is Failure.UNKNOWN and isinstance(exc, dns.exception.DNSException):
            failure = Failure.PROTOCOL
        return DNSObservation(
            label,
            "tcp",
            qtype,
            time.perf_counter() - start,
            failure=failure,
            error=f"TCP retry after a truncated UDP answer: {error}",
            responses=tuple(responses),
            port_unreachable=listener.icmp_error is not None,
            replies_dropped=listener.dropped,
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
    return _observation(label, "tcp", qtype, start, message, responses, listener)


def _observation(
    label: str,
    transport: str,
    qtype: str,
    start: float,
    message: dns.message.Message | None,
    responses: Sequence[DNSResponse],
    listener: Listener | None,
) -> DNSObservation:
    elapsed = time.perf_counter() - start
    icmp_error = listener.icmp_error if listener is not None else None
    kept, unreachable = tuple(responses), icmp_error is not None
    dropped = listener.dropped if listener is not None else 0
    if message is None:
        if icmp_error is not None:
            failure, error = classify(icmp_error)
            if failure is Failure.REFUSED:  # ICMP port unreachable: no resolver at that address
                failure = Failure.UNREACHABLE
                error = "ICMP port unreachable: no resolver at that address"
        elif responses:
            failure, error = Failure.PROTOCOL, "only malformed or unrelated replies arrived"
        else:
            failure, error = Failure.TIMEOUT, "no reply"
        return DNSObservation(
            label,
            transport,
            qtype,
            elapsed,
            failure=failure,
            error=error,
            responses=kept,
            port_unreachable=unreachable,
            replies_dropped=dropped,
        )
    rcode = dns.rcode.to_text(message.rcode())
    addresses, ttl = _addresses(message, dns.rdatatype.from_text(qtype))
    outcome = RCODE_FAILURES.get(rcode)
    if outcome is None and rcode != "NOERROR":
        outcome = Failure.PROTOCOL
    if outcome is None and not addresses:
        outcome = Failure.NO_ANSWER
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
        responses=kept,
        port_unreachable=unreachable,
        replies_dropped=dropped,
    )


def observe(
    label: str, transport: str, qtype: str, start: float, query: dns.message.Message, data: bytes
) -> DNSObservation:
    """The observation for one reply that arrived whole (DoH)."""
    response, message = _parse_reply(query, data, time.perf_counter() - start)
    return _observation(label, transport, qtype, start, message, [response], None)
