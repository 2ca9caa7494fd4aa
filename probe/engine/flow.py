"""The measurement of one target: DNS -> TCP -> TLS -> HTTP on that same connection, and each
redirect hop on a connection of its own.

One deadline per measurement (a `Budget` of the target's `Deadline`, `probe.engine.deadline`); every
step draws on what is left, so a target that stalls at every step still ends in time, and the
evidence says which step used the deadline up. The addresses of a target are tried concurrently
(at most `max_addresses`, both families where present); the first connection that works in each
family carries the HTTP exchange (OONI's Web Connectivity LTE does the same), so one handshake
serves TLS and HTTP and the HTTP evidence names a server the TLS step measured. Nothing is shared
between targets: where a fetch goes travels with the fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin, urlsplit

from probe.config import Settings
from probe.engine.deadline import Budget, hello_mode, quic_mode
from probe.engine.runtime import Runtime
from probe.measure import http, svcb, system, tcp, tls
from probe.measure.tcp import Connection
from probe.model import (
    MAX_URL,
    DNSObservation,
    DNSResponse,
    Hop,
    HTTPHop,
    HTTPObservation,
    HTTPSRecordObservation,
    Measurement,
    QUICObservation,
    QUICPath,
    Target,
    TCPObservation,
    TLSObservation,
    check_host,
    parse_resolver_address,
    url_parts,
)
from probe.policy import family, is_ip_literal
from probe.vocabulary import Failure, Step

# how long after a measurement's end its HTTPS records are still awaited (a resolver that drops
# type-65 queries delays each result by this much, no more)
HTTPS_RECORD_GRACE = 1.0
# TLS failures after which a harmless SNI to the same address is worth one handshake
SNI_CHECK_AFTER = frozenset(
    {Failure.RESET, Failure.TIMEOUT, Failure.EOF, Failure.ALERT, Failure.PROTOCOL}
)


@dataclass
class _Opened:
    """One address: its TCP step, its TLS step (https), and the connection if both worked."""

    tcp: TCPObservation
    tls: TLSObservation | None = None
    conn: Connection | None = None


@dataclass
class _Reach:
    """Connections to one host's addresses: the evidence, and the carriers kept open."""

    tcp: list[TCPObservation] = field(default_factory=list)
    tls: list[TLSObservation] = field(default_factory=list)
    sni_check: list[TLSObservation] = field(default_factory=list)
    carriers: dict[int, Connection] = field(default_factory=dict)  # by IP family

    async def close(self) -> None:
        for conn in self.carriers.values():
            await conn.close()
        self.carriers.clear()

    def first_failure(self) -> tuple[Step, Failure, str]:
        """Why no connection carries a request: the step, its failure and the error."""
        if self.tls:
            t = self.tls[0]
            return Step.TCP_TLS, t.failure or Failure.UNKNOWN, f"TLS {t.failure}: {t.error}"
        if self.tcp:
            c = self.tcp[0]
            return Step.TCP_TLS, c.failure or Failure.UNKNOWN, f"TCP {c.failure}: {c.error}"
        return Step.DNS, Failure.NO_ANSWER, "no address to connect to"


def addresses_of(observations: Sequence[DNSObservation]) -> list[str]:
    """Every distinct address the resolvers returned, in order of appearance."""
    out: list[str] = []
    for obs in observations:
        for r in obs.responses or (DNSResponse(0.0, obs.rcode, obs.addresses),):
            for a in r.addresses:
                if a not in out:
                    out.append(a)
    return out


def pick_addresses(addresses: Sequence[str], limit: int) -> list[str]:
    """At most `limit` addresses, alternating families so both are tested where present."""
    v4 = [a for a in addresses if family(a) == 4]
    v6 = [a for a in addresses if family(a) == 6]
    out: list[str] = []
    while (v4 or v6) and len(out) < limit:
        for fam in (v4, v6):
            if fam and len(out) < limit:
                out.append(fam.pop(0))
    return out


async def resolve(target: Target, rt: Runtime, budget: Budget) -> list[DNSObservation]:
    """The target's host from this vantage, with every configured resolver."""
    return await _Flow(target, rt, budget).resolve(target.host)


class _Flow:
    """One measurement of one target."""

    def __init__(self, target: Target, rt: Runtime, budget: Budget) -> None:
        self.target = target
        self.rt = rt
        self.s = rt.settings
        self.budget = budget
        self.notes: list[str] = []

    # --- DNS --------------------------------------------------------------------------------

    def https_records(self, host: str) -> dict[str, asyncio.Task[HTTPSRecordObservation]]:
        """The host's HTTPS record (type 65) asked of every configured resolver at once, by
        resolver (for the system resolver, which has no API for it, its first nameserver, as the
        run's network check found it)."""
        timeout = self.budget.take(self.s.timeout, Step.DNS)
        asks: dict[str, Coroutine[None, None, HTTPSRecordObservation]] = {}
        for resolver in self.s.resolvers:
            if resolver == "system":
                server = self.rt.network.nameserver
                if server is not None:
                    label = f"system ({server})"
                    asks[label] = svcb.ask_udp(host, self.rt.resolver(server, 53), timeout, label)
            elif resolver.startswith("https://"):
                asks[resolver] = svcb.ask_doh(host, resolver, self.rt.session(), timeout)
            else:
                udp = self.rt.resolver(*parse_resolver_address(resolver))
                asks[resolver] = svcb.ask_udp(host, udp, timeout, resolver)
        return {label: asyncio.ensure_future(ask) for label, ask in asks.items()}

    async def resolve(self, host: str) -> list[DNSObservation]:
        """Every configured resolver, at once; A and AAAA from those asked per type."""
        timeout = self.budget.take(self.s.timeout, Step.DNS)
        queries = []
        for resolver in self.s.resolvers:
            if resolver == "system":
                queries.append(system.resolve(host, timeout))
            elif resolver.startswith("https://"):
                from probe.measure import doh  # aiohttp, only where DoH is configured

                session = self.rt.session()
                queries += [doh.resolve(host, q, resolver, session, timeout) for q in ("A", "AAAA")]
            else:
                from probe.measure import dns  # dnspython, only where a resolver is named

                address, port = parse_resolver_address(resolver)
                window = self.s.dns_window
                queries += [
                    dns.resolve_udp(
                        host, q, address, port, timeout=timeout, window=window, label=resolver
                    )
                    for q in ("A", "AAAA")
                ]
        if len(queries) == 1:
            return [await queries[0]]
        return list(await asyncio.gather(*queries))

    def choose(self, addresses: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
        """The addresses to connect to, then the `extra` ones not among them: the policy's
        refusals noted, at most `max_addresses` of each."""
        allows = self.rt.policy.allows
        refused = sorted({a for a in [*addresses, *extra] if not allows(a)})
        if refused:
            self.notes.append(f"not contacted (special-purpose addresses): {', '.join(refused)}")
        no_ipv6 = self.rt.network.ipv6_problem
        if no_ipv6 and any(family(a) == 6 for a in [*addresses, *extra]):
            self.notes.append(f"IPv6 not measured: {no_ipv6}")
            addresses = [a for a in addresses if family(a) == 4]
            extra = [a for a in extra if family(a) == 4]
        own = [a for a in addresses if allows(a)]
        picked = pick_addresses(own, self.s.max_addresses)
        if len(own) > len(picked):
            self.notes.append(f"tested {len(picked)} of {len(own)} addresses")
        picked += [
            a for a in pick_addresses(extra, self.s.max_addresses) if a not in picked and allows(a)
        ]
        return picked

    # --- TCP and TLS ------------------------------------------------------------------------

    async def reach(
        self, url: str, addresses: Sequence[str], fallback: Collection[str] = ()
    ) -> _Reach:
        """Connect to every address at once (and shake hands for https); keep the first
        connection that works in each family open, for HTTP to ride on — one to a `fallback`
        address (the vantage's, which the control checks) only where no other worked."""
        parts = url_parts(url)
        out = _Reach()
        if len(addresses) == 1:  # the common case, without the machinery of several
            opened = await self._open(addresses[0], parts.port, parts.host, parts.scheme)
            out.tcp.append(opened.tcp)
            if opened.tls is not None:
                out.tls.append(opened.tls)
                if opened.tls.failure in SNI_CHECK_AFTER:
                    out.sni_check.append(await self._sni_check(opened.tls))
            if opened.conn is not None:
                out.carriers[family(opened.conn.address)] = opened.conn
            return out
        tasks = [
            asyncio.ensure_future(self._open(a, parts.port, parts.host, parts.scheme))
            for a in addresses
        ]
        checks = []
        spare: dict[int, Connection] = {}  # the first fallback connection of each family
        try:
            for done in asyncio.as_completed(tasks):
                opened = await done
                conn = opened.conn
                if conn is not None:
                    fam = family(conn.address)
                    keep = spare if conn.address in fallback else out.carriers
                    if fam in keep:
                        await conn.close()
                    else:
                        keep[fam] = conn
                if opened.tls is not None and opened.tls.failure in SNI_CHECK_AFTER:
                    checks.append(self._sni_check(opened.tls))
            out.sni_check = list(await asyncio.gather(*checks))
        except BaseException:
            for task in tasks:
                task.cancel()
            for conn in spare.values():
                await conn.close()
            await out.close()
            raise
        for fam, conn in spare.items():
            if fam in out.carriers:
                await conn.close()
            else:
                out.carriers[fam] = conn
        for task in tasks:  # the evidence in the order of the addresses
            opened = task.result()
            out.tcp.append(opened.tcp)
            if opened.tls is not None:
                out.tls.append(opened.tls)
        return out

    async def _open(self, address: str, port: int, host: str, scheme: str) -> _Opened:
        s, rt = self.s, self.rt
        tcp_obs, conn = await tcp.connect(
            address, port, self.budget.take(s.timeout, Step.TCP_TLS), rt.policy
        )
        if conn is None or scheme != "https":
            return _Opened(tcp_obs, None, conn)
        try:
            tls_obs = await tls.handshake(
                conn, host, rt.verify, self.budget.take(s.timeout, Step.TCP_TLS)
            )
        except BaseException:
            await conn.close()
            raise
        if tls_obs.failure is None:
            return _Opened(tcp_obs, tls_obs, conn)
        await conn.close()
        if tls_obs.failure is Failure.INVALID_CERTIFICATE:  # the evidence of interception
            again = await tls.connect_and_handshake(
                address,
                port,
                host,
                rt.no_verify,
                self.budget.take(s.timeout, Step.TCP_TLS),
                rt.policy,
                untrusted_certificate=True,
            )
            tls_obs = replace(tls_obs, certificate=again.certificate)
        return _Opened(tcp_obs, tls_obs, None)

    async def _sni_check(self, failed: TLSObservation) -> TLSObservation:
        """One handshake with a harmless SNI to an address where the real SNI failed."""
        return await tls.connect_and_handshake(
            failed.address,
            failed.port,
            self.s.sni_check_name,
            self.rt.no_verify,
            self.budget.take(self.s.timeout, Step.SNI_CHECK),
            self.rt.policy,
        )

    # --- HTTP -------------------------------------------------------------------------------

    def limits(self) -> http.Limits:
        s = self.s
        return http.Limits(s.timeout, s.stall, s.body_cap, s.throughput_window, self.budget.end)

    async def fetch(self, conn: Connection, url: str) -> HTTPObservation:
        """GET `url` on `conn`, then follow redirects, each on a connection of its own (to the
        same address while the host stays the same; measured like a target's where it changes)."""
        chain: list[http.Exchange] = []
        redirects: list[HTTPHop] = []
        connections: list[Hop] = []
        current: Connection | None = conn
        final = url
        for hop in range(self.s.max_redirects + 1):
            assert current is not None
            try:
                x = await http.exchange(current, final, self.limits())
            finally:
                await current.close()
            if x.ran_out:
                self.budget.cut = Step.HTTP
            chain.append(x)
            location = x.location
            if location is None:
                break
            redirects.append(HTTPHop(final, x.status or 0, location, x.address))
            following, invalid = _redirect_target(final, location)
            if invalid is not None:  # the hop's failure, its Location kept as the evidence
                chain.append(http.Exchange(following, None).fail(Failure.PROTOCOL, invalid))
                break
            if urlsplit(following).scheme not in ("http", "https"):
                # file:, javascript:…: not followed, and not an error
                return http.observation(url, chain, redirects, connections, following)
            if hop == self.s.max_redirects:
                x = http.Exchange(following, x.address)
                chain.append(x.fail(Failure.PROTOCOL, f"more than {hop} redirects"))
                break
            hop_steps, current, failed = await self._next_hop(following, final, x.address)
            connections.append(hop_steps)
            final = following
            if current is None:
                chain.append(failed)
                break
        return http.observation(url, chain, redirects, connections)

    async def _next_hop(
        self, url: str, previous: str, address: str | None
    ) -> tuple[Hop, Connection | None, http.Exchange]:
        """A connection for the next request of a redirect chain, and its evidence; or none,
        and why."""
        host = url_parts(url).host
        dns_obs: list[DNSObservation] = []
        if is_ip_literal(host):
            resolved = [host]
        elif host == url_parts(previous).host and address is not None:
            resolved = [address]  # the same server again: no DNS, the same address
        else:
            dns_obs = await self.resolve(host)
            resolved = addresses_of(dns_obs)
        addresses = self.choose(resolved)
        reach = await self.reach(url, addresses)
        steps = Hop(url, tuple(dns_obs), tuple(reach.tcp), tuple(reach.tls), tuple(reach.sni_check))
        preferred = family(address) if address else 4
        conn = reach.carriers.pop(preferred, None)
        if conn is None and reach.carriers:
            conn = reach.carriers.pop(next(iter(reach.carriers)))
        await reach.close()
        failed = http.Exchange(url, None)
        if conn is not None:
            return steps, conn, failed
        if resolved and not addresses:
            failed.fail(
                Failure.FORBIDDEN,
                f"redirect to {url}: {', '.join(resolved)}: special-purpose, refused by the "
                "address policy",
            )
        elif not addresses:
            first = next((o for o in dns_obs if o.failure), dns_obs[0])
            failure = first.failure or Failure.NO_ANSWER
            failed.fail(failure, f"redirect to {url}: DNS for {host}: {failure}")
        else:
            _, failure, error = reach.first_failure()
            failed.fail(failure, f"redirect to {url}: {error}")
        return steps, None, failed


def _redirect_target(base: str, location: str) -> tuple[str, str | None]:
    """The URL a Location points to, and why it cannot be followed (an invalid host or port);
    None where it can, or where it is not http(s) at all (not followed, not an error)."""
    try:
        following = urljoin(base, location)
        parts = urlsplit(following)
        if parts.scheme not in ("http", "https"):
            return following, None
        host, _ = parts.hostname, parts.port  # the port property checks the number
        check_host(host or "", following)
    except ValueError as exc:
        return location[:MAX_URL], f"redirect to {location[:200]!r}: {exc}"
    return following, None


async def measure(
    target: Target,
    rt: Runtime,
    budget: Budget,
    *,
    extra_addresses: Sequence[str] = (),
    on_dns: Callable[[list[str]], None] | None = None,
) -> Measurement:
    """All steps for one target, within `budget`. Failures are data; only bugs raise.

    `extra_addresses` are tested too (the control tries the vantage's); `on_dns` is called
    with the addresses found, so the control can be asked while the probe goes on. Where the
    target's ClientHello variants may go, its HTTPS record is asked beside, and awaited last, at
    most HTTPS_RECORD_GRACE past the measurement's end.
    """
    flow = _Flow(target, rt, budget)
    records = flow.https_records(target.host) if _asks_https_record(target, rt.settings) else {}
    try:
        return await _measure(flow, extra_addresses, on_dns, records)
    except BaseException:
        for task in records.values():
            task.cancel()
        raise


async def _seen(
    records: dict[str, asyncio.Task[HTTPSRecordObservation]],
) -> tuple[HTTPSRecordObservation, ...]:
    """The HTTPS records' answers: what has not come by the measurement's end and
    HTTPS_RECORD_GRACE more is a timeout."""
    pending = [task for task in records.values() if not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=HTTPS_RECORD_GRACE)
        for task in pending:
            task.cancel()
    return tuple(map(_answered_record, records.items()))


def _answered_record(
    ask: tuple[str, asyncio.Task[HTTPSRecordObservation]],
) -> HTTPSRecordObservation:
    label, task = ask
    if task.done() and not task.cancelled():
        return task.result()
    why = f"no answer by the measurement's end and {HTTPS_RECORD_GRACE:g} s more"
    return HTTPSRecordObservation(label, 0.0, failure=Failure.TIMEOUT, error=why)


def _asks_https_record(target: Target, s: Settings) -> bool:
    """Whether the target's HTTPS record is asked: where its ClientHello variants may go, for a
    name public DNS may hold (not an address, not `localhost`: RFC 6761 §6.3)."""
    name = target.host.lower().rstrip(".")
    return (
        hello_mode(target, s) not in (None, "never")
        and not is_ip_literal(name)
        and name != "localhost"
        and not name.endswith(".localhost")
    )


async def _measure(
    flow: _Flow,
    extra_addresses: Sequence[str],
    on_dns: Callable[[list[str]], None] | None,
    records: dict[str, asyncio.Task[HTTPSRecordObservation]],
) -> Measurement:
    target, budget = flow.target, flow.budget
    started = time.time()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    host = target.host
    dns_obs: list[DNSObservation] = []
    if is_ip_literal(host):
        addresses = [host]
        flow.notes.append("the URL names an address: no DNS step")
    else:
        dns_obs = await flow.resolve(host)
        addresses = addresses_of(dns_obs)
    timings[Step.DNS] = time.perf_counter() - t0
    if on_dns is not None:
        on_dns(addresses)

    picked = flow.choose(addresses, extra_addresses)
    t1 = time.perf_counter()
    reach = await flow.reach(target.url, picked, fallback=set(extra_addresses) - set(addresses))
    timings[Step.TCP_TLS] = time.perf_counter() - t1
    if reach.sni_check:
        timings[Step.SNI_CHECK] = max(t.elapsed for t in reach.sni_check)

    fetched: dict[int, HTTPObservation] = {}
    if reach.carriers:
        t3 = time.perf_counter()
        families = sorted(reach.carriers)  # IPv4 first
        carriers = [reach.carriers.pop(f) for f in families]
        if len(carriers) == 1:
            fetched = {families[0]: await flow.fetch(carriers[0], target.url)}
        else:
            results = await asyncio.gather(*(flow.fetch(c, target.url) for c in carriers))
            fetched = dict(zip(families, results, strict=True))
        timings[Step.HTTP] = time.perf_counter() - t3
    elif picked:
        step = "TLS" if target.scheme == "https" else "TCP"
        flow.notes.append(f"HTTP not tried: no address completed {step}")
    primary = fetched.get(4) or fetched.get(6)
    timings[Step.TOTAL] = time.perf_counter() - t0
    ran_out = budget.ran_out()
    if ran_out is not None:
        flow.notes.append(f"the target's deadline of {budget.seconds:g}s ran out during {ran_out}")
    return Measurement(
        target,
        started,
        tuple(dns_obs),
        tuple(reach.tcp),
        tuple(reach.tls),
        tuple(reach.sni_check),
        primary,
        fetched.get(6) if 4 in fetched else None,
        {str(k): round(v, 6) for k, v in timings.items()},
        tuple(flow.notes),
        deadline=budget.seconds,
        ran_out=ran_out,
        https_records=await _seen(records) if records else (),
    )


def _answered(h: HTTPObservation | None, host: str) -> bool:
    """The site's own HTTPS answered (the last response came from this host)."""
    return h is not None and h.failure is None and url_parts(_final(h)).host == host


def _advertised(h: HTTPObservation | None, host: str) -> int | None:
    """The HTTP/3 port the site's HTTPS answer offers (`Alt-Svc: h3`), if it is this host's."""
    if h is None or not _answered(h, host):
        return None
    from probe.measure.quic import advertised_port

    return advertised_port(h.headers.get("alt-svc"))


def _final(h: HTTPObservation) -> str:
    return h.final_url or h.url


async def measure_quic(
    target: Target, rt: Runtime, m: Measurement, control: Measurement | None, budget: Budget
) -> QUICPath | None:
    """The target over QUIC and HTTP/3 (https targets), as its mode says: `auto` where the site
    advertises HTTP/3 to the probe or to the control (whose TCP path a censor does not block),
    `always`, or `never`. Within `budget` (the QUIC deadline of the target's `Deadline`)."""
    s = rt.settings
    mode = quic_mode(target, s)
    if mode is None:
        return None
    if mode == "never":
        return QUICPath(skipped="quic: never")
    if rt.network.quic_problem:
        return QUICPath(skipped=f"no QUIC from this vantage: {rt.network.quic_problem}")
    port, tried = target.port, "always"
    if mode == "auto":
        mine = _advertised(m.http, target.host)
        theirs = _advertised(control.http, target.host) if control is not None else None
        if mine is None and theirs is None:
            reached = _answered(m.http, target.host) or (
                control is not None and _answered(control.http, target.host)
            )
            if not reached:
                return QUICPath(
                    skipped="neither this vantage nor the control got the site's own HTTPS "
                    "answer (it failed, or redirected to another host), which would say whether "
                    "it advertises HTTP/3"
                )
            return QUICPath(
                skipped="the site advertises no HTTP/3 (no Alt-Svc h3 on its HTTPS answer, to "
                "the probe or the control)",
                unsupported=True,
            )
        port, tried = (mine, "alt-svc") if mine is not None else (theirs or target.port, "control")
    flow = _Flow(target, rt, budget)
    literal = [target.host] if is_ip_literal(target.host) else []
    addresses = flow.choose(m.addresses() or literal)
    if not addresses:
        why = "; ".join(flow.notes) or "the DNS step found no address"
        return QUICPath(tried=tried, port=port, skipped=why)
    from probe.measure import quic

    limits = quic.Limits(s.timeout, s.stall, s.body_cap, flow.budget.end)
    attempts = await asyncio.gather(
        *(
            quic.handshake_and_get(
                a,
                port,
                target.host,
                target.url,
                verify=True,
                ca_file=s.ca_file,
                limits=limits,
                policy=rt.policy,
            )
            for a in addresses
        )
    )
    handshakes = tuple(h for h, _ in attempts)

    async def harmless(address: str) -> QUICObservation:
        """The SNI check's name, unverified: does the address speak QUIC to another name?"""
        h, _ = await quic.handshake_and_get(
            address,
            port,
            s.sni_check_name,
            None,
            verify=False,
            ca_file=None,
            limits=limits,
            policy=rt.policy,
        )
        return replace(h, kind="harmless")

    failed = [h.address for h in handshakes if h.failure in (Failure.TIMEOUT, Failure.CLOSE)]
    checks = await asyncio.gather(
        *(harmless(a) for a in failed),
        *(quic.version_ping(a, port, limits.wait(s.timeout), rt.policy) for a in failed),
    )
    return QUICPath(
        tried=tried,
        port=port,
        handshakes=handshakes,
        checks=tuple(checks),
        http3=next((g for _, g in attempts if g is not None), None),
    )
