"""HTTP: a GET pinned to the addresses the DNS step found, every redirect hop recorded.

The body is read up to a cap and for at most a throughput window: a download that keeps flowing
but slowly (a policer) ends with a rate, not just a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from probe.measure.failure import classify
from probe.model import HTTPHop, HTTPObservation

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) censorprobe/0.1"
)
SELECTED_HEADERS = (
    "server",
    "content-type",
    "content-length",
    "content-encoding",
    "location",
    "via",
    "x-cache",
    "x-powered-by",
    "cache-control",
    "set-cookie",
)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
SAMPLE_BYTES = 65536


class PinnedResolver(AbstractResolver):
    """Answers pinned hosts with the addresses the probe measured; asks the system for others."""

    def __init__(self) -> None:
        self.pins: dict[str, list[str]] = {}
        self._fallback = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = self.pins.get(host)
        if pinned is None:
            return await self._fallback.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=_family(a),
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in pinned
            if family in (socket.AF_UNSPEC, _family(a))
        ]

    async def close(self) -> None:
        await self._fallback.close()


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def make_session(
    resolver: PinnedResolver, ssl_context: ssl.SSLContext, timeout: float
) -> aiohttp.ClientSession:
    """One session per run; every request on a fresh connection, so each fetch is a measurement."""
    connector = aiohttp.TCPConnector(
        resolver=resolver, ssl=ssl_context, force_close=True, use_dns_cache=False, limit=0
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        headers={"User-Agent": USER_AGENT, "Accept": "text/html,*/*;q=0.8"},
        auto_decompress=True,
        max_line_size=8190,
        max_field_size=8190,
    )


@dataclass
class _Body:
    length: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    sample: bytearray = field(default_factory=bytearray)
    first_byte: float | None = None
    last_byte: float | None = None
    truncated: str | None = None

    def add(self, chunk: bytes, now: float) -> None:
        if self.first_byte is None:
            self.first_byte = now
        self.last_byte = now
        self.length += len(chunk)
        self.digest.update(chunk)
        if len(self.sample) < SAMPLE_BYTES:
            self.sample += chunk[: SAMPLE_BYTES - len(self.sample)]

    def throughput(self) -> float | None:
        if self.first_byte is None or self.last_byte is None or self.length == 0:
            return None
        span = self.last_byte - self.first_byte
        # one chunk: no interval to measure over
        return round(self.length / span, 1) if span > 0 else None


async def fetch(
    url: str,
    session: aiohttp.ClientSession,
    *,
    timeout: float,
    body_cap: int,
    window: float,
    max_redirects: int,
    pinned: str | None = None,
) -> HTTPObservation:
    """GET `url`, following redirects by hand so each hop is evidence.

    `pinned` is the address the session's resolver gives for the URL's host (recorded per hop).
    """
    host = urlsplit(url).hostname
    start = time.perf_counter()
    hops: list[HTTPHop] = []
    current = url
    body = _Body()
    status: int | None = None
    address: str | None = None
    headers: dict[str, str] = {}
    names: tuple[str, ...] = ()
    ttfb: float | None = None
    try:
        for _ in range(max_redirects + 1):
            sent = time.perf_counter()
            async with asyncio.timeout(timeout):
                resp = await session.get(current, allow_redirects=False)
            try:
                ttfb = time.perf_counter() - sent
                status = resp.status
                address = pinned if urlsplit(current).hostname == host else None
                headers = {k: resp.headers[k][:200] for k in SELECTED_HEADERS if k in resp.headers}
                names = tuple(sorted({k.lower() for k in resp.headers})[:64])
                location = resp.headers.get("location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    hops.append(HTTPHop(current, resp.status, location[:2000], address))
                    current = urljoin(current, location)
                    if urlsplit(current).scheme not in ("http", "https"):
                        break
                    continue
                await _read_body(resp, body, body_cap, window, timeout)
                break
            finally:
                resp.release()
        else:
            return _observation(
                url,
                start,
                hops,
                current,
                status,
                address,
                headers,
                names,
                ttfb,
                body,
                "protocol",
                f"more than {max_redirects} redirects",
            )
    except Exception as exc:
        failure, error = classify(exc)
        return _observation(
            url, start, hops, current, status, address, headers, names, ttfb, body, failure, error
        )
    return _observation(url, start, hops, current, status, address, headers, names, ttfb, body)


async def _read_body(
    resp: aiohttp.ClientResponse, body: _Body, cap: int, window: float, timeout: float
) -> None:
    window_end: float | None = None
    while True:
        now = time.perf_counter()
        if window_end is not None and now >= window_end:
            body.truncated = "window"
            return
        wait = timeout if window_end is None else min(timeout, window_end - now)
        try:
            async with asyncio.timeout(wait):
                chunk = await resp.content.readany()
        except TimeoutError:
            if window_end is not None and time.perf_counter() >= window_end - 0.001:
                body.truncated = "window"
                return
            raise
        if not chunk:
            return
        now = time.perf_counter()
        if window_end is None:
            window_end = now + window
        body.add(chunk[: cap - body.length], now)
        if body.length >= cap:
            body.truncated = "cap"
            return


def _observation(
    url: str,
    start: float,
    hops: list[HTTPHop],
    current: str,
    status: int | None,
    address: str | None,
    headers: dict[str, str],
    names: tuple[str, ...],
    ttfb: float | None,
    body: _Body,
    failure: str | None = None,
    error: str | None = None,
) -> HTTPObservation:
    sample = bytes(body.sample)
    match = _TITLE.search(sample)
    title = ""
    if match:
        title = " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split())[:200]
    return HTTPObservation(
        url=url,
        elapsed=time.perf_counter() - start,
        failure=failure,
        error=error,
        status=status,
        final_url=current,
        address=address,
        headers=headers,
        header_names=names,
        title=title,
        body_length=body.length,
        body_sha256=body.digest.hexdigest() if body.length else None,
        truncated=body.truncated,
        ttfb=ttfb,
        throughput=body.throughput(),
        hops=tuple(hops),
        body_sample=sample[:4096].decode("utf-8", "replace"),
    )
