"""Remote measurement end to end, `censorprobe check --remote` against real servers on loopback
standing in for a country's destinations: addresses with and without a DNS service, an open
resolver that lies, and a web server that refuses one SNI and one Host header. Ports 53, 80 and
443 on 127.0.0.x need root."""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import trustme
import yaml
from aiohttp import web

from probe.lab.dnsserver import DNSServer, Replies
from tests.conftest import require_root
from tests.loopback.conftest import quiet, reset, server_context

OWN = "127.0.0.70"  # where every name resolves from the vantage
NO_SERVICE = "127.0.0.71"  # runs nothing on 53
SELECTIVE = "127.0.0.72"  # "answers" one name only: what an injector on the path does
ANY_NAME = "127.0.0.73"  # runs a resolver: proves nothing
RESOLVER = "127.0.0.74"
SERVER = "127.0.0.75"
FORGED = "127.0.0.66"  # what the "injector" answers: not the name's address


class Zone(DNSServer):
    """Answers `names` (every name when None) with `address`, or NXDOMAIN for `lies`."""

    def __init__(
        self,
        host: str,
        port: int,
        names: set[str] | None = None,
        lies: frozenset[str] = frozenset(),
        address: str = OWN,
    ) -> None:
        super().__init__(host, port)
        self.names, self.lies, self.answers = names, lies, address

    def handle(self, query: dns.message.Message) -> Replies:
        name = query.question[0].name.to_text(omit_final_dot=True)
        if self.names is not None and name not in self.names:
            return []
        if name in self.lies:
            return [(0.0, self.answer(query, [], rcode=dns.rcode.NXDOMAIN))]
        a = query.question[0].rdtype == dns.rdatatype.A
        return [(0.0, self.answer(query, [self.answers] if a else []))]


def sni_filter(ca: trustme.CA) -> ssl.SSLContext:
    """A server context that drops the connection at the ClientHello for sni.blocked.test (the
    client reads an end of file: a censor that closes rather than resets)."""
    ctx = server_context(ca, "in-country.test")

    def refuse(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
        return ssl.ALERT_DESCRIPTION_ACCESS_DENIED if name == "sni.blocked.test" else None

    ctx.sni_callback = refuse  # type: ignore[assignment]
    return ctx


async def host_filter(request: web.Request) -> web.Response:
    """An in-country server's own page, and a RST where the Host names the blocked one."""
    if request.host == "host.blocked.test" and request.transport is not None:
        reset(request.transport)
    body = "<html><head><title>Institute of Examples</title></head></html>"
    return web.Response(text=body, content_type="text/html")


@pytest.fixture
async def country(web_server: Callable[..., Awaitable[int]], ca: trustme.CA) -> AsyncIterator[int]:
    """The destinations, up; yields the port of the vantage's own resolver."""
    require_root("listen on ports 53, 80 and 443 of 127.0.0.x")
    own = await Zone("127.0.0.1", 0).start()
    servers = [
        own,
        await Zone(SELECTIVE, 53, names={"injected.test"}, address=FORGED).start(),
        await Zone(ANY_NAME, 53).start(),
        await Zone(RESOLVER, 5353, lies=frozenset({"dns.blocked.test"})).start(),
    ]
    app = web.Application()
    app.router.add_get("/", host_filter)
    await web_server(app, host=SERVER, port=80)
    await web_server(app, sni_filter(ca), host=SERVER, port=443)
    try:
        yield own.port
    finally:
        for s in servers:
            await s.stop()


async def test_check_remote_reads_each_technique(country: int) -> None:
    urls = [
        "https://dns.blocked.test/",
        "https://injected.test/",
        "https://sni.blocked.test/",
        "http://host.blocked.test/",
        "https://fine.test/",
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probe",
        *quiet(("check", *urls)),
        "--resolver",
        f"127.0.0.1:{country}",
        "--remote",
        "XA",
        *("--remote-silent", NO_SERVICE, "--remote-silent", SELECTIVE),
        *("--remote-silent", ANY_NAME, "--remote-resolver", f"{RESOLVER}:5353"),
        *("--remote-server", SERVER, "--timeout", "1", "--retry-pause", "0"),
        *("--vantage", "abroad", "--country", "DE", "--format", "json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1, err.decode()  # something blocked
    doc = json.loads(out)
    assert doc["vantage"] == {"name": "abroad", "country": "DE"}
    results = {r["url"]: r for r in doc["results"]}
    assert len(results) == len(urls)  # remote only: nothing measured as Germany's
    how = {
        url: (r["verdict"], (r["blocking"] or {}).get("layer"), (r["blocking"] or {}).get("method"))
        for url, r in results.items()
    }
    assert how == {
        "https://dns.blocked.test/": ("blocked", "dns", "nxdomain"),
        "https://injected.test/": ("blocked", "dns", "injected"),
        "https://sni.blocked.test/": ("blocked", "tls", "eof"),
        "http://host.blocked.test/": ("blocked", "http", "reset"),
        "https://fine.test/": ("accessible", None, None),
    }
    for r in results.values():
        assert (r["perspective"], r["country"], r["vantage"]) == ("remote", "XA", "abroad")
        # the address that answers any name was set aside, with the reason
        assert f"{ANY_NAME} answered the harmless name example.com" in r["explanation"]
        if r["verdict"] == "blocked":
            assert (r["attempts"], r["agreed"]) == (2, 2)
    fine = results["https://fine.test/"]["explanation"]
    assert fine.startswith("No interference on this path, seen from abroad toward XA")
    injected = results["https://injected.test/"]
    assert f"to {SELECTIVE}, which runs no resolver" in injected["explanation"]
    silent = injected["evidence"]["probe"]["remote"]["silent"]
    assert [c["destination"] for c in silent] == [NO_SERVICE, SELECTIVE, ANY_NAME]
    assert silent[0]["harmless"]["port_unreachable"]


UNLISTED = "127.0.0.76"  # what the in-country resolver answers for every name: a third party


@pytest.mark.parametrize("verify", [True, False])
async def test_the_addresses_an_answer_names_are_contacted_paced_or_not_at_all(
    tmp_path: Path, verify: bool
) -> None:
    """Ten targets whose in-country answers all name one address no one listed: its server sees
    the handshakes at most `remote_rate` a second; with `remote_verify_answers: false` it sees
    none, and every result says the check was skipped."""
    require_root("listen on port 53 and 443 of 127.0.0.x")
    own = await Zone("127.0.0.1", 0).start()
    liar = await Zone(RESOLVER, 5353, address=UNLISTED).start()
    contacts: list[float] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        contacts.append(time.monotonic())
        writer.close()

    third_party = await asyncio.start_server(count, UNLISTED, 443)
    path = tmp_path / "targets.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    "resolvers": [f"127.0.0.1:{own.port}"],
                    "remote": [{"country": "XA", "resolvers": [f"{RESOLVER}:5353"]}],
                    "remote_only": True,
                    "remote_rate": 2,
                    "remote_verify_answers": verify,
                    "timeout": 5,
                    "retries": 0,
                },
                "targets": [{"url": f"https://t{i}.test/"} for i in range(10)],
            }
        )
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "probe", *quiet(("check", "--targets", str(path))), "--format"),
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        third_party.close()
        await own.stop()
        await liar.stop()
    results = json.loads(out)["results"]
    assert len(results) == 10, err.decode()
    if verify:
        assert len(contacts) == 10
        gaps = [b - a for a, b in itertools.pairwise(contacts)]
        # each turn begins a whole gap after the last began; what the server sees of it differs
        # only by the connection's own way there (two processes, one clock)
        assert min(gaps) >= 0.5 - 0.01, gaps
        return
    assert contacts == []
    for r in results:
        assert r["evidence"]["probe"]["remote"]["answers_verified"] is False
        assert "the check of the answer was skipped" in r["explanation"]
