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
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from probe.config import ConfigError, Settings
from probe.measure import tls
from probe.measure.failure import describe
from probe.policy import AddressPolicy
from probe.verdict.fingerprints import BUILTIN, Fingerprint, parse_csv

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("censorprobe")
MAX_FINGERPRINT_BYTES = 16 << 20
USER_AGENT = "censorprobe"


class Transport:
    """The aiohttp session for the probe's own HTTP, created on first use and shared by every
    runtime of the process (a reload keeps it)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

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


class Runtime:
    """Settings, policy, TLS contexts, fingerprints and the transport; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        policy: AddressPolicy,
        fingerprints: tuple[Fingerprint, ...],
        sources: dict[str, tuple[Fingerprint, ...]],
        transport: Transport,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.fingerprints = fingerprints
        self.sources = sources  # the last good set of each fingerprint source
        self.transport = transport
        self.verify, self.no_verify = contexts(settings.ca_file)

    def session(self) -> aiohttp.ClientSession:
        return self.transport.session(self.verify)

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
        transport = previous.transport if previous else Transport(settings.timeout)
        sources: dict[str, tuple[Fingerprint, ...]] = {}
        probe = cls(settings, policy or AddressPolicy.open(), BUILTIN, sources, transport)
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
        return Runtime(self.settings, policy, self.fingerprints, self.sources, self.transport)

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

            async with asyncio.timeout(rt.settings.timeout * 3):
                async with rt.session().get(source) as resp:
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
