"""The border's QUIC censor, as the GFW's since 2024: it decrypts each flow's first Initial (its
keys derive from the Destination Connection ID in the clear, RFC 9001 §5.2), reads the SNI of the
ClientHello inside, and drops the whole flow when the name is listed.

This kernel has no NFQUEUE, so the censor is a user-space UDP relay on the border: a DNAT rule
sends UDP/443 for a censored address to it, it forwards every flow whose first Initial names
another host (or cannot be read — a version it does not know, a version negotiation ping) to the
real server and the answers back, and forwards nothing of a listed one. A sniffer installing a
drop rule would race the server's first answer; a relay decides before anything passes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aioquic._buffer import Buffer
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import QuicPacketType, QuicProtocolVersion, pull_quic_header
from aioquic.tls import pull_client_hello

MAX_FLOWS = 1024
CRYPTO_FRAME = 0x06
Address = tuple[str, int]


def initial_sni(datagram: bytes) -> str | None:
    """The SNI of the ClientHello in a client's first Initial, or None when it cannot be read."""
    try:
        buf = Buffer(data=datagram)
        header = pull_quic_header(buf, host_cid_length=8)
        if header.packet_type != QuicPacketType.INITIAL or header.version not in (
            QuicProtocolVersion.VERSION_1,
            QuicProtocolVersion.VERSION_2,
        ):
            return None
        crypto = CryptoPair()
        crypto.setup_initial(header.destination_cid, is_client=False, version=header.version)
        packet = datagram[: header.packet_length]
        _, payload, _ = crypto.decrypt_packet(packet, buf.tell(), 0)
        hello = pull_client_hello(Buffer(data=_crypto_stream(payload)))
    except Exception:  # not an Initial this censor can read (or garbage): it passes
        return None
    return hello.server_name


def _crypto_stream(payload: bytes) -> bytes:
    """The CRYPTO frames' data from offset 0 (what a first Initial carries)."""
    buf = Buffer(data=payload)
    pieces: dict[int, bytes] = {}
    while not buf.eof():
        kind = buf.pull_uint_var()
        if kind == CRYPTO_FRAME:
            offset, length = buf.pull_uint_var(), buf.pull_uint_var()
            pieces[offset] = buf.pull_bytes(length)
        elif kind in (0x00, 0x01):  # PADDING, PING
            continue
        else:
            break  # anything else ends what the censor reads
    out = b""
    while len(out) in pieces:
        out += pieces[len(out)]
    return out


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: QUICCensor, client: Address) -> None:
        self.relay, self.client = relay, client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay.answer(data, self.client)


class QUICCensor(asyncio.DatagramProtocol):
    """Relays UDP between clients and `server`; drops every flow whose first Initial names a host
    in `names`."""

    def __init__(self, server: Address, names: set[str]) -> None:
        self.server = server
        self.names = {n.lower() for n in names}
        self.flows: dict[Address, asyncio.DatagramTransport | None] = {}  # None: dropped
        self.pending: dict[Address, list[bytes]] = {}
        self.opening: set[asyncio.Future[None]] = set()
        self.transport: asyncio.DatagramTransport | None = None
        self.dropped: list[str] = []  # the names of the flows it dropped, for the tests

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, client: Any) -> None:
        if client in self.flows:
            upstream = self.flows[client]
            if upstream is not None:
                upstream.sendto(data)
            return
        if client in self.pending:  # its upstream is being opened
            self.pending[client].append(data)
            return
        sni = initial_sni(data)
        if sni is not None and sni.lower() in self.names:
            self._remember(client, None)
            self.dropped.append(sni)
            return
        self.pending[client] = [data]
        opening = asyncio.ensure_future(self._open(client))
        self.opening.add(opening)
        opening.add_done_callback(self.opening.discard)

    async def _open(self, client: Address) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), remote_addr=self.server
        )
        self._remember(client, upstream)
        for data in self.pending.pop(client, []):
            upstream.sendto(data)

    def _remember(self, client: Address, upstream: asyncio.DatagramTransport | None) -> None:
        if len(self.flows) >= MAX_FLOWS:  # the oldest flow goes
            oldest = next(iter(self.flows))
            gone = self.flows.pop(oldest)
            if gone is not None:
                gone.close()
        self.flows[client] = upstream

    def answer(self, data: bytes, client: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, client)
