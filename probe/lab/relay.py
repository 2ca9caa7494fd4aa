"""The lab's TCP middleboxes, each a relay that reads a connection's first bytes (a ClientHello,
or a request's head) and decides by the host name in them:

- `TCPCensor`, at the border (connections DNATed to it): closes the client's connection with a
  FIN, relaying nothing, where its name appears; relays the rest to the origin. What netem's
  DPICloseConnectionForString/ForTLSSNI do in OONI's QA suite, and what iptables cannot (it
  resets or drops, it does not close).
- `ECHCensor`, at the border: holds silent (relays nothing, answers nothing) a connection whose
  ClientHello carries an ECH extension with a listed outer name, as Russia's TSPU does with
  `cloudflare-ech.com` since November 2024; relays the rest, the same ClientHello without ECH
  included.
- `TransparentProxy`, the ISP's (its resolver answers the proxy's address for some names): relays
  each connection to the address of the host it names, as an intercepting proxy does; for the
  hosts it censors it answers a request with a page of its own instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Mapping

FIRST_BYTES = 4096
FIRST_WAIT = 5.0


async def _first(reader: asyncio.StreamReader) -> bytes:
    """The start of what the client sends (a ClientHello fits, and a request's head)."""
    try:
        async with asyncio.timeout(FIRST_WAIT):
            return await reader.read(FIRST_BYTES)
    except (TimeoutError, OSError):
        return b""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


async def relay(
    first: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    to: tuple[str, int],
) -> None:
    """Relay a client (whose `first` bytes were read already) to `to`, both ways, until both
    sides are done."""
    try:
        up_reader, up_writer = await asyncio.open_connection(*to)
    except OSError:
        writer.close()
        return
    try:
        up_writer.write(first)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        up_writer.close()
        writer.close()


class TCPCensor:
    """Closes (FIN) a connection whose first bytes name `host`; relays the others to `origin`."""

    def __init__(self, host: str, origin: tuple[str, int]) -> None:
        self.name = host.lower().encode()
        self.origin = origin

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await _first(reader)
        if self.name in first.lower():
            writer.close()  # a FIN, not a RST: the client reads an end of file
            return
        await relay(first, reader, writer, self.origin)


ECH_EXTENSION = 0xFE0D


def client_hello(record: bytes) -> tuple[str, frozenset[int]] | None:
    """The SNI and the extension types of the ClientHello a TLS record holds; None for
    anything else."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:
            return None
        body = record[9:]
        at = 2 + 32  # legacy version, random
        at += 1 + body[at]  # session id
        at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher suites
        at += 1 + body[at]  # compression methods
        end = at + 2 + int.from_bytes(body[at : at + 2], "big")
        at += 2
        sni, types = "", set()
        while at + 4 <= min(end, len(body)):
            kind, length = struct.unpack_from("!HH", body, at)
            if kind == 0:  # server_name: list length, name type, name length, name
                sni = body[at + 9 : at + 4 + length].decode("ascii", "replace").lower()
            types.add(kind)
            at += 4 + length
    except IndexError:
        return None
    return sni, frozenset(types)


class ECHCensor:
    """Holds silent a connection whose ClientHello (its first record, read whole) carries an ECH
    extension and one of `outer_names` in its SNI; relays the others to `origin`."""

    def __init__(self, outer_names: frozenset[str], origin: tuple[str, int]) -> None:
        self.outer_names = outer_names
        self.origin = origin

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(FIRST_WAIT):
                head = await reader.readexactly(5)
                record = head + await reader.readexactly(int.from_bytes(head[3:5], "big"))
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            writer.close()
            return
        hello = client_hello(record)
        if hello is not None and ECH_EXTENSION in hello[1] and hello[0] in self.outer_names:
            with contextlib.suppress(OSError):
                while await reader.read(65536):  # silence, until the client gives up
                    pass
            writer.close()
            return
        await relay(record, reader, writer, self.origin)


ACCESS_DENIED = b"""<!doctype html>
<html><head><title>Access Denied</title></head>
<body><div><h1>Access Denied</h1>
<p>This request cannot be served in your jurisdiction.</p></div></body></html>
"""


def access_denied() -> bytes:
    """A blockpage no fingerprint list knows (netemx's, in OONI's QA suite), as an HTTP/1.1
    response that closes its connection."""
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
        f"Content-Length: {len(ACCESS_DENIED)}\r\n\r\n"
    )
    return head.encode() + ACCESS_DENIED


class TransparentProxy:
    """Relays each connection to the address of the host its first bytes name (`zone`: host ->
    address), on the port it came in on; over plain HTTP, answers `censored` hosts' requests with
    `access_denied()`."""

    def __init__(self, zone: Mapping[str, str], port: int, censored: frozenset[str]) -> None:
        # the longest name first: a.lab.test must not be taken for the a.lab.test in b-a.lab.test
        self.zone = sorted(((h.encode(), a) for h, a in zone.items()), key=lambda e: -len(e[0]))
        self.port = port
        self.censored = {h.encode() for h in censored}

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await _first(reader)
        lowered = first.lower()
        named = next(((h, a) for h, a in self.zone if h in lowered), None)
        if named is None:
            writer.close()
            return
        host, address = named
        if self.port == 80 and host in self.censored:
            writer.write(access_denied())
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            return
        await relay(first, reader, writer, (address, self.port))
