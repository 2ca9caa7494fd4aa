"""QUIC and HTTP/3 against real aioquic servers on 127.0.0.1: each way a QUIC path fails maps to
the vocabulary, within its deadline, and the target's HTTP/3 path gets its own verdict. Each test
runs on asyncio's event loop and on uvloop's, which the CLI uses (see conftest.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from probe.engine import schedule
from probe.engine.runtime import Runtime
from probe.helper.server import VersionNegotiation
from probe.lab.dnsserver import DNSServer
from probe.lab.h3server import H3Server, Request
from probe.measure import quic
from probe.model import HTTP3Observation, QUICObservation, Target
from probe.policy import AddressPolicy
from tests.loopback.conftest import server_context, settings

TIMEOUT = 2.0
Cert = tuple[Path, Path]


@pytest.fixture(scope="module")
def cert(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A certificate for 127.0.0.1 from the tests' CA: (chain, key)."""
    issued = ca.issue_cert("127.0.0.1", "quic.test")
    d = tmp_path_factory.mktemp("quic")
    issued.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    issued.private_key_pem.write_to_path(str(d / "key.pem"))
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A certificate for 127.0.0.1 from a CA nobody trusts."""
    issued = trustme.CA().issue_cert("127.0.0.1")
    d = tmp_path_factory.mktemp("rogue")
    issued.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    issued.private_key_pem.write_to_path(str(d / "key.pem"))
    return d / "cert.pem", d / "key.pem"


def limits(timeout: float = TIMEOUT) -> quic.Limits:
    return quic.Limits(timeout, 0.5, 1 << 20, time.perf_counter() + 3 * timeout + 0.5)


async def attempt(
    port: int, ca_file: str, *, timeout: float = TIMEOUT
) -> tuple[QUICObservation, HTTP3Observation | None, float]:
    start = time.perf_counter()
    h, g = await quic.handshake_and_get(
        "127.0.0.1",
        port,
        "127.0.0.1",
        f"https://127.0.0.1:{port}/",
        verify=True,
        ca_file=ca_file,
        limits=limits(timeout),
        policy=AddressPolicy.open(),
    )
    return h, g, time.perf_counter() - start


@pytest.fixture
def free_udp_port() -> int:
    """A UDP port nothing listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def test_an_http3_origin_answers_with_version_alpn_certificate_and_page(
    cert: Cert, ca_file: str
) -> None:
    async with H3Server("127.0.0.1", 0, *cert) as server:
        h, g, _ = await attempt(server.port, ca_file)
    assert h.failure is None and h.version == "0x00000001" and h.alpn == "h3"
    assert h.verified and h.certificate is not None and "127.0.0.1" in h.certificate.sans
    assert g is not None and g.failure is None and g.status == 200
    assert g.title == "127.0.0.1 over HTTP/3" and g.body_length > 0 and g.body_sha256


async def test_nothing_listening_is_refused_at_once(free_udp_port: int, ca_file: str) -> None:
    """A connected UDP socket hears the ICMP port unreachable: no waiting out the timeout."""
    h, g, took = await attempt(free_udp_port, ca_file, timeout=5.0)
    assert (h.failure, g) == ("refused", None)
    assert took < 4.0


async def test_a_silent_address_is_a_timeout_within_the_timeout(ca_file: str) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives, never answers
    try:
        h, _, took = await attempt(silent.getsockname()[1], ca_file, timeout=1.0)
    finally:
        silent.close()
    assert h.failure == "timeout" and "Initial got no answer" in (h.error or "")
    assert took < 1.0 + 1.0


async def test_a_server_that_closes_the_connection_is_close(cert: Cert, ca_file: str) -> None:
    """It speaks no HTTP/3 (another ALPN): it closes the handshake with a CONNECTION_CLOSE."""
    server = H3Server("127.0.0.1", 0, *cert)
    server.configuration.alpn_protocols = ["not-h3"]
    async with server:
        h, g, took = await attempt(server.port, ca_file)
    assert h.failure == "close" and h.error is not None and "CONNECTION_CLOSE" in h.error
    assert g is None and took < TIMEOUT + 1.0


async def test_a_version_negotiation_without_a_common_version_is_close(ca_file: str) -> None:
    loop = asyncio.get_running_loop()

    class OnlyOtherVersions(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            dcid = data[6 : 6 + data[5]]
            rest = data[6 + data[5] :]
            scid = rest[1 : 1 + rest[0]]
            vn = b"\x80\0\0\0\0" + bytes([len(scid)]) + scid + bytes([len(dcid)]) + dcid
            self.transport.sendto(vn + b"\x0a\x0a\x0a\x0a", addr)  # type: ignore[attr-defined]

    transport, _ = await loop.create_datagram_endpoint(
        OnlyOtherVersions, local_addr=("127.0.0.1", 0)
    )
    try:
        h, _, _ = await attempt(transport.get_extra_info("sockname")[1], ca_file)
    finally:
        transport.close()
    assert h.failure == "close" and "version" in (h.error or "").lower()


async def test_a_certificate_from_an_unknown_ca_is_invalid_certificate(
    rogue: Cert, ca_file: str
) -> None:
    async with H3Server("127.0.0.1", 0, *rogue) as server:
        h, g, _ = await attempt(server.port, ca_file)
    assert h.failure == "invalid_certificate" and g is None


class Resets(H3Server):
    def respond(self, request: Request) -> None:
        request.reset()


class Stalls(H3Server):
    def respond(self, request: Request) -> None:
        request.send(200, b"<html><head><title>half", end=False)  # then nothing


@pytest.mark.parametrize(("server", "failure"), [(Resets, "reset"), (Stalls, "stall")])
async def test_after_the_handshake_the_get_fails_at_http(
    cert: Cert, ca_file: str, server: type[H3Server], failure: str
) -> None:
    async with server("127.0.0.1", 0, *cert) as s:
        h, g, took = await attempt(s.port, ca_file)
    assert h.failure is None
    assert g is not None and g.failure == failure, g
    assert took < 3 * TIMEOUT + 0.5 + 1.0


async def test_the_version_ping_is_answered_by_quic_servers_and_the_helper(
    cert: Cert, free_udp_port: int
) -> None:
    loop = asyncio.get_running_loop()
    helper, _ = await loop.create_datagram_endpoint(VersionNegotiation, local_addr=("127.0.0.1", 0))
    policy = AddressPolicy.open()
    try:
        async with H3Server("127.0.0.1", 0, *cert) as server:
            to_server = await quic.version_ping("127.0.0.1", server.port, TIMEOUT, policy)
        to_helper = await quic.version_ping(
            "127.0.0.1", helper.get_extra_info("sockname")[1], TIMEOUT, policy
        )
    finally:
        helper.close()
    nobody = await quic.version_ping("127.0.0.1", free_udp_port, TIMEOUT, policy)
    assert to_server.failure is None and to_helper.failure is None
    assert nobody.failure == "refused"


async def test_a_special_purpose_address_is_never_contacted(ca_file: str) -> None:
    h, g = await quic.handshake_and_get(
        "127.0.0.1",
        443,
        "x",
        None,
        verify=True,
        ca_file=ca_file,
        limits=limits(),
        policy=AddressPolicy(()),
    )
    assert h.failure == "forbidden" and g is None


@pytest.fixture
async def dual_origin(
    cert: Cert, ca: trustme.CA
) -> AsyncIterator[Callable[[bool], Awaitable[int]]]:
    """An HTTPS origin on TCP and an HTTP/3 one on the same UDP port; `start(advertise)`."""
    runners: list[web.AppRunner] = []
    servers: list[H3Server] = []

    async def start(advertise: bool) -> int:
        async def index(request: web.Request) -> web.Response:
            headers = {"Alt-Svc": f'h3=":{port}"; ma=60'} if advertise else {}
            return web.Response(text="<title>tcp</title>", headers=headers)

        app = web.Application()
        app.router.add_get("/", index)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        context = server_context(ca, "127.0.0.1")
        attempts = 0
        while True:  # a free UDP port, whose TCP twin another process may hold: again
            h3 = await H3Server("127.0.0.1", 0, *cert).start()
            servers.append(h3)
            port = h3.port
            try:
                await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
                return port
            except OSError:
                attempts += 1
                if attempts == 10:
                    raise

    yield start
    for s in servers:
        s.close()
    for r in runners:
        await r.cleanup()


@pytest.mark.parametrize(
    ("advertise", "mode", "verdict", "words"),
    [
        (True, "auto", "accessible", "HTTP/3 200 '127.0.0.1 over HTTP/3'"),
        (False, "auto", "unsupported", "advertises no HTTP/3"),
        (False, "always", "accessible", "HTTP/3 200"),
        (True, "never", "not_measured", "quic: never"),
    ],
)
async def test_the_targets_http3_path_has_its_own_verdict(
    dual_origin: Callable[[bool], Awaitable[int]],
    ca_file: str,
    advertise: bool,
    mode: str,
    verdict: str,
    words: str,
) -> None:
    port = await dual_origin(advertise)
    s = settings(ca_file=ca_file, quic=mode, timeout=TIMEOUT)
    rt = await Runtime.open(s)
    try:
        start = time.perf_counter()
        r = await schedule.measure_and_judge(Target.parse(f"https://127.0.0.1:{port}/"), rt)
        took = time.perf_counter() - start
    finally:
        await rt.close()
    assert r.verdict == "accessible"
    assert r.quic is not None and r.quic.verdict == verdict, r.quic
    assert words in r.quic.explanation
    assert took < s.target_bound


async def test_a_name_that_does_not_resolve_has_its_http3_not_measured(ca_file: str) -> None:
    """quic: always, but the DNS step found no address: nothing to try, nothing claimed."""
    async with DNSServer() as refusing:  # refuses every query
        s = settings(
            ca_file=ca_file, quic="always", resolvers=(f"127.0.0.1:{refusing.port}",), timeout=1.0
        )
        rt = await Runtime.open(s)
        try:
            r = await schedule.measure_and_judge(Target.parse("https://nowhere.test/"), rt)
        finally:
            await rt.close()
    assert r.quic is not None and r.quic.verdict == "not_measured"
    assert "the DNS step found no address" in r.quic.explanation


async def test_a_site_whose_https_nobody_reached_has_its_http3_not_measured(ca_file: str) -> None:
    """quic: auto, and no HTTPS answer from here or from a control: nothing observed whether the
    site advertises HTTP/3, so nothing is claimed (not `unsupported`)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        rt = await Runtime.open(settings(ca_file=ca_file, quic="auto", timeout=1.0))
        try:
            r = await schedule.measure_and_judge(Target.parse(f"https://127.0.0.1:{port}/"), rt)
        finally:
            await rt.close()
    assert r.measurement.tcp[0].failure == "refused"
    assert r.quic is not None and r.quic.verdict == "not_measured"
    assert (
        "neither this vantage nor the control got the site's own HTTPS answer" in r.quic.explanation
    )
