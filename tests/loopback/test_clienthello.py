"""Our ClientHellos on loopback: answered by OpenSSL's own server (which knows neither ML-KEM
nor ECH: its ServerHello, HelloRetryRequest or alert is an answer), and each outcome of a server
that does not answer: reset, timeout, end of file, not TLS."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trustme

from probe.engine.variants import shapes
from probe.measure.clienthello import send
from probe.model import PublishedECH
from probe.policy import AddressPolicy
from probe.vocabulary import Failure
from tests.conftest import free_port, require_tool
from tests.loopback.conftest import Handler, reset

LOOPBACK = AddressPolicy.open()  # the probe's own policy: its operator chose the targets
VARIANTS = shapes("site.test", "example.com", PublishedECH("cover.test", 7, 1, 1), every=True)


@pytest.fixture(scope="module")
def s_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`openssl s_server` on 127.0.0.1 (TLS 1.3 and 1.2), for as long as the module runs."""
    openssl = require_tool("openssl")
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("s_server")
    cert = ca.issue_cert("site.test", "cover.test")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    port = free_port()
    proc = subprocess.Popen(
        [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(folder / "cert.pem"),
         "-key", str(folder / "key.pem"), "-quiet", "-naccept", str(4 * len(VARIANTS))],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"openssl s_server ended: {proc.stderr.read().decode()[-300:]}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", port), 0.1):
                    break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("name", sorted(VARIANTS))
async def test_openssl_answers_every_variant(s_server: int, name: str) -> None:
    seen = await send(name, "127.0.0.1", s_server, VARIANTS[name], 5.0, LOOPBACK)
    assert seen.failure is None, seen
    assert seen.answer in ("ServerHello", "HelloRetryRequest") or seen.answer.startswith("alert")
    assert seen.variant == name and seen.size > 200


async def test_openssl_takes_the_x25519_share_beside_the_post_quantum_one(s_server: int) -> None:
    """Debian's OpenSSL 3.0 knows no X25519MLKEM768: it skips that share and takes X25519."""
    seen = await send("pq", "127.0.0.1", s_server, VARIANTS["pq"], 5.0, LOOPBACK)
    assert seen.failure is None
    assert seen.answer == "ServerHello"  # the X25519 share beside it is taken at once


async def _drain_then(action: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        await action(writer)

    return handler


async def _reset(writer: asyncio.StreamWriter) -> None:
    reset(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _blockpage(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(5)


async def _silence(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)


async def _trickle(writer: asyncio.StreamWriter) -> None:
    """A record's header, one byte at a time, slower than any timeout."""
    for byte in b"\x16\x03\x03\x00\x50":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.4)


@pytest.mark.parametrize(
    ("action", "failure"),
    [
        (_reset, Failure.RESET),
        (_close, Failure.EOF),
        (_blockpage, Failure.PROTOCOL),
        (_silence, Failure.TIMEOUT),
        (_trickle, Failure.TIMEOUT),
    ],
)
async def test_what_a_censor_or_a_hostile_server_does_is_named(
    raw_server: Callable[[Handler], Awaitable[int]],
    action: Callable[[asyncio.StreamWriter], Awaitable[None]],
    failure: Failure,
) -> None:
    port = await raw_server(await _drain_then(action))
    seen = await send("baseline", "127.0.0.1", port, VARIANTS["baseline"], 1.0, LOOPBACK)
    assert seen.failure == failure, seen
    assert seen.connected and seen.elapsed < 3.0


async def test_a_refused_connection_is_a_connect_failure() -> None:
    seen = await send("ech", "127.0.0.1", free_port(), VARIANTS["ech"], 1.0, LOOPBACK)
    assert not seen.connected
    assert seen.failure == Failure.REFUSED
    assert seen.sni == "cover.test"


async def test_a_split_segment_clienthello_leaves_in_two_reads(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    """The server sees the first segment alone: the cut inside the SNI reaches the wire."""
    reads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reads.append(await reader.read(65536))
        reads.append(await reader.read(65536))
        writer.write(b"\x15\x03\x03\x00\x02\x02\x28")
        await writer.drain()

    port = await raw_server(handler)
    seen = await send("split_segment", "127.0.0.1", port, VARIANTS["split_segment"], 2.0, LOOPBACK)
    assert seen.failure is None and seen.answer == "alert 40"
    assert b"site.test" not in reads[0] and reads[0].endswith(b"site")
