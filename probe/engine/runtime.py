"""The runtime: what every measurement of a process shares, built once by its front end (a
`check` run, the `serve` daemon, the control helper) and rebuilt only on a reload.

It holds the settings, the address policy, the TLS contexts, the fingerprints and, created on
first use, one aiohttp session for the probe's own HTTP (DNS-over-HTTPS, the control helper,
fingerprint URLs). Fingerprint sources are read once per start or reload; a source that fails on
reload keeps its last good set. Nothing here decides which address a measurement contacts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

from probe.config import ConfigError, Settings
from probe.measure import system, tls
from probe.measure.clock import within
from probe.measure.dnswire import Resolver
from probe.measure.failure import describe
from probe.measure.system import nameservers
from probe.model import RegimeReport, url_parts
from probe.policy import AddressPolicy
from probe.verdict.fingerprints import BUILTIN, Fingerprint, parse_csv

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("censorprobe")
MAX_FINGERPRINT_BYTES = 16 << 20
USER_AGENT = "censorprobe"


class Transport:
    """The aiohttp session for the probe's own HTTP and the UDP sockets of its HTTPS-record
    queries, created on first use and shared by every runtime of the process (a reload keeps
    them)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._resolvers: dict[tuple[str, int], Resolver] = {}

    def resolver(self, address: str, port: int) -> Resolver:
        """The UDP socket the process's queries of one resolver share (its targets' HTTPS
        records), opened on first use."""
        key = (address, port)
        if key not in self._resolvers:
            self._resolvers[key] = Resolver(address, port)
        return self._resolvers[key]

    def session(self, context: ssl.SSLContext) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp  # not needed by a check without DoH, control or fingerprint URLs

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=64),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        for resolver in self._resolvers.values():
            resolver.close()
        self._resolvers.clear()


# A documentation address: connecting a UDP socket to it looks the route up and sends nothing.
IPV6_ROUTE_CHECK = ("2001:db8::1", 443)
CHECK_EVERY = 60.0  # seconds a finding is reused (a serve round checks again after that)
QUIC_CHECK_TIMEOUT = 3.0  # a version negotiation answers within a round trip


class Network:
    """What this vantage's network can do, found once per run, not per target: whether it has
    working IPv6, whether its UDP/443 reaches the internet (QUIC), its system resolver's first
    nameserver. Without that every
    dual-stack target would fail over IPv6, and every HTTP/3 path on a network that filters UDP
    (hotels, offices) would fail: such a vantage must say "not measured", never "blocked"."""

    def __init__(self) -> None:
        self.ipv6_problem: str | None = None  # why IPv6 cannot be measured here
        self.quic_problem: str | None = None  # why QUIC cannot be measured here
        # the system resolver's first nameserver: its targets' HTTPS records are asked of it
        # (getaddrinfo has no way to ask for type 65)
        self.nameserver: str | None = None
        self._checked: float | None = None

    async def check(self, settings: Settings) -> None:
        """Look again, unless the last look is recent."""
        now = time.monotonic()
        if self._checked is not None and now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        self.nameserver = next(iter(nameservers()[0]), None)
        self.ipv6_problem, self.quic_problem = await asyncio.gather(
            _ipv6_problem(settings), _quic_problem(settings)
        )
        if self.ipv6_problem:
            log.info("IPv6 not measured: %s", self.ipv6_problem)
        if self.quic_problem:
            log.info("QUIC not measured: %s", self.quic_problem)


async def _control_addresses(settings: Settings) -> dict[int, str]:
    """The control helper's first address of each family, from its URL."""
    if not settings.control:
        return {}
    parts = url_parts(settings.control)
    loop = asyncio.get_running_loop()
    try:
        async with within(settings.timeout):
            infos = await loop.getaddrinfo(parts.host, parts.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return {}  # the control's own trouble, reported where it is asked
    first: dict[int, str] = {}
    for fam, _, _, _, sockaddr in infos:
        first.setdefault(fam, str(sockaddr[0]))
    return first


async def _quic_problem(settings: Settings) -> str | None:
    """The control helper answers QUIC version negotiation on UDP 443 and on its own port: an
    answer on its port but none on 443 means this vantage's UDP/443 is filtered. No answer on
    either (an older helper, one that cannot bind 443) tells nothing."""
    if settings.quic == "never":
        return None
    first = await _control_addresses(settings)
    address = first.get(socket.AF_INET) or first.get(socket.AF_INET6)
    if address is None:
        return None
    from probe.measure.quic import version_ping

    port = url_parts(settings.control or "").port
    wait = min(settings.timeout, QUIC_CHECK_TIMEOUT)
    policy = AddressPolicy.open()  # the user's own helper, wherever it is
    on_443, on_port = await asyncio.gather(
        version_ping(address, 443, wait, policy), version_ping(address, port, wait, policy)
    )
    if on_443.failure is None or on_port.failure is not None:
        return None
    return (
        f"the control helper answers QUIC on UDP {port} but not on UDP 443 ({on_443.error}): "
        "UDP/443 is filtered from here"
    )


async def _ipv6_problem(settings: Settings) -> str | None:
    """No route to the IPv6 internet; or a control helper with an IPv6 address that answers over
    IPv4 but not over IPv6 (a route that goes nowhere)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.connect(IPV6_ROUTE_CHECK)
    except OSError as exc:
        return f"this vantage has no IPv6 route ({describe(exc)})"
    first = await _control_addresses(settings)
    if socket.AF_INET6 not in first or socket.AF_INET not in first:
        return None
    port = url_parts(settings.control or "").port
    v6, v4 = await asyncio.gather(
        _connects(first[socket.AF_INET6], port, settings.timeout),
        _connects(first[socket.AF_INET], port, settings.timeout),
    )
    if v6 is None or v4 is not None:
        return None
    return (
        f"the control helper answers over IPv4 but not over IPv6 ({first[socket.AF_INET6]}: "
        f"{v6}): IPv6 goes nowhere from here"
    )


async def _connects(address: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        async with within(timeout):
            _, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return describe(exc)
    writer.close()
    return None


class Pacer:
    """At most `rate` contacts per second toward one address, whoever asks (a remote
    measurement's destinations and the addresses their answers name: other people's servers).
    Callers for one address take turns; each turn starts a whole gap after the previous one
    began, however late the event loop woke it."""

    MAX_KEPT = 4096  # addresses remembered; past that, those whose gap is over are forgotten

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def turn(self, address: str) -> None:
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            wait = self._next.get(address, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next[address] = time.monotonic() + self.gap
        if len(self._next) > self.MAX_KEPT:
            self._forget(time.monotonic())

    def _forget(self, now: float) -> None:
        for address, ready in list(self._next.items()):
            if ready <= now and not self._locks[address].locked():
                del self._next[address], self._locks[address]


class Runtime:
    """Settings, policy, TLS contexts, fingerprints and the transport; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        policy: AddressPolicy,
        fingerprints: tuple[Fingerprint, ...],
        sources: dict[str, tuple[Fingerprint, ...]],
        transport: Transport,
        network: Network | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.fingerprints = fingerprints
        self.sources = sources  # the last good set of each fingerprint source
        self.transport = transport
        self.network = network or Network()
        self.pacer = Pacer(settings.remote_rate)  # destinations are the settings': bounded
        self.verify, self.no_verify = contexts(settings.ca_file)
        # the vantage's network regime, found by its canaries before the run (or serve round)
        self.regime: RegimeReport | None = None

    def session(self) -> aiohttp.ClientSession:
        return self.transport.session(self.verify)

    def resolver(self, address: str, port: int) -> Resolver:
        return self.transport.resolver(address, port)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        policy: AddressPolicy | None = None,
        previous: Runtime | None = None,
    ) -> Runtime:
        """A runtime for `settings`; on a reload, pass the `previous` one: its transport is kept
        and a fingerprint source that cannot be read keeps its last good set. Raises ConfigError
        when a source cannot be read at start, or the CA file is not one."""
        system.size_the_pool()
        transport = previous.transport if previous else Transport(settings.timeout)
        network = previous.network if previous else Network()
        await network.check(settings)
        sources: dict[str, tuple[Fingerprint, ...]] = {}
        probe = cls(settings, policy or AddressPolicy.open(), BUILTIN, sources, transport, network)
        probe.regime = previous.regime if previous else None  # until the next canaries' survey
        for source in settings.fingerprints:
            try:
                sources[source] = await _read_fingerprints(source, probe)
            except ConfigError as exc:
                kept = previous.sources.get(source) if previous else None
                if kept is None:
                    if previous is None:
                        await transport.close()
                    raise
                log.error("%s; keeping the %d fingerprints read before", exc, len(kept))
                sources[source] = kept
        probe.fingerprints = BUILTIN + tuple(fp for fps in sources.values() for fp in fps)
        return probe

    def under(self, policy: AddressPolicy) -> Runtime:
        """The same runtime under another address policy (nothing read again)."""
        other = Runtime(
            self.settings, policy, self.fingerprints, self.sources, self.transport, self.network
        )
        other.regime = self.regime
        return other

    async def close(self) -> None:
        await self.transport.close()


def contexts(ca_file: str | None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The verifying context (the probe's trust anchors) and the non-verifying one (for the
    harmless SNI and for fetching untrusted certificates). ConfigError for a bad CA file."""
    try:
        verify = tls.make_context(ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--ca-file {ca_file}: not a PEM file of CA certificates ({describe(exc)})"
        ) from None
    return verify, tls.make_context(verify=False)


async def _read_fingerprints(source: str, rt: Runtime) -> tuple[Fingerprint, ...]:
    try:
        if source.startswith(("http://", "https://")):
            from probe.measure.doh import read_capped

            async with within(rt.settings.timeout * 3), rt.session().get(source) as resp:
                resp.raise_for_status()
                data = await read_capped(resp, MAX_FINGERPRINT_BYTES)
        else:
            data = await asyncio.to_thread(_read_file, source)
        text = data.decode("utf-8")
    except Exception as exc:
        raise ConfigError(f"fingerprints: cannot read {source}: {describe(exc)}") from None
    try:
        return parse_csv(text, source)
    except ValueError as exc:  # the parser's errors name the line
        raise ConfigError(f"fingerprints: {exc}") from None


def _read_file(path: str) -> bytes:
    with Path(path).open("rb") as f:
        data = f.read(MAX_FINGERPRINT_BYTES + 1)
    if len(data) > MAX_FINGERPRINT_BYTES:
        raise ValueError(f"larger than {MAX_FINGERPRINT_BYTES >> 20} MiB")
    return data
