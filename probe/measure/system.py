"""DNS as an application on this machine resolves: getaddrinfo (/etc/hosts, nsswitch, the
configured resolvers), in a thread."""

from __future__ import annotations

import asyncio
import socket
import time

from probe.measure.failure import classify
from probe.model import DNSObservation
from probe.vocabulary import Failure

MAX_ADDRESSES = 64  # addresses kept per answer


async def resolve(host: str, timeout: float) -> DNSObservation:
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
        addresses=tuple(addresses[:MAX_ADDRESSES]),
        failure=None if addresses else Failure.NO_ANSWER,
    )
