"""ECH end to end on 127.0.0.1: a resolver that publishes an ECH configuration in the site's
HTTPS record, the site, and the lab's TSPU-style censor in front of it (it holds silent an ECH
ClientHello to the listed outer name). What `check` says of ECH, `--fail-on-ech`, `--routes`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import dns.message
import dns.rdatatype
import pytest
import trustme

from probe.lab import relay
from probe.lab import scenarios as lab
from probe.lab.dnsserver import DNSServer, Replies
from probe.lab.servers import ech_config_list
from probe.measure import dnswire, svcb
from probe.vocabulary import Failure
from tests.loopback.conftest import page, server_context
from tests.loopback.test_cli import censorprobe

Start = Callable[..., Awaitable[int]]
ECH_RECORD = f'1 . alpn="h2" ech="{base64.b64encode(ech_config_list()).decode()}"'


class Zone(DNSServer):
    """ech.test and plain.test at 127.0.0.1; ech.test's HTTPS record publishes ECH."""

    def handle(self, query: dns.message.Message) -> Replies:
        name = query.question[0].name.to_text(omit_final_dot=True)
        rdtype = query.question[0].rdtype
        if rdtype == dns.rdatatype.A:
            return [(0.0, self.answer(query, ["127.0.0.1"]))]
        if rdtype == dns.rdatatype.HTTPS and name == "ech.test":
            return [(0.0, self.answer(query, [ECH_RECORD]))]
        return [(0.0, self.answer(query, []))]


@pytest.fixture
async def zone() -> AsyncIterator[Zone]:
    async with Zone() as server:
        yield server


@pytest.fixture
async def origin(web_server: Start, ca: trustme.CA) -> int:
    context = server_context(ca, "ech.test", "plain.test", "mute.test", lab.ECH_PUBLIC_NAME)
    return await web_server(page("The site"), context)


async def censored(origin: int) -> tuple[int, asyncio.Server]:
    """The origin behind the TSPU-style censor: its port."""
    censor = relay.ECHCensor(frozenset({lab.ECH_PUBLIC_NAME}), ("127.0.0.1", origin))
    server = await asyncio.start_server(censor, "127.0.0.1", 0)
    return int(server.sockets[0].getsockname()[1]), server


def args(zone: Zone, ca_file: str, *rest: str) -> tuple[str, ...]:
    return ("check", "--resolver", zone.address, "--ca-file", ca_file, "--timeout", "1", *rest)


async def test_ech_answered_where_published_and_unsupported_where_not(
    zone: Zone, origin: int, ca_file: str
) -> None:
    urls = (f"https://ech.test:{origin}/", f"https://plain.test:{origin}/")
    code, out, _ = await censorprobe(*args(zone, ca_file, "--format", "json", *urls))
    assert code == 0
    by_url = {r["url"]: r for r in json.loads(out)["results"]}  # in the order they finished
    published, plain = (by_url[u] for u in urls)
    assert published["verdict"] == "accessible"
    assert published["ech"]["verdict"] == "accessible", published["ech"]["explanation"]
    assert (
        f"outer name {lab.ECH_PUBLIC_NAME}, config id {lab.ECH_CONFIG_ID}"
        in (published["ech"]["explanation"])
    )
    hello = published["evidence"]["probe"]["hello"]
    assert hello["tried"] == "ech"  # its own handshake was answered: ECH's variants only
    assert sorted(v["variant"] for v in hello["variants"]) == ["ech", "ech_outer"]
    record = published["evidence"]["probe"]["https_records"][0]
    assert record["ech"][0]["public_name"] == lab.ECH_PUBLIC_NAME
    assert plain["ech"]["verdict"] == "unsupported"
    assert plain["evidence"]["probe"]["hello"]["variants"] == []  # no extra ClientHello


async def test_a_blocked_ech_is_told_and_fails_ci_only_when_asked(
    zone: Zone, origin: int, ca_file: str
) -> None:
    port, server = await censored(origin)
    try:
        url = f"https://ech.test:{port}/"
        code, out, _ = await censorprobe(*args(zone, ca_file, "--format", "json", url))
        (r,) = json.loads(out)["results"]
        assert code == 0  # the site itself is accessible
        assert r["verdict"] == "accessible"
        ech = r["ech"]
        assert (ech["verdict"], ech["blocking"]["layer"], ech["blocking"]["method"]) == (
            "blocked",
            "tls",
            "timeout",
        )
        assert "while the same ClientHello without ECH is answered" in ech["explanation"]
        code, out, _ = await censorprobe(*args(zone, ca_file, "--fail-on-ech", url))
        assert code == 1
        assert "blocked tls/timeout" in out  # the table's ECH column
        assert f"{url} (ECH): ECH blocked" in out
    finally:
        server.close()


async def test_routes_say_what_gets_through(zone: Zone, origin: int, ca_file: str) -> None:
    port, server = await censored(origin)
    try:
        url = f"https://ech.test:{port}/"
        code, out, _ = await censorprobe(*args(zone, ca_file, "--routes", url), timeout=90)
        assert code == 0, out
        header, row = out.splitlines()[:2]
        assert header.split() == [
            "SERVICE",
            "URL",
            "TLS",
            "TLS+PQ",
            "ECH",
            "SPLIT",
            "HTTP/3",
            "DoH",
        ]
        # HTTP/3: no answer from here, and no control to say the site speaks none
        assert row.split()[-6:] == ["yes", "yes", "no", "yes", "no", "-"]
        assert f"{url} (ECH): blocked tls/timeout" in out
        assert "Availability only" in out
        code, out, _ = await censorprobe(
            *args(zone, ca_file, "--routes", "--format", "json", url), timeout=90
        )
        (r,) = json.loads(out)["results"]
        outcomes = {k: v["outcome"] for k, v in r["routes"].items()}
        assert outcomes == {
            "tls": "through",
            "tls_pq": "through",
            "ech": "fails",
            "split": "through",
            "http3": "fails",
            "doh": "not_measured",
        }
        assert len(r["evidence"]["probe"]["hello"]["variants"]) == 8  # every variant
    finally:
        server.close()


class Forgetful(Zone):
    """Drops the first query for each HTTPS record (a datagram lost), answers the next; never
    answers those of `mute.test` (a resolver, or a box before it, that drops type 65)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def handle(self, query: dns.message.Message) -> Replies:
        name = query.question[0].name.to_text(omit_final_dot=True)
        https = query.question[0].rdtype == dns.rdatatype.HTTPS
        if https and (name == "mute.test" or name not in self.seen):
            self.seen.add(name)
            return []
        return super().handle(query)


async def test_a_lost_query_is_sent_again_and_a_silent_resolver_delays_little(
    origin: int, ca_file: str
) -> None:
    async with Forgetful() as zone:
        urls = (f"https://ech.test:{origin}/", f"https://mute.test:{origin}/")
        started = asyncio.get_running_loop().time()
        code, out, _ = await censorprobe(
            "check", "--resolver", zone.address, "--ca-file", ca_file, "--timeout", "10",
            "--format", "json", *urls,
        )  # fmt: skip
        took = asyncio.get_running_loop().time() - started
    by_url = {r["url"]: r for r in json.loads(out)["results"]}
    assert code == 0, [r["explanation"] for r in by_url.values()]
    published, mute = (by_url[u] for u in urls)
    assert published["ech"]["verdict"] == "accessible"  # its second query was answered
    (record,) = mute["evidence"]["probe"]["https_records"]
    assert record["failure"] == "timeout"
    assert "no answer by the measurement's end and 1 s more" in record["error"]
    assert mute["ech"]["verdict"] == "not_measured"
    assert took < 8.0  # the silent resolver did not hold the result for its 10 s timeout


async def test_a_burst_of_queries_shares_a_few_sockets(zone: Zone) -> None:
    resolver = dnswire.Resolver(zone.host, zone.port)
    try:
        asks = [resolver.ask("ech.test" if i % 2 else "plain.test", 65, 5.0) for i in range(200)]
        replies = await asyncio.gather(*asks)
        assert all(dnswire.answers(wire, reply) for wire, reply in replies)
        assert [dnswire.header(reply)[1] for _, reply in replies[:2]] == [0, 1]
        assert len(resolver.sockets) == 4  # 200 queries at once, 64 at most on a socket
        assert all(not s.pending for s in resolver.sockets)
    finally:
        resolver.close()


async def test_no_resolver_at_the_address_fails_at_once() -> None:
    unused = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()  # nothing listens there now: the kernel answers with an ICMP error
    record = await svcb.ask_udp("ech.test", dnswire.Resolver("127.0.0.1", port), 5.0, "here")
    assert record.failure is Failure.REFUSED, record  # at once, not a timeout after resends


async def test_a_query_unanswered_is_sent_again_until_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resolver that reads every query and answers none: the query goes again every RESEND
    seconds until its own timeout, which reads `timeout`; nothing of it stays pending."""
    monkeypatch.setattr(dnswire, "RESEND", 0.1)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    resolver = dnswire.Resolver("127.0.0.1", silent.getsockname()[1])
    try:
        record = await svcb.ask_udp("ech.test", resolver, 0.35, "here")
        received = 0
        with contextlib.suppress(BlockingIOError):
            while silent.recv(512):
                received += 1
        assert record.failure is Failure.TIMEOUT, record
        assert 0.3 <= record.elapsed < 1.0  # (the loop's clock is read once a turn)
        assert 2 <= received <= 4  # at 0, 0.1, 0.2 and 0.3 s, where the loop's timers keep time
        assert all(not s.pending for s in resolver.sockets)
    finally:
        resolver.close()
        silent.close()
