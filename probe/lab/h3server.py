"""An HTTP/3 server (aioquic) for the lab's origins and the tests: override `respond()`.

The default answers every GET with `page(host, path)`; a test's subclass may stall, reset the
stream or close the connection instead (`Request`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent


class Request:
    """One GET on one stream, and what a handler can do about it."""

    def __init__(self, protocol: _Protocol, stream: int, headers: dict[bytes, bytes]) -> None:
        self.protocol = protocol
        self.stream = stream
        self.host = headers.get(b":authority", b"").decode(errors="replace").split(":")[0]
        self.path = headers.get(b":path", b"/").decode(errors="replace")

    def send(self, status: int, body: bytes = b"", *, end: bool = True) -> None:
        h3 = self.protocol.h3
        assert h3 is not None
        headers = [(b":status", str(status).encode()), (b"content-type", b"text/html")]
        h3.send_headers(self.stream, headers)
        h3.send_data(self.stream, body, end_stream=end)
        self.protocol.transmit()

    def reset(self, code: int = 0x10C) -> None:  # H3_REQUEST_CANCELLED
        self.protocol._quic.reset_stream(self.stream, code)
        self.protocol.transmit()


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, respond: Callable[[Request], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.respond = respond
        self.h3: H3Connection | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
        if self.h3 is None:
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.respond(Request(self, h3_event.stream_id, dict(h3_event.headers)))


class H3Server:
    """HTTP/3 on (host, port), UDP; `async with` or `start()`/`close()`."""

    def __init__(self, host: str, port: int, certfile: Path, keyfile: Path) -> None:
        self.host, self.port = host, port
        self.configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        self.configuration.load_cert_chain(certfile, keyfile)
        self._server: QuicServer | None = None

    def respond(self, request: Request) -> None:
        """Override: the answer to one GET (the default: a page naming the host)."""
        request.send(200, page(request.host))

    async def start(self) -> H3Server:
        self._server = await serve(
            self.host,
            self.port,
            configuration=self.configuration,
            create_protocol=lambda *a, **kw: _Protocol(*a, respond=self.respond, **kw),
        )
        if self.port == 0 and self._server._transport is not None:
            self.port = self._server._transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def __aenter__(self) -> H3Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await asyncio.sleep(0)


def page(host: str) -> bytes:
    return (
        f"<html><head><title>{host} over HTTP/3</title></head><body><h1>{host}</h1>"
        f"<p>The genuine page of {host}, over QUIC.</p></body></html>"
    ).encode()
