"""DNS against real servers on 127.0.0.1 that answer, refuse, stay silent, answer twice or lie."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

import aiohttp
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import trustme
from aiohttp import web

from probe.lab.dnsserver import DNSServer, Replies
from probe.measure import dns as measure_dns
from probe.measure import doh, system
from probe.model import Measurement, Target
from probe.verdict import judge
from tests.loopback.conftest import server_context


class Answers(DNSServer):
    def handle(self, query: dns.message.Message) -> Replies:
        if query.question[0].rdtype == dns.rdatatype.AAAA:
            return [(0.0, self.answer(query, ["2001:db8::10"]))]
        return [(0.0, self.answer(query, ["192.0.2.10", "192.0.2.11"], ttl=300))]


class NXDomain(DNSServer):
    def handle(self, query: dns.message.Message) -> Replies:
        return [(0.0, self.answer(query, [], rcode=dns.rcode.NXDOMAIN))]


class Silent(DNSServer):
    def handle(self, query: dns.message.Message) -> Replies:
        return []


class LosesTheFirst(DNSServer):
    """Answers a query only the second time it comes (the first datagram was lost)."""

    def handle(self, query: dns.message.Message) -> Replies:
        if len(self.queries) == 1:
            return []
        return [(0.0, self.answer(query, ["192.0.2.10"]))]


class Twice(DNSServer):
    """An injector's forged answer first, the real one 50 ms later."""

    def handle(self, query: dns.message.Message) -> Replies:
        return [
            (0.0, self.answer(query, ["203.0.113.66"])),
            (0.05, self.answer(query, ["192.0.2.10"])),
        ]


class Duplicate(DNSServer):
    """The same answer twice (a duplicated packet): not injection."""

    def handle(self, query: dns.message.Message) -> Replies:
        reply = self.answer(query, ["192.0.2.10"])
        return [(0.0, reply), (0.02, reply)]


class Garbage(DNSServer):
    def handle(self, query: dns.message.Message) -> Replies:
        return [(0.0, b"\x00\x01garbage that is not DNS"), (0.01, bytes(600))]


class GarbageThenAnswer(DNSServer):
    def handle(self, query: dns.message.Message) -> Replies:
        wrong_id = self.answer(query, ["198.51.100.1"])
        wrong_id.id = (query.id + 1) % 65536
        return [(0.0, b"\xff" * 7), (0.0, wrong_id), (0.01, self.answer(query, ["192.0.2.10"]))]


class Large(DNSServer):
    """More addresses than fit in 512 bytes: truncated over UDP, complete over TCP."""

    def handle(self, query: dns.message.Message) -> Replies:
        if query.question[0].rdtype != dns.rdatatype.A:
            return [(0.0, self.answer(query, []))]
        return [(0.0, self.answer(query, [f"192.0.2.{i}" for i in range(1, 60)]))]


async def test_answers_are_recorded_with_rcode_and_ttl() -> None:
    """A plain answer gives addresses, NOERROR and the TTL, for A and AAAA."""
    async with Answers() as server:
        a, aaaa = [
            await measure_dns.resolve_udp(
                "example.test", q, "127.0.0.1", server.port, timeout=2, window=0.1
            )
            for q in ("A", "AAAA")
        ]
    assert (a.qtype, a.rcode, sorted(a.addresses), a.ttl, a.failure) == (
        "A",
        "NOERROR",
        ["192.0.2.10", "192.0.2.11"],
        300,
        None,
    )
    assert aaaa.addresses == ("2001:db8::10",)
    assert len(a.responses) == 1


async def test_nxdomain_is_a_failure() -> None:
    async with NXDomain() as server:
        obs = await measure_dns.resolve_udp(
            "gone.test", "A", "127.0.0.1", server.port, timeout=2, window=0.1
        )
    assert (obs.failure, obs.rcode, obs.addresses) == ("nxdomain", "NXDOMAIN", ())


async def test_silent_resolver_times_out_within_its_timeout() -> None:
    """A resolver that never answers ends as `timeout`, bounded by its timeout (generously:
    this is no benchmark)."""
    async with Silent() as server:
        start = time.perf_counter()
        obs = await measure_dns.resolve_udp(
            "slow.test", "A", "127.0.0.1", server.port, timeout=0.5, window=0.1
        )
        elapsed = time.perf_counter() - start
    assert obs.failure == "timeout"
    assert elapsed < 5


async def test_a_lost_query_is_asked_again_but_not_a_remote_contact() -> None:
    async with LosesTheFirst() as server:
        obs = await measure_dns.resolve_udp(
            "lossy.test", "A", "127.0.0.1", server.port, timeout=3, window=0.1
        )
        assert (obs.failure, obs.addresses, len(server.queries)) == (None, ("192.0.2.10",), 2)
    async with LosesTheFirst() as server:  # a remote measurement's datagrams are paced contacts
        obs = await measure_dns.resolve_udp(
            "lossy.test", "A", "127.0.0.1", server.port, timeout=1.5, window=0.1, resend=False
        )
        assert (obs.failure, len(server.queries)) == ("timeout", 1)


async def test_two_different_answers_are_kept_and_judged_injection() -> None:
    """The forged answer and the real one both end in the evidence; the verdict is dns/injected."""
    async with Twice() as server:
        obs = await measure_dns.resolve_udp(
            "blocked.test", "A", "127.0.0.1", server.port, timeout=2, window=0.3
        )
    assert obs.addresses == ("203.0.113.66",)  # the first answer wins, as for an application
    assert obs.distinct_answers() == [("203.0.113.66",), ("192.0.2.10",)]
    verdict = judge(Measurement(Target.parse("https://blocked.test/"), 0.0, (obs,)))
    assert verdict.verdict == "blocked"
    assert verdict.blocking is not None
    assert (verdict.blocking.layer, verdict.blocking.method) == ("dns", "injected")
    assert "203.0.113.66 then 192.0.2.10" in verdict.explanation


async def test_a_duplicated_answer_is_not_injection() -> None:
    async with Duplicate() as server:
        obs = await measure_dns.resolve_udp(
            "dup.test", "A", "127.0.0.1", server.port, timeout=2, window=0.2
        )
    assert len(obs.responses) == 2
    assert judge(Measurement(Target.parse("dup.test"), 0.0, (obs,))).verdict != "blocked"


async def test_garbage_is_recorded_and_ends_as_protocol_failure() -> None:
    """Unparseable replies are kept as evidence; with no valid one the failure is `protocol`."""
    async with Garbage() as server:
        obs = await measure_dns.resolve_udp(
            "junk.test", "A", "127.0.0.1", server.port, timeout=0.5, window=0.1
        )
    assert obs.failure == "protocol"
    assert obs.responses
    assert all(r.error for r in obs.responses)


async def test_garbage_and_mismatched_replies_do_not_hide_the_real_answer() -> None:
    async with GarbageThenAnswer() as server:
        obs = await measure_dns.resolve_udp(
            "mixed.test", "A", "127.0.0.1", server.port, timeout=2, window=0.2
        )
    assert obs.addresses == ("192.0.2.10",)
    errors = [r.error for r in obs.responses if r.error]
    assert any("malformed" in e for e in errors)
    assert any("does not match" in e for e in errors)


async def test_truncated_answer_is_retried_over_tcp() -> None:
    async with Large() as server:
        obs = await measure_dns.resolve_udp(
            "big.test", "A", "127.0.0.1", server.port, timeout=2, window=0.1
        )
    assert obs.transport == "tcp"
    assert len(obs.addresses) == 59


async def test_no_resolver_at_the_address_is_unreachable() -> None:
    """ICMP port unreachable from an address with no resolver: `unreachable`, not a timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    obs = await measure_dns.resolve_udp("x.test", "A", "127.0.0.1", port, timeout=2, window=0.1)
    assert (obs.failure, obs.port_unreachable) == ("unreachable", True)


async def test_system_resolver_reads_the_hosts_file() -> None:
    obs = await system.resolve("localhost", timeout=2)
    assert obs.failure is None
    assert "127.0.0.1" in obs.addresses or "::1" in obs.addresses


async def test_system_lookups_wait_their_turn_and_count_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getaddrinfo runs in the loop's pool of threads (asyncio's default executor here; libuv's
    under the CLI's uvloop): more lookups at once wait there. With the real pool and a
    getaddrinfo that takes 0.3 s (a slow resolver, which loopback cannot be), three times as
    many lookups as the pool has threads all answer within a timeout of 0.5 s, each in its own
    0.3 s — the wait for a thread is neither its time nor a timeout, whatever libuv's pool size
    says (UV_THREADPOOL_SIZE sizes no pool of asyncio's)."""
    monkeypatch.setenv("UV_THREADPOOL_SIZE", "64")

    def getaddrinfo(host: str, *_: object, **__: object) -> list[tuple[object, ...]]:
        time.sleep(0.3)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    names = [f"n{i}.example" for i in range(3 * system.lookups(asyncio.get_running_loop()))]
    found = await asyncio.gather(*(system.resolve(name, timeout=0.5) for name in names))
    assert [o.failure for o in found] == [None] * len(names)
    assert [o.addresses for o in found] == [("192.0.2.10",)] * len(names)
    assert max(o.elapsed for o in found) < 0.45


def test_under_uvloop_a_turn_is_one_of_the_threads_libuv_lets_lookups_have(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libuv runs getaddrinfo on at most half of its pool, (threads + 1) // 2 (with 16 threads
    and a resolver taking 0.5 s, 16 lookups at once ended at 0.5 s and 1.0 s, eight each): so
    many turns, so that no lookup's clock runs in libuv's queue; the runtime's pool has room
    for LOOKUPS of them."""
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        monkeypatch.setenv("UV_THREADPOOL_SIZE", "16")
        assert system.lookups(loop) == 8
        monkeypatch.setenv("UV_THREADPOOL_SIZE", "5")
        assert system.lookups(loop) == 3
        monkeypatch.delenv("UV_THREADPOOL_SIZE")
        system.size_the_pool()
        assert system.lookups(loop) == system.LOOKUPS
    finally:
        loop.close()


async def test_doh_answers_over_https(
    web_server: Callable[..., Awaitable[int]], ca: trustme.CA, ca_file: str
) -> None:
    """RFC 8484 POST to a real HTTPS server that speaks application/dns-message."""

    async def handler(request: web.Request) -> web.Response:
        query = dns.message.from_wire(await request.read())
        reply = DNSServer.answer(query, ["192.0.2.77"])
        return web.Response(body=reply.to_wire(), content_type="application/dns-message")

    app = web.Application()
    app.router.add_post("/dns-query", handler)
    port = await web_server(app, server_context(ca, "localhost"))
    ctx = ssl.create_default_context(cafile=ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        url = f"https://localhost:{port}/dns-query"
        obs = [await doh.resolve("example.test", q, url, session, 2) for q in ("A", "AAAA")]
    assert [o.addresses for o in obs] == [("192.0.2.77",), ()]
    assert obs[0].transport == "doh"
