"""DNS as an application on this machine resolves: getaddrinfo (/etc/hosts, nsswitch, the
configured resolvers), in a thread."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import weakref

from probe.measure.clock import within
from probe.measure.failure import classify
from probe.model import DNSObservation
from probe.vocabulary import Failure

MAX_ADDRESSES = 64  # addresses kept per answer


# uvloop runs getaddrinfo in libuv's thread pool, of UV_THREADPOOL_SIZE threads (4 by default;
# a runtime sets 2 * LOOKUPS where the environment does not say), and libuv runs such slow work
# on at most half of them, (threads + 1) // 2: the rest of the lookups queue there, and the
# queue's seconds in a busy run read as the resolver's time ("DNS timeout" where it answered in
# 40 ms). A pool as large as the run's concurrency is no cure: hundreds of lookups at once, two
# queries each, are more than a local resolver answers in time, and glibc says "temporary
# failure". So a lookup waits for its turn here, where the wait is this machine's, and its time
# and timeout start when it does.
LOOKUPS = 16
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def size_the_pool() -> None:
    """Before the process's first lookup (libuv reads UV_THREADPOOL_SIZE once, at its first
    use): 2 * LOOKUPS threads, LOOKUPS lookups at once, unless the environment says."""
    os.environ.setdefault("UV_THREADPOOL_SIZE", str(2 * LOOKUPS))


def lookups(loop: asyncio.AbstractEventLoop) -> int:
    """Lookups at once: what the pool `loop` runs getaddrinfo in takes at once — under uvloop
    (the CLI's loop) half of libuv's UV_THREADPOOL_SIZE threads, rounded up (libuv keeps the
    other half for quick work: with 16 threads, the 9th lookup of 16 at once waited for the
    first to end); under asyncio's own (a library's caller, the tests) its default executor,
    of min(32, CPUs + 4) threads."""
    if not type(loop).__module__.startswith("uvloop"):
        return min(32, (os.cpu_count() or 1) + 4)
    try:
        threads = min(1024, max(1, int(os.environ.get("UV_THREADPOOL_SIZE", "4"))))
    except ValueError:
        threads = 4
    return (threads + 1) // 2


async def resolve(host: str, timeout: float) -> DNSObservation:
    """getaddrinfo, as an application on this machine resolves (/etc/hosts, nsswitch...), as
    many at once as the pool has threads; `elapsed` and `timeout` count from the lookup's turn."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = asyncio.Semaphore(lookups(loop))
    async with turns:  # (a lookup given up on holds its thread until glibc gives up too)
        start = time.perf_counter()
        try:
            async with within(timeout):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except Exception as exc:
            failure, error = classify(exc)
            elapsed = time.perf_counter() - start
            if failure is Failure.TIMEOUT and elapsed < timeout / 2:
                # glibc says "temporary failure" at once when it could send no query at all
                failure, error = _no_resolver_reached(error)
            return DNSObservation(
                "system", "system", "A+AAAA", elapsed, failure=failure, error=error
            )
        elapsed = time.perf_counter() - start
    addresses: list[str] = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    return DNSObservation(
        "system",
        "system",
        "A+AAAA",
        elapsed,
        rcode="NOERROR",
        addresses=tuple(addresses[:MAX_ADDRESSES]),
        failure=None if addresses else Failure.NO_ANSWER,
    )


RESOLV_CONF = "/etc/resolv.conf"


def nameservers() -> tuple[list[str], str | None]:
    """The resolvers of RESOLV_CONF, in order, or why there are none."""
    try:
        with open(RESOLV_CONF, encoding="utf-8", errors="replace") as f:
            lines = f.read(64 << 10).splitlines()
    except OSError as exc:
        return [], f"{RESOLV_CONF}: {exc.strerror}"
    servers = [
        ln.split()[1] for ln in lines if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1
    ]
    return servers, None if servers else f"no nameserver in {RESOLV_CONF}"


def _no_resolver_reached(error: str) -> tuple[Failure, str]:
    """Why getaddrinfo failed at once: no resolver configured, or none it can route to
    (`unreachable`, named); else it stays the `timeout` glibc reports."""
    servers, none = nameservers()
    if none is not None:
        return Failure.UNREACHABLE, f"{error}; no resolver configured ({none})"
    problems = []
    for server in servers[:3]:  # glibc asks at most three
        problem = route_problem(server, 53)
        if problem is None:
            return Failure.TIMEOUT, error
        problems.append(f"{server}: {problem}")
    return Failure.UNREACHABLE, f"no route to any resolver ({'; '.join(problems)})"


def route_problem(address: str, port: int) -> str | None:
    """Why this machine has no route to `address` (a UDP socket connects without sending);
    None where it has one."""
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address.split("%")[0], port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
