"""QUIC and HTTP/3 with aioquic (imported only when a QUIC attempt is made): a handshake with a
given SNI to one address and an HTTP/3 GET on that connection; and a version-negotiation ping
(an Initial of a reserved version, which any QUIC server answers whatever the SNI — OONI's
quicping does the same) that tells a blocked address from a filtered name.

The socket is connected to the one address, so an ICMP port unreachable ends the attempt at once
(`refused`: nothing speaks QUIC there), and nothing else is ever sent anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import html
import os
import re
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from probe.measure.clock import within
from probe.measure.dnswire import connected_udp
from probe.measure.failure import classify
from probe.measure.tls import summarize
from probe.model import HTTP3Observation, QUICObservation, url_parts
from probe.policy import AddressPolicy
from probe.vocabulary import Failure

if TYPE_CHECKING:
    from aioquic.h3.events import H3Event

GREASE_VERSION = 0x1A2A3A4A  # reserved (RFC 9000 §15): a server must answer Version Negotiation
CRYPTO_ERROR = 0x100  # + a TLS alert (RFC 9001 §4.8)
CERTIFICATE_ALERTS = frozenset({42, 43, 44, 45, 46, 48, 49})  # bad_certificate … access_denied
SAMPLE_BYTES = 4096
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_ALT_SVC_H3 = re.compile(r'(?:^|[\s,])h3="([^"]*)"')


def advertised_port(alt_svc: str | None) -> int | None:
    """The port an `Alt-Svc` header offers HTTP/3 on for the same host, or None (another
    host's HTTP/3 would be another measurement)."""
    for authority in _ALT_SVC_H3.findall(alt_svc or ""):
        host, _, port = authority.rpartition(":")
        if not host and port.isdigit() and 0 < int(port) < 65536:
            return int(port)
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float  # the handshake, the first byte of the answer
    stall_after: float  # silence once the answer began
    body_cap: int
    end: float  # perf_counter() of the target's deadline

    def wait(self, seconds: float) -> float:
        return max(0.0, min(seconds, self.end - time.perf_counter()))


@functools.cache
def _client_class() -> type:
    """The protocol class, built on first use (aioquic imported only then)."""
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.quic.events import (
        ConnectionTerminated,
        HandshakeCompleted,
        QuicEvent,
        StreamReset,
    )

    class Client(QuicConnectionProtocol):
        """Queues the HTTP/3 events of its one request, and says how the handshake ended (by
        its own events: aioquic's `wait_connected` misses a handshake that completes before
        its waiter exists, which uvloop's order of callbacks allows)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.events: asyncio.Queue[Any] = asyncio.Queue()
            self.terminated: ConnectionTerminated | None = None
            self.ended = asyncio.Event()  # connected, closed, or refused: the handshake is over
            self.connected = False
            self.refused = False  # an ICMP port unreachable arrived

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, HandshakeCompleted):
                self.connected = True
                self.ended.set()
            if isinstance(event, ConnectionTerminated):
                self.terminated = event
                self.ended.set()
                self.events.put_nowait(event)
            elif isinstance(event, StreamReset):
                self.events.put_nowait(event)
            for h3_event in self.h3.handle_event(event):
                self.events.put_nowait(h3_event)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(cast(asyncio.BaseTransport, _Connected(transport)))

        def error_received(self, exc: Exception) -> None:
            if isinstance(exc, ConnectionRefusedError):
                self.refused = True
                self.ended.set()

    return Client


class _Connected:
    """The socket is connected to its one peer: datagrams go without an address (uvloop refuses
    an address on a connected socket; asyncio ignores it)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.transport.sendto(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _configuration(sni: str, verify: bool, ca_file: str | None) -> Any:
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration

    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=sni,
        verify_mode=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
    )
    if verify:  # the system's trust, as the TCP path has it, plus the probe's own CA file
        defaults = ssl.get_default_verify_paths()
        config.cafile = ca_file or defaults.cafile
        config.capath = defaults.capath
    return config


async def handshake_and_get(
    address: str,
    port: int,
    sni: str,
    url: str | None,
    *,
    verify: bool,
    ca_file: str | None,
    limits: Limits,
    policy: AddressPolicy,
) -> tuple[QUICObservation, HTTP3Observation | None]:
    """A QUIC handshake with `sni` to `address`, then (for a `url`) an HTTP/3 GET of it."""
    if not policy.allows(address):
        error = f"{address}: a special-purpose address, refused by the address policy"
        return QUICObservation(address, port, sni, 0.0, Failure.FORBIDDEN, error), None
    client_class = _client_class()
    from aioquic.quic.connection import QuicConnection

    loop = asyncio.get_running_loop()
    try:
        sock = connected_udp(address, port)
    except OSError as exc:
        failure, error = classify(exc)
        return QUICObservation(address, port, sni, 0.0, failure, error), None
    connection = QuicConnection(configuration=_configuration(sni, verify, ca_file))
    transport, client = await loop.create_datagram_endpoint(
        lambda: client_class(connection), sock=sock
    )
    try:
        observation = await _handshake(client, sock.getpeername(), address, port, sni, limits)
        if observation.failure is not None or url is None:
            return observation, None
        return observation, await _get(client, url, limits)
    finally:
        client.close()
        transport.close()


async def _handshake(
    client: Any, peer: Any, address: str, port: int, sni: str, limits: Limits
) -> QUICObservation:
    start = time.perf_counter()
    client.connect(peer)
    with contextlib.suppress(TimeoutError):
        async with within(limits.wait(limits.timeout)):
            await client.ended.wait()
    elapsed = time.perf_counter() - start
    if client.refused:
        return QUICObservation(
            address, port, sni, elapsed, Failure.REFUSED, "ICMP port unreachable: no QUIC there"
        )
    if client.connected:
        quic = client._quic
        der = _peer_certificate(quic)
        return QUICObservation(
            address,
            port,
            sni,
            elapsed,
            version=f"0x{quic._version:08x}",
            alpn=quic.tls.alpn_negotiated,
            certificate=summarize(der) if der else None,
            verified=quic.configuration.verify_mode == ssl.CERT_REQUIRED,
        )
    if client.terminated is not None:
        failure, error = _closed(client.terminated)
        return QUICObservation(address, port, sni, elapsed, failure, error)
    return QUICObservation(
        address,
        port,
        sni,
        elapsed,
        Failure.TIMEOUT,
        f"no QUIC handshake within {limits.timeout:g}s (the Initial got no answer)",
    )


def _peer_certificate(quic: Any) -> bytes | None:
    cert = getattr(quic.tls, "_peer_certificate", None)
    if cert is None:
        return None
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(cert.public_bytes(Encoding.DER))


def _closed(event: Any) -> tuple[Failure, str]:
    """How a connection that closed before the handshake ended, in the vocabulary."""
    code, reason = event.error_code, event.reason_phrase or ""
    if CRYPTO_ERROR <= code < CRYPTO_ERROR + 0x100 and code - CRYPTO_ERROR in CERTIFICATE_ALERTS:
        return Failure.INVALID_CERTIFICATE, f"certificate: {reason}"[:300]
    return Failure.CLOSE, f"CONNECTION_CLOSE 0x{code:x}: {reason}"[:300]


async def _get(client: Any, url: str, limits: Limits) -> HTTP3Observation:
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.events import ConnectionTerminated, StreamReset

    parts = url_parts(url)
    start = time.perf_counter()
    stream = client._quic.get_next_available_stream_id()
    client.h3.send_headers(
        stream,
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", parts.netloc.encode()),
            (b":path", parts.path.encode()),
            (b"user-agent", b"censorprobe"),
        ],
        end_stream=True,
    )
    client.transmit()
    status: int | None = None
    length, received = 0, 0
    digest = hashlib.sha256()
    sample = bytearray()
    ttfb: float | None = None
    last: float | None = None
    failure: Failure | None = None
    error: str | None = None
    while True:
        # the first byte may take `timeout`; once the answer began, a silence `stall_after`
        wait = start + limits.timeout if last is None else last + limits.stall_after
        wait -= time.perf_counter()
        try:
            async with within(limits.wait(wait)):
                event: H3Event | Any = await client.events.get()
        except TimeoutError:
            if last is None:
                failure, error = Failure.TIMEOUT, f"no HTTP/3 answer within {limits.timeout:g}s"
            else:
                failure = Failure.STALL
                error = f"{received} bytes of the answer arrived, then nothing"
            break
        if isinstance(event, StreamReset) and event.stream_id == stream:
            failure, error = Failure.RESET, f"HTTP/3 stream reset (error 0x{event.error_code:x})"
            break
        if isinstance(event, ConnectionTerminated):
            failure, error = Failure.RESET, f"the connection closed: {_closed(event)[1]}"
            break
        if not isinstance(event, HeadersReceived | DataReceived) or event.stream_id != stream:
            continue
        last = time.perf_counter()
        ttfb = ttfb if ttfb is not None else last - start
        if isinstance(event, HeadersReceived):
            status = _status(event.headers)
        else:
            received += len(event.data)
            kept = event.data[: max(0, limits.body_cap - length)]
            length += len(kept)
            digest.update(kept)
            sample += kept[: max(0, SAMPLE_BYTES - len(sample))]
        if event.stream_ended or length >= limits.body_cap:
            break
    match = _TITLE.search(bytes(sample))
    title = ""
    if match:
        title = " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split())[:200]
    return HTTP3Observation(
        url,
        time.perf_counter() - start,
        failure,
        error,
        status=status,
        title=title,
        body_length=length,
        body_sha256=digest.hexdigest() if length else None,
        ttfb=ttfb,
        received=received,
    )


def _status(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b":status":
            return int(value) if value.isdigit() else None
    return None


async def version_ping(
    address: str, port: int, timeout: float, policy: AddressPolicy
) -> QUICObservation:
    """An Initial of a reserved version and no SNI: a QUIC server answers Version Negotiation
    whatever name it serves, so an answer here while the real SNI fails points at the name."""
    if not policy.allows(address):
        error = f"{address}: a special-purpose address, refused by the address policy"
        return QUICObservation(address, port, "", 0.0, Failure.FORBIDDEN, error, kind="version")
    start = time.perf_counter()
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class Ping(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not answer.done():
                answer.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not answer.done() and isinstance(exc, OSError):
                answer.set_exception(exc)

    try:
        sock = connected_udp(address, port)
    except OSError as exc:
        failure, error = classify(exc)
        return QUICObservation(address, port, "", 0.0, failure, error, kind="version")
    transport, _ = await loop.create_datagram_endpoint(Ping, sock=sock)
    try:
        transport.sendto(_grease_initial())  # no address: the socket is connected
        async with within(timeout):
            data = await answer
    except TimeoutError:
        return QUICObservation(
            address,
            port,
            "",
            time.perf_counter() - start,
            Failure.TIMEOUT,
            f"no Version Negotiation within {timeout:g}s",
            kind="version",
        )
    except OSError as exc:
        failure, error = classify(exc)
        return QUICObservation(
            address, port, "", time.perf_counter() - start, failure, error, kind="version"
        )
    finally:
        transport.close()
    elapsed = time.perf_counter() - start
    if len(data) < 7 or not data[0] & 0x80 or data[1:5] != b"\0\0\0\0":
        return QUICObservation(
            address,
            port,
            "",
            elapsed,
            Failure.PROTOCOL,
            "not a Version Negotiation",
            kind="version",
        )
    return QUICObservation(address, port, "", elapsed, kind="version")


def _grease_initial() -> bytes:
    """An Initial's layout (no token, a length, a payload) in a reserved version, 1,200 bytes
    as an Initial must be: a server that parses it finds a version it does not speak."""
    dcid, scid = os.urandom(8), os.urandom(8)
    head = bytes([0xC0]) + GREASE_VERSION.to_bytes(4, "big")
    head += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + b"\0"  # no token
    length = 1200 - len(head) - 2
    return head + (0x4000 | length).to_bytes(2, "big") + os.urandom(length)
