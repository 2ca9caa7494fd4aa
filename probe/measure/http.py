"""HTTP/1.1: one GET on a connection the caller opened (and measured).

The request rides the very connection whose TCP and TLS steps were just observed, as OONI's Web
Connectivity LTE does, so the HTTP evidence always names the server that TLS measured, and one
handshake serves both. Redirects are the flow's business (each hop needs its own connection).

Reading a response is bounded three ways: the first byte must come within `timeout`; once the
response began, a silence of `stall_after` before its end is a stall (Russia's 16-20 KB freeze:
no RST, no FIN, the data just stops); and the body is read up to a cap and for at most a
throughput window, past which a download that still flows ends with a rate (a policer).
"""

from __future__ import annotations

import hashlib
import html
import re
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote

from probe.measure.clock import within
from probe.measure.failure import classify
from probe.measure.http1 import Head, ProtocolError, ResponseParser
from probe.measure.tcp import Connection
from probe.model import Hop, HTTPHop, HTTPObservation, url_parts
from probe.vocabulary import Failure

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) censorprobe/0.2"
)
MAX_HEAD = 32 << 10  # status line and headers: a hostile server can send them forever
MAX_HEADERS = 48  # kept as evidence; a hostile server can send thousands
MAX_HEADER_VALUE = 400
MAX_LOCATION = 2000
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
SAMPLE_BYTES = 65536  # searched for the title
BODY_SAMPLE = 4096  # kept as evidence, and matched against blockpage fingerprints
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Limits:
    """How long and how much one exchange may read."""

    timeout: float  # for the first byte of the response
    stall_after: float  # silence, once the response began, that makes it a stall
    body_cap: int
    window: float  # the throughput window, from the first body byte
    end: float  # perf_counter() of the target's deadline


@dataclass
class _Body:
    length: int = 0  # decoded bytes
    wire: int = 0  # bytes as they crossed the network (for the rate)
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    sample: bytearray = field(default_factory=bytearray)
    first_byte: float | None = None
    last_byte: float | None = None
    stopped: float | None = None  # when reading ended: the window's end for a slow download
    truncated: str | None = None

    def add(self, wire: int, chunk: bytes, now: float) -> None:
        if self.first_byte is None:
            self.first_byte = now
        self.last_byte = now
        self.wire += wire
        self.length += len(chunk)
        self.digest.update(chunk)
        if len(self.sample) < SAMPLE_BYTES:
            self.sample += chunk[: SAMPLE_BYTES - len(self.sample)]

    def throughput(self) -> float | None:
        """Bytes per second from the first body byte until reading stopped: a download that
        slows inside the window is measured over the whole window, not up to its last byte."""
        if self.first_byte is None or self.last_byte is None:
            return None
        span = (self.stopped or self.last_byte) - self.first_byte
        return round(self.wire / span, 1) if span > 0 else None  # one chunk, then EOF: no rate


@dataclass
class Exchange:
    """One request and its response, however far it got."""

    url: str
    address: str | None
    start: float = field(default_factory=time.perf_counter)
    failure: Failure | None = None
    error: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ttfb: float | None = None
    received: int = 0
    received_wire: int = 0  # the same, as it crossed the network (TLS records included)
    last_byte: float | None = None  # perf_counter()
    body: _Body = field(default_factory=_Body)
    ran_out: bool = False  # the target's deadline ended it

    @property
    def location(self) -> str | None:
        """Where a redirect points, as sent."""
        if self.status in REDIRECTS and self.failure is None:
            return self.headers.get("location")
        return None

    def fail(self, failure: Failure, error: str) -> Exchange:
        self.failure, self.error = failure, error
        return self


_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII stays as it is


def request_bytes(url: str) -> bytes:
    parts = url_parts(url)
    path = quote(parts.path, safe=_SAFE)
    return (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: text/html,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")


async def exchange(conn: Connection, url: str, limits: Limits) -> Exchange:
    """GET `url` on `conn` (which the caller closes)."""
    x = Exchange(url, conn.address)
    wire = conn.wire
    try:
        conn.write(request_bytes(url))
        async with within(max(0.0, min(limits.timeout, limits.end - time.perf_counter()))):
            await conn.drain()
        await _receive(conn, ResponseParser(MAX_HEAD), x, limits)
    except ProtocolError as exc:
        failure = Failure.EOF if exc.at_eof else Failure.PROTOCOL
        x.fail(failure, (str(exc) if exc.at_eof else f"not HTTP: {exc}")[:300])
    except Exception as exc:
        x.fail(*classify(exc))
        x.ran_out = x.failure is Failure.TIMEOUT and time.perf_counter() >= limits.end
    x.received_wire = conn.wire - wire
    return x


async def _receive(conn: Connection, parser: ResponseParser, x: Exchange, limits: Limits) -> None:
    decoder: _Decoder | _Identity = _Identity()
    window_end: float | None = None
    while True:
        event = parser.next()
        if event is None:
            now = time.perf_counter()
            if window_end is not None and now >= window_end:
                x.body.stopped, x.body.truncated = window_end, "window"  # still flowing
                return
            data = await _read(conn, x, limits, now)
            if data is None:
                return
            parser.feed(data)  # b"": the parser decides whether the response was complete
        elif isinstance(event, Head):
            x.status = event.status
            x.headers = _headers(event.headers)
            if event.status in REDIRECTS and "location" in x.headers:
                return  # the body of a redirect is not the page
            decoder = _Decoder.for_encoding(x.headers.get("content-encoding", ""))
        elif isinstance(event, bytes):
            now = time.perf_counter()
            chunk = decoder.decode(event, limits.body_cap - x.body.length)
            x.body.add(len(event), chunk, now)
            window_end = window_end or now + limits.window
            if x.body.length >= limits.body_cap:
                x.body.stopped, x.body.truncated = now, "cap"
                return
        else:  # DONE
            x.body.stopped = x.body.last_byte
            return


async def _read(conn: Connection, x: Exchange, limits: Limits, now: float) -> bytes | None:
    """The next bytes, b"" at EOF, or None when the wait ended the exchange (recorded in x).

    The first byte of the response may take `timeout` from the request; once the response began
    (a byte of it, or part of a TLS record carrying it), a silence of `stall_after` before its
    end is a stall."""
    grace = 0.0
    while True:
        last = _last_sign(conn, x)
        wait = x.start + limits.timeout - now if last is None else last + limits.stall_after - now
        wait = max(wait, grace)
        limited = limits.end - now <= wait
        try:
            async with within(max(0.0, min(wait, limits.end - now))):
                return _count(x, await conn.read())
        except TimeoutError:
            now = time.perf_counter()
        if limited:
            x.ran_out = True
            x.fail(Failure.TIMEOUT, "the target's deadline ran out while reading the response")
            return None
        if _last_sign(conn, x) != last:
            continue  # part of a TLS record arrived meanwhile: the response is still moving
        if not grace and conn.pending():
            grace = 1.0  # bytes had arrived; a busy event loop had not handed them over yet
            continue
        if last is None:
            x.fail(Failure.TIMEOUT, f"no byte of the response within {limits.timeout:g}s")
        else:
            x.last_byte = last
            x.fail(Failure.STALL, _stalled(conn, x, last, now))
        return None


def _last_sign(conn: Connection, x: Exchange) -> float | None:
    """When the response last showed progress: its last byte, or the last bytes of a TLS record
    that has not been completed (they may carry its first bytes)."""
    if conn.record_incomplete and conn.arrival is not None:
        return max(conn.arrival, x.last_byte or 0.0)
    return x.last_byte


def _stalled(conn: Connection, x: Exchange, last: float, now: float) -> str:
    if x.received:
        arrived = f"{x.received} bytes of the response arrived"
    else:
        arrived = "the response began (part of a TLS record arrived, none of its bytes readable)"
    return (
        f"{arrived}, the last {last - x.start:.2f}s after the request; then nothing for "
        f"{now - last:.1f}s, with neither FIN nor RST"
    )


def _count(x: Exchange, data: bytes) -> bytes:
    if data:
        x.received += len(data)
        x.last_byte = time.perf_counter()
        if x.ttfb is None:
            x.ttfb = x.last_byte - x.start
    return data


class _Decoder:
    """Content-Encoding gzip or deflate, never producing more than asked (no bombs)."""

    def __init__(self, wbits: int) -> None:
        self.wbits = wbits
        self.z = zlib.decompressobj(wbits)
        self.started = False

    @classmethod
    def for_encoding(cls, encoding: str) -> _Decoder | _Identity:
        name = encoding.strip().lower()
        if name in ("gzip", "x-gzip"):
            return cls(16 + zlib.MAX_WBITS)
        if name == "deflate":
            return cls(zlib.MAX_WBITS)
        return _Identity()

    def decode(self, data: bytes, room: int) -> bytes:
        if room <= 0:
            return b""
        try:
            out = self.z.decompress(data, room)
        except zlib.error:
            if self.started or self.wbits != zlib.MAX_WBITS:
                raise ProtocolError("the body does not decompress") from None
            # "deflate" sent raw, without the zlib wrapper, as some servers do
            self.wbits = -zlib.MAX_WBITS
            self.z = zlib.decompressobj(self.wbits)
            out = self.z.decompress(data, room)
        self.started = True
        return out


class _Identity:
    def decode(self, data: bytes, room: int) -> bytes:
        return data[: max(0, room)]


def _headers(raw: list[tuple[str, str]]) -> dict[str, str]:
    """Every header (repeated ones joined), bounded in number and length."""
    out: dict[str, str] = {}
    for key, text in raw:
        if key not in out and len(out) >= MAX_HEADERS:
            continue
        limit = MAX_LOCATION if key == "location" else MAX_HEADER_VALUE
        out[key] = f"{out[key]}, {text}"[:limit] if key in out else text[:limit]
    return out


def observation(
    url: str,
    chain: list[Exchange],
    hops: list[HTTPHop],
    connections: list[Hop],
    final_url: str | None = None,
) -> HTTPObservation:
    """The evidence of a whole redirect chain: the last exchange's response, every hop before
    (`final_url`: where the chain pointed last, when that was not followed)."""
    last = chain[-1]
    body = last.body
    sample = bytes(body.sample)
    match = _TITLE.search(sample)
    title = ""
    if match:
        title = " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split())[:200]
    return HTTPObservation(
        url=url,
        elapsed=time.perf_counter() - chain[0].start,
        failure=last.failure,
        error=last.error,
        status=last.status,
        final_url=final_url or last.url,
        address=last.address,
        headers=last.headers,
        title=title,
        body_length=body.length,
        body_sha256=body.digest.hexdigest() if body.length else None,
        truncated=body.truncated,
        ttfb=last.ttfb,
        throughput=body.throughput(),
        hops=tuple(hops),
        connections=tuple(connections),
        body_sample=sample[:BODY_SAMPLE].decode("utf-8", "replace"),
        received=last.received,
        received_wire=last.received_wire,
        last_byte=None if last.last_byte is None else round(last.last_byte - last.start, 6),
    )
