"""TLS against real servers on 127.0.0.1: trusted, wrong name, untrusted, reset, junk, SNI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
import trustme

from probe.measure import tls
from probe.model import TLSObservation
from probe.policy import AddressPolicy
from probe.verdict import judge
from tests.loopback.conftest import (
    Handler,
    measure,
    page,
    reset,
    reset_after_hello,
    server_context,
)


async def handshake(
    port: int, sni: str, ca_file: str | None, verify: bool = True
) -> TLSObservation:
    ctx = tls.make_context(ca_file, verify=verify)
    return await tls.connect_and_handshake(
        "127.0.0.1", port, sni, ctx, timeout=1.0, policy=AddressPolicy.open()
    )


async def test_trusted_origin_records_version_cipher_and_certificate(
    tls_origin: int, ca_file: str
) -> None:
    obs = await handshake(tls_origin, "localhost", ca_file)
    assert obs is not None
    assert obs.failure is None and obs.verified
    assert obs.version in ("TLSv1.2", "TLSv1.3")
    assert obs.cipher
    assert obs.certificate is not None
    assert "localhost" in obs.certificate.sans
    assert len(obs.certificate.sha256) == 64


async def test_wrong_name_is_invalid_certificate(
    web_server: Callable[..., Awaitable[int]], ca: trustme.CA, ca_file: str
) -> None:
    port = await web_server(page("wrong"), server_context(ca, "other.example"))
    obs = await handshake(port, "localhost", ca_file)
    assert obs is not None
    assert obs.failure == "invalid_certificate"
    assert "mismatch" in (obs.error or "").lower() or "match" in (obs.error or "").lower()


async def test_untrusted_certificate_is_kept_as_evidence(
    web_server: Callable[..., Awaitable[int]], ca_file: str
) -> None:
    """The probe's run records the interceptor's certificate even though it fails verification."""
    rogue = trustme.CA(organization_name="Rogue Interception CA")
    port = await web_server(page("intercepted"), server_context(rogue, "localhost"))
    m = await measure(_url(port), ca_file=ca_file)
    (obs,) = m.tls
    assert obs.failure == "invalid_certificate"
    assert obs.certificate is not None
    assert "Rogue Interception CA" in obs.certificate.issuer
    assert m.http is None  # nothing fetched over a connection that did not validate


async def test_reset_after_client_hello_is_reset(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await raw_server(reset_after_hello)
    obs = await handshake(port, "localhost", None)
    assert obs.connected and obs.failure == "reset"


async def test_junk_instead_of_tls_is_protocol(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nthis is not TLS at all" * 20)
        await writer.drain()
        await asyncio.sleep(0.5)

    port = await raw_server(junk)
    obs = await handshake(port, "localhost", None)
    assert obs is not None and obs.failure == "protocol"


async def test_silent_server_times_out(raw_server: Callable[[Handler], Awaitable[int]]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    port = await raw_server(silent)
    obs = await handshake(port, "localhost", None)
    assert obs is not None and obs.failure == "timeout"
    assert obs.elapsed < 10  # bounded by the 1 s timeout, not the server's 5 s


async def test_close_after_client_hello_is_eof(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # all of the ClientHello: closing with unread data sends a RST
        writer.close()

    port = await raw_server(close)
    obs = await handshake(port, "localhost", None)
    assert obs is not None and obs.failure == "eof"


def _url(port: int) -> str:
    return f"https://localhost:{port}/"


async def test_sni_filter_is_told_from_ip_blocking(
    raw_server: Callable[[Handler], Awaitable[int]], tls_origin: int, ca_file: str
) -> None:
    """A middlebox that resets ClientHellos naming `localhost` but passes other names: tls/reset."""

    async def sni_filter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await reader.read(4096)
        if b"localhost" in hello:
            reset(writer)
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", tls_origin)
        up_writer.write(hello)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    port = await raw_server(sni_filter)
    m = await measure(_url(port), ca_file=ca_file)
    assert [o.failure for o in m.tls] == ["reset"]
    assert [(o.sni, o.failure) for o in m.sni_check] == [("example.com", None)]
    verdict = judge(m)
    assert verdict.verdict == "blocked"
    assert verdict.blocking is not None
    assert (verdict.blocking.layer, verdict.blocking.method) == ("tls", "reset")
    assert "SNI localhost" in verdict.explanation and "example.com" in verdict.explanation


async def test_a_certificate_summary_is_kept_for_the_same_certificate_only(
    web_server: Callable[..., Awaitable[int]],
    ca: trustme.CA,
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Targets that present one certificate share its summary; another certificate is never
    read off a kept one, and the oldest is dropped where the kept are SUMMARIES."""
    monkeypatch.setattr(tls, "_summaries", {})
    monkeypatch.setattr(tls, "SUMMARIES", 2)
    first = await web_server(page("one"), server_context(ca, "localhost", "one.example"))
    second = await web_server(page("two"), server_context(ca, "localhost", "two.example"))
    a = (await handshake(first, "localhost", ca_file)).certificate
    b = (await handshake(second, "localhost", ca_file)).certificate
    assert a is not None and b is not None
    assert "one.example" in a.sans and "two.example" in b.sans and a.sha256 != b.sha256
    again = (await handshake(first, "localhost", ca_file)).certificate
    assert again is a  # kept: not parsed again
    third = await web_server(page("three"), server_context(ca, "localhost", "three.example"))
    c = (await handshake(third, "localhost", ca_file)).certificate
    assert c is not None and "three.example" in c.sans
    once_more = (await handshake(first, "localhost", ca_file)).certificate
    assert once_more == a and once_more is not a  # dropped as the oldest, parsed again
