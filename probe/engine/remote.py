"""Remote measurement: a vantage abroad looks toward one country's destinations, which the user
lists, for censors on the path that act on traffic from abroad (as the GFW's do in both
directions). Three techniques, each with a control:

1. the target's name to addresses that run no resolver (GFWatch), after a harmless name that
   must get no answer: any answer to the target's was forged;
2. to open resolvers in the country (Satellite): answers compared with this vantage's own
   resolution, the others checked by certificate;
3. the target's SNI (https) or Host header (http) to web servers in the country (Hyperquack),
   after the same exchange with a harmless name.

Every address contacted is paced (`remote_rate` contacts a second, at most), the listed
destinations and the addresses an open resolver answered (checked by a handshake unless
`remote_verify_answers` is false) alike; nothing is scanned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from probe.engine.deadline import Budget
from probe.engine.flow import addresses_of, pick_addresses, resolve
from probe.engine.runtime import Runtime
from probe.measure import dns, http, tcp, tls
from probe.model import (
    DNSObservation,
    HTTPObservation,
    Measurement,
    NameCheck,
    RemotePath,
    SilentCheck,
    Target,
    TLSObservation,
    parse_resolver_address,
)
from probe.policy import family
from probe.vocabulary import Step

T = TypeVar("T")
REMOTE_BODY_CAP = 64 << 10  # a Host check needs the start of the page, for blockpages


async def measure(target: Target, rt: Runtime, budget: Budget) -> Measurement:
    """One remote measurement of `target` toward `target.remote`'s destinations."""
    s = rt.settings
    dest = s.remote_country(target.remote)
    started = time.time()
    start = time.perf_counter()
    own, silent, resolvers, names = await asyncio.gather(
        resolve(target, rt, budget),
        _all(_silent(target, rt, budget, a) for a in dest.silent),
        _all(_resolver(target, rt, budget, r) for r in dest.resolvers),
        _all(_names(target, rt, budget, a) for a in dest.servers),
    )
    known = addresses_of(own)
    theirs = [a for a in addresses_of(resolvers) if a not in known and rt.policy.allows(a)]
    checked = pick_addresses(theirs, s.max_addresses) if s.remote_verify_answers else []
    # and one address of this vantage's own: where even that serves no valid certificate (a
    # site without HTTPS), a failed check elsewhere proves nothing
    mine = [a for a in known if family(a) == 4 and rt.policy.allows(a)][:1] if checked else []

    async def validate(address: str) -> TLSObservation:
        """A handshake with the target's name: these addresses are contacts too, paced."""
        await rt.pacer.turn(address)
        timeout = budget.take(s.timeout, Step.TCP_TLS)
        return await tls.connect_and_handshake(
            address, 443, target.host, rt.verify, timeout, rt.policy
        )

    validation = await _all(validate(a) for a in [*mine, *checked])
    path = RemotePath(dest.country, silent, resolvers, validation, names, s.remote_verify_answers)
    return Measurement(
        target,
        started,
        dns=tuple(own),
        timings={str(Step.TOTAL): time.perf_counter() - start},
        deadline=budget.seconds,
        ran_out=budget.ran_out(),
        remote=path,
    )


async def _all(jobs: Iterable[Awaitable[T]]) -> tuple[T, ...]:
    return tuple(await asyncio.gather(*jobs))


async def _silent(target: Target, rt: Runtime, budget: Budget, address: str) -> SilentCheck:
    """The harmless name first, then A and AAAA for the target's: each waits the timeout out,
    since what proves the address silent is that nothing answers."""
    s = rt.settings
    timeout = budget.take(s.timeout, Step.DNS)

    async def ask(name: str, qtype: str) -> DNSObservation:
        await rt.pacer.turn(address)
        return await dns.resolve_udp(
            name, qtype, address, timeout=timeout, window=timeout, resend=False
        )

    harmless = asyncio.ensure_future(ask(s.sni_check_name, "A"))
    queries = await asyncio.gather(ask(target.host, "A"), ask(target.host, "AAAA"))
    return SilentCheck(address, s.sni_check_name, await harmless, tuple(queries))


async def _resolver(target: Target, rt: Runtime, budget: Budget, spec: str) -> DNSObservation:
    s = rt.settings
    address, port = parse_resolver_address(spec)
    await rt.pacer.turn(address)
    timeout = budget.take(s.timeout, Step.DNS)
    return await dns.resolve_udp(
        target.host,
        "A",
        address,
        port,
        timeout=timeout,
        window=s.dns_window,
        label=spec,
        resend=False,  # paced: a datagram sent again would be a contact the pacer never saw
    )


async def _names(target: Target, rt: Runtime, budget: Budget, address: str) -> NameCheck:
    """The harmless name, then the target's, to one server: a ClientHello for an https target,
    a request for an http one. The server's certificate is not the target's: not verified."""
    s = rt.settings
    harmless = s.sni_check_name
    if target.scheme == "https":

        async def hello(name: str) -> TLSObservation:
            await rt.pacer.turn(address)
            timeout = budget.take(s.timeout, Step.TCP_TLS)
            return await tls.connect_and_handshake(
                address, 443, name, rt.no_verify, timeout, rt.policy
            )

        first = await hello(harmless)
        return NameCheck(address, harmless=first, target=await hello(target.host))

    async def get(name: str) -> HTTPObservation:
        await rt.pacer.turn(address)
        url = target.url.replace(target.host, name, 1)
        timeout = budget.take(s.timeout, Step.HTTP)
        limits = http.Limits(timeout, s.stall, REMOTE_BODY_CAP, timeout, budget.end)
        obs, conn = await tcp.connect(address, 80, timeout, rt.policy)
        if conn is None:
            return HTTPObservation(url, obs.elapsed, obs.failure, obs.error, address=address)
        try:
            exchange = await http.exchange(conn, url, limits)
        finally:
            await conn.close()
        return http.observation(url, [exchange], [], [])

    first_http = await get(harmless)
    return NameCheck(address, harmless_http=first_http, target_http=await get(target.host))
