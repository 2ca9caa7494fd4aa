"""HTTP: a GET pinned to the addresses the DNS step found, every redirect hop recorded.

The body is read up to a cap and for at most a throughput window: a download that keeps flowing
but slowly (a policer) ends with a rate, not just a timeout.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import html
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from probe.measure.failure import classify
from probe.model import HTTPHop, HTTPObservation

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) censorprobe/0.1"
)
MAX_HEADERS = 48  # a hostile server can send thousands; the first ones are the evidence
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
SAMPLE_BYTES = 65536  # searched for the title
BODY_SAMPLE = 4096  # kept as evidence, and matched against blockpage fingerprints


class PinnedResolver(AbstractResolver):
    """Answers pinned hosts with the addresses the probe measured; asks the system for others."""

    def __init__(self, allowed: Callable[[str], bool] | None = None) -> None:
        self.pins: dict[str, list[str]] = {}
        self.allowed = allowed
        self._fallback = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = self.pins.get(host)
        if pinned is None:
            found = await self._fallback.resolve(host, port, family)
            if self.allowed is not None:
                found = [r for r in found if self.allowed(r["host"])]
                if not found:
                    raise OSError(
                        errno.EACCES, f"{host}: only special-purpose addresses, not contacted"
                    )
            return found
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


def guarded_socket(allowed: Callable[[str], bool]) -> Callable[[Any], socket.socket]:
    """A socket factory that refuses destinations `allowed` refuses: the address policy holds
    at connect time for every connection, redirect hops and address literals included (aiohttp
    does not ask the resolver for a literal)."""

    def factory(addr_info: Any) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        if not allowed(str(sockaddr[0])):
            raise OSError(
                errno.EACCES, f"{sockaddr[0]}: a special-purpose address, refused by policy"
            )
        return socket.socket(family, kind, proto)

    return factory


def make_session(
    resolver: PinnedResolver, ssl_context: ssl.SSLContext, timeout: float
) -> aiohttp.ClientSession:
    """One session per run; every request on a fresh connection, so each fetch is a measurement."""
    connector = aiohttp.TCPConnector(
        resolver=resolver,
        ssl=ssl_context,
        force_close=True,
        use_dns_cache=False,
        limit=0,
        socket_factory=guarded_socket(resolver.allowed) if resolver.allowed else None,
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
    stopped: float | None = None  # when reading ended: the window's end for a slow download
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
        """Bytes per second from the first body byte until reading stopped: a download that
        stalls inside the window is measured over the whole window, not up to its last byte."""
        if self.first_byte is None or self.last_byte is None:
            return None
        span = (self.stopped or self.last_byte) - self.first_byte
        return round(self.length / span, 1) if span > 0 else None  # one chunk, then EOF: no rate

    def stop(self, truncated: str | None, at: float) -> None:
        self.truncated, self.stopped = truncated, at


@dataclass
class _Fetch:
    """What one fetch has seen so far; becomes the observation however it ends."""

    url: str
    start: float
    current: str
    hops: list[HTTPHop] = field(default_factory=list)
    status: int | None = None
    address: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ttfb: float | None = None
    body: _Body = field(default_factory=_Body)

    def observation(self, failure: str | None = None, error: str | None = None) -> HTTPObservation:
        sample = bytes(self.body.sample)
        match = _TITLE.search(sample)
        title = ""
        if match:
            title = " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split())[:200]
        return HTTPObservation(
            url=self.url,
            elapsed=time.perf_counter() - self.start,
            failure=failure,
            error=error,
            status=self.status,
            final_url=self.current,
            address=self.address,
            headers=self.headers,
            title=title,
            body_length=self.body.length,
            body_sha256=self.body.digest.hexdigest() if self.body.length else None,
            truncated=self.body.truncated,
            ttfb=self.ttfb,
            throughput=self.body.throughput(),
            hops=tuple(self.hops),
            body_sample=sample[:BODY_SAMPLE].decode("utf-8", "replace"),
        )


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
    f = _Fetch(url, time.perf_counter(), url)
    try:
        for _ in range(max_redirects + 1):
            sent = time.perf_counter()
            async with asyncio.timeout(timeout):
                resp = await session.get(f.current, allow_redirects=False)
            try:
                f.ttfb = time.perf_counter() - sent
                f.status = resp.status
                f.address = pinned if urlsplit(f.current).hostname == host else None
                f.headers = _headers(resp)
                location = resp.headers.get("location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    f.hops.append(HTTPHop(f.current, resp.status, location[:2000], f.address))
                    f.current = urljoin(f.current, location)
                    if urlsplit(f.current).scheme not in ("http", "https"):
                        break
                    continue
                await _read_body(resp, f.body, body_cap, window, timeout)
                break
            finally:
                resp.release()
        else:
            return f.observation("protocol", f"more than {max_redirects} redirects")
    except Exception as exc:
        return f.observation(*classify(exc))
    return f.observation()


async def _read_body(
    resp: aiohttp.ClientResponse, body: _Body, cap: int, window: float, timeout: float
) -> None:
    window_end: float | None = None
    while True:
        now = time.perf_counter()
        if window_end is not None and now >= window_end:
            return body.stop("window", window_end)
        wait = timeout if window_end is None else min(timeout, window_end - now)
        try:
            async with asyncio.timeout(wait):
                chunk = await resp.content.readany()
        except TimeoutError:
            if window_end is not None and time.perf_counter() >= window_end - 0.001:
                return body.stop("window", window_end)
            raise
        now = time.perf_counter()
        if not chunk:
            return body.stop(None, body.last_byte or now)
        if window_end is None:
            window_end = now + window
        body.add(chunk[: cap - body.length], now)
        if body.length >= cap:
            return body.stop("cap", now)


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ValueError past `limit` bytes (a read(n) may return fewer than n)."""
    data = bytearray()
    while chunk := await resp.content.read(65536):
        data += chunk
        if len(data) > limit:
            raise ValueError(f"{resp.url}: answer larger than {limit} bytes")
    return bytes(data)


def _headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """Every header (repeated ones joined), names lower-cased, bounded in number and length."""
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        if key not in out and len(out) >= MAX_HEADERS:
            continue
        out[key] = f"{out[key]}, {value}"[:400] if key in out else value[:400]
    return out
