"""The lab's servers, one process per role: `python -m probe.lab.servers ROLE STATE_DIR`.

- internet: the origins, a distinct page per host name over HTTP and HTTPS (and HTTP/3 for the
  QUIC ones, advertised with Alt-Svc), a large object for throughput;
- resolver: the zone's resolver, in the internet namespace, answering DNS_DELAY late as a
  distant resolver does — a process of its own, so that a round's thousands of TLS handshakes
  at the origins do not hold its answers back (an injection would then look like a lone forged
  answer);
- isp-resolver: the ISP's resolver (lying for some names, forwarding the rest across the
  border), a process of its own for the same reason;
- isp: the ISP's blockpage server, the 302 redirector, the TLS interceptor, its transparent
  proxy and an organisation's web server;
- border: the on-path DNS injector and the QUIC censor (a relay that reads the Initial's SNI);
- control: the control helper, in the internet namespace, outside every censor.

Each writes `STATE_DIR/ROLE.ready` once it serves. All run at nice -10, the resolvers at -15
(their autogroups too).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import html
import ipaddress
import os
import signal
import ssl
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
from aiohttp import web

from probe.config import Settings
from probe.helper.server import QUIC_PORT, ControlService, version_negotiation
from probe.lab import relay
from probe.lab import scenarios as lab
from probe.lab.dnsserver import DNSServer, Replies
from probe.lab.h3server import H3Server
from probe.lab.injector import Injector
from probe.lab.quiccensor import QUICCensor

BLOCKPAGE = """<html><head><meta charset="utf-8"><title>Доступ ограничен</title></head>
<body><h1>Доступ к информационному ресурсу ограничен</h1>
<p>Доступ ограничен на основании Федерального закона от 27.07.2006 № 149-ФЗ.</p>
<p>Единый реестр: <a href="http://eais.rkn.gov.ru/">http://eais.rkn.gov.ru/</a></p>
<p>(censorprobe lab: the ISP's blockpage)</p></body></html>"""


def _tls_context(pem: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pem))
    return ctx


async def _serve(
    handler: web.Server, hosts: list[str], port: int, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(handler, host=hosts, port=port, ssl=tls, reuse_address=True)


# --- internet -------------------------------------------------------------------------------


MAX_MADE = 1 << 16  # replies kept by the zone resolver (names x types x clients' flags)


class ZoneResolver(DNSServer):
    """Answers the lab zone from the scenario file, a little late."""

    keeps_queries = False  # tens of thousands a round: kept, they would fill the collector's heap

    def __init__(
        self, host: str, records: dict[str, tuple[str | None, str | None]], delay: float
    ) -> None:
        super().__init__(host, 53)
        self.records = records
        self.delay = delay
        # the names whose HTTPS record (type 65) publishes the lab's ECH configuration
        self.ech = {s.host for s in lab.scenarios() if s.publishes_ech}
        self.ech_record = (
            f'1 . alpn="h2,http/1.1" ech="{base64.b64encode(ech_config_list()).decode()}"'
        )
        self._made: dict[bytes, bytes] = {}  # a query without its id -> the reply without it

    def _answer_udp(self, data: bytes, send: Callable[[bytes], None]) -> None:
        """As a real resolver, in microseconds a query (dnspython takes ~300 µs): a round's
        burst of thousands from every vantage queued for a second behind it, and the real
        answer came after the probe had stopped listening past the border's forgery. A reply is
        made once for each query (its id apart) and kept; each is sent `delay` late."""
        reply = self._made.get(data[2:])
        if reply is not None:
            wire = data[:2] + reply
        else:
            try:
                query = dns.message.from_wire(data)
            except Exception:  # garbage in: no reply, as a real server would
                return
            ((_, message),) = self.handle(query)
            assert isinstance(message, dns.message.Message)
            wire = self.udp_wire(message)
            if len(self._made) < MAX_MADE:
                self._made[data[2:]] = wire[2:]
        asyncio.get_running_loop().call_later(self.delay, send, wire)

    def handle(self, query: dns.message.Message) -> Replies:
        name = query.question[0].name.to_text(omit_final_dot=True).lower()
        rdtype = query.question[0].rdtype
        if name not in self.records:
            return [(self.delay, self.answer(query, [], rcode=dns.rcode.NXDOMAIN))]
        if rdtype == dns.rdatatype.HTTPS:
            return [(self.delay, self.answer(query, [self.ech_record] if name in self.ech else []))]
        v4, v6 = self.records[name]
        address = v4 if rdtype == dns.rdatatype.A else v6 if rdtype == dns.rdatatype.AAAA else None
        return [(self.delay, self.answer(query, [address] if address else []))]


def ech_config_list() -> bytes:
    """The ECHConfigList the lab's ECH origins publish (draft-ietf-tls-esni §4): one
    configuration, outer name `lab.ECH_PUBLIC_NAME`, an X25519 key, HKDF-SHA256 and
    AES-128-GCM. Nothing decrypts with it: a server falls back to the outer ClientHello."""
    name = lab.ECH_PUBLIC_NAME.encode()
    key = hashlib.sha256(b"censorprobe lab ECH key").digest()
    contents = (
        struct.pack("!BHH", lab.ECH_CONFIG_ID, 0x0020, len(key))
        + key
        + struct.pack("!HHH", 4, 0x0001, 0x0001)
        + bytes([0, len(name)])
        + name
        + b"\x00\x00"
    )
    config = struct.pack("!HH", 0xFE0D, len(contents)) + contents
    return struct.pack("!H", len(config)) + config


def zone() -> dict[str, tuple[str | None, str | None]]:
    """Each name's A and AAAA record (a name with neither is answered NOERROR, empty; a name that
    does not exist anywhere is not here)."""
    records: dict[str, tuple[str | None, str | None]] = {}
    for s in lab.scenarios():
        if s.resolves_to == "nxdomain":
            continue
        if s.resolves_to == "no_address":
            records[s.host] = (None, None)
        else:
            records[s.host] = (s.resolves_to or s.address, s.address6)
    records[lab.CONTROL_HOST] = (lab.CONTROL_ADDRESS, lab.CONTROL_ADDRESS6)
    records[lab.INSIDE_CANARY_HOST] = (lab.IN_COUNTRY_SERVER, None)
    return records


FREEZE_HEADERS = {f"X-Lab-Padding-{i}": "p" * 200 for i in range(30)}  # 6 KB of headers
FREEZE_PAGE_BYTES = 100_000
QUOTE = (
    "<p>Читатели сообщают, что вместо сайта видят страницу «Доступ к информационному ресурсу "
    "ограничен на основании Федерального закона». Роскомнадзор не комментирует.</p>"
)
REGISTRY = """<p>Проверить, внесён ли сайт в реестр, можно на
<a href="http://eais.rkn.gov.ru/">http://eais.rkn.gov.ru/</a>.</p>"""


def _scenario_of(host: str) -> lab.Scenario | None:
    return next((s for s in lab.scenarios() if s.host == host), None)


VANTAGES = ipaddress.ip_network("198.18.0.0/16")  # the lab's links: where the vantages are
CHALLENGE_HEADERS = {
    "Server": "cloudflare",
    "Cf-Ray": "68013f3b0c7d498b-SIN",
    "Cache-Control": "private, max-age=0, no-store, no-cache, must-revalidate",
}
CHALLENGE_PAGE = """<!DOCTYPE HTML><html lang="en-US"><head><meta charset="UTF-8" />
<title>Just a moment...</title><meta http-equiv="refresh" content="3">
<script type="text/javascript">window._cf_chl_opt={cvId: "2", cType: "non-interactive"};</script>
</head><body><div class="cf-browser-verification cf-im-under-attack">
<h1>Checking your browser before accessing the site.</h1>
<p>This process is automatic. Your browser will redirect to your requested content shortly.</p>
</div><div class="attribution">DDoS protection by Cloudflare</div></body></html>"""


def _from_a_vantage(request: web.BaseRequest) -> bool:
    return request.remote is not None and ipaddress.ip_address(request.remote) in VANTAGES


async def _stream(request: web.BaseRequest, size: int, kind: str) -> web.StreamResponse:
    """`size` bytes of `kind`, written as they go (not held in memory)."""
    resp = web.StreamResponse(headers={"Content-Type": kind, "Content-Length": str(size)})
    await resp.prepare(request)
    chunk = (b"<p>" + b"lorem ipsum " * 5000 + b"</p>\n")[:65536].ljust(65536, b" ")
    for _ in range(size // len(chunk)):
        await resp.write(chunk)
    await resp.write(chunk[: size % len(chunk)])
    await resp.write_eof()
    return resp


async def origin(request: web.BaseRequest) -> web.StreamResponse:
    """A distinct page per host name; `/large` streams a large object for throughput. Some hosts
    redirect (chains, loops, a broken Location for the vantages), send large headers and a large
    page (freezes), a very large page, a page that quotes a blockpage (fingerprint traps), or a
    bot-defence challenge to the vantages (the site's own doing)."""
    host = (request.host or "").split(":")[0].lower()
    s = _scenario_of(host)
    t = s.technique if s is not None else "none"
    if t == "slow":
        await asyncio.sleep(lab.SLOW_DELAY)
    if s is not None and s.redirect:
        return web.Response(status=302, headers={"Location": s.redirect, "Server": "lab-origin"})
    if t == "redirect_loop":
        n = int(request.path.removeprefix("/r/")) if request.path.startswith("/r/") else 0
        if n < lab.REDIRECT_LOOP:
            return web.Response(status=302, headers={"Location": f"/r/{n + 1}"})
    if t == "broken_redirect" and request.path == "/":
        # a Location without a host for the vantages, a working one for anyone else
        where = f"{request.scheme}://" if _from_a_vantage(request) else "/welcome"
        return web.Response(status=302, headers={"Location": where})
    if t == "challenge" and _from_a_vantage(request):
        return web.Response(
            status=503, text=CHALLENGE_PAGE, content_type="text/html", headers=CHALLENGE_HEADERS
        )
    if request.path == "/large":
        return await _stream(request, lab.LARGE_OBJECT_BYTES, "application/octet-stream")
    page = s.page if s is not None else None
    if page == "large":
        return await _stream(request, lab.LARGE_PAGE_BYTES, "text/html")
    name = html.escape(host)
    content = {"quote": QUOTE, "registry": REGISTRY}.get(page or "", "<p>lorem</p>" * 40)
    headers = {"Server": "lab-origin"}
    if t in lab.QUIC_TECHNIQUES:
        headers["Alt-Svc"] = 'h3=":443"; ma=3600'  # as real sites advertise HTTP/3
    if t == "freeze":
        headers.update(FREEZE_HEADERS)
        content = "<p>" + "lorem ipsum " * (FREEZE_PAGE_BYTES // 12) + "</p>"
    body = (
        f'<html><head><meta charset="utf-8"><title>{name} — lab origin</title></head><body>'
        f"<h1>{name}</h1><p>The genuine page of {name} in the censorprobe lab.</p>{content}"
        "</body></html>"
    )
    return web.Response(text=body, content_type="text/html", headers=headers)


async def resolver(state: Path) -> list[object]:
    return [await ZoneResolver(lab.INTERNET_RESOLVER, zone(), lab.DNS_DELAY).start()]


async def isp_resolver(state: Path) -> list[object]:
    return [await ISPResolver().start()]


async def internet(state: Path) -> list[object]:
    handler = web.Server(origin)
    hosts = [*lab.origin_addresses(), *lab.origin_addresses6()]
    tls = _tls_context(state / "origin.pem")
    h3 = [
        await H3Server(s.address, 443, state / "origin-cert.pem", state / "origin-key.pem").start()
        for s in lab.scenarios()
        if s.technique in lab.QUIC_TECHNIQUES
    ]
    # origins whose certificate is not valid: expired, for another name, from an untrusted CA
    badssl = [
        await _serve(
            handler, [s.address], 443, _tls_context(state / CERTIFICATE_FILES[s.certificate])
        )
        for s in lab.scenarios()
        if s.certificate is not None
    ]
    return [
        await _serve(handler, hosts, 80),
        await _serve(handler, hosts, 443, tls),
        *h3,
        *badssl,
    ]


CERTIFICATE_FILES = {
    "expired": "expired.pem",
    "wrong_name": "wrongname.pem",
    "untrusted": "intercept.pem",
}


# --- isp ------------------------------------------------------------------------------------


class ISPResolver(DNSServer):
    """Lies for the scenarios that say so; forwards everything else across the border."""

    keeps_queries = False

    def __init__(self) -> None:
        super().__init__(lab.ISP_RESOLVER, 53)
        self.lies: dict[str, str | None] = {lab.NATIONAL_BLOCKPAGE_HOST: lab.ISP_BLOCKPAGE}
        for s in lab.scenarios():
            if s.technique == "isp_nxdomain":
                self.lies[s.host] = None
            elif s.technique == "isp_redirect":
                self.lies[s.host] = lab.ISP_BLOCKPAGE
            elif s.isp_answer is not None:
                self.lies[s.host] = lab.ISP_ANSWERS[s.isp_answer]
            elif s.technique == "cdn":
                self.lies[s.host] = s.other_address  # geo-DNS: this region's node

    async def respond(self, query: dns.message.Message) -> Replies:
        return [(0.0, await self._reply(query))]

    async def _reply(self, query: dns.message.Message) -> dns.message.Message:
        name = query.question[0].name.to_text(omit_final_dot=True).lower()
        if name in self.lies:
            lie = self.lies[name]
            if lie is None:
                return self.answer(query, [], rcode=dns.rcode.NXDOMAIN)
            a = query.question[0].rdtype == dns.rdatatype.A
            return self.answer(query, [lie] if a else [])
        try:  # like a recursive resolver: the first answer that arrives wins
            upstream = await dns.asyncquery.udp(query, lab.INTERNET_RESOLVER, timeout=2.0)
        except Exception:  # upstream silent or garbage: SERVFAIL, as resolvers do
            return self.answer(query, [], rcode=dns.rcode.SERVFAIL)
        upstream.id = query.id
        return upstream


async def organisation(request: web.BaseRequest) -> web.Response:
    """An in-country organisation's web server: its own page, whatever name is asked for."""
    return web.Response(
        text="<html><head><title>Institute of Examples</title></head><body>Welcome</body></html>",
        content_type="text/html",
    )


async def blockpage(request: web.BaseRequest) -> web.Response:
    return web.Response(text=BLOCKPAGE, content_type="text/html", headers={"Server": "isp-filter"})


async def redirector(request: web.BaseRequest) -> web.Response:
    """What an ISP's DPI does to a listed URL: a 302 to the national blockpage."""
    return web.Response(
        status=302,
        headers={
            "Location": f"http://{lab.NATIONAL_BLOCKPAGE_HOST}/?id=censorprobe-lab",
            "Server": "isp-filter",
        },
    )


async def isp(state: Path) -> list[object]:
    intercept_tls = _tls_context(state / "intercept.pem")
    origin_tls = _tls_context(state / "origin.pem")
    return [
        await _serve(web.Server(blockpage), [lab.ISP_BLOCKPAGE], 80),
        await _serve(web.Server(redirector), [lab.ISP_REDIRECTOR], 80),
        await _serve(web.Server(origin), [lab.ISP_INTERCEPTOR], 443, intercept_tls),
        # an organisation's web server in the country, for remote SNI and Host measurement
        await _serve(web.Server(organisation), [lab.IN_COUNTRY_SERVER], 80),
        await _serve(web.Server(organisation), [lab.IN_COUNTRY_SERVER], 443, origin_tls),
        await _serve(web.Server(access_denied), [lab.ISP_DIFFPAGE], 80),
        *[await asyncio.start_server(proxy(port), lab.ISP_PROXY, port) for port in (80, 443)],
    ]


async def access_denied(request: web.BaseRequest) -> web.Response:
    """A blockpage no fingerprint knows (OONI's netemx serves it in its QA suite)."""
    return web.Response(body=relay.ACCESS_DENIED, content_type="text/html")


def proxy(port: int) -> relay.TransparentProxy:
    """The ISP's transparent proxy on `port`: to the zone's address of the host each connection
    names; it serves its own page for the hosts it censors over HTTP."""
    addresses = {host: v4 for host, (v4, _) in zone().items() if v4 is not None}
    censored = frozenset(
        s.host for s in lab.scenarios() if s.technique == "http_diff" and s.isp_answer == "proxy"
    )
    return relay.TransparentProxy(addresses, port, censored)


# --- border ---------------------------------------------------------------------------------


async def border(state: Path) -> list[object]:
    names = {s.host for s in lab.scenarios() if s.technique == "dns_injection"}
    aaaa = {s.host for s in lab.scenarios() if s.technique == "aaaa_injection"}
    loop = asyncio.get_running_loop()
    relays: list[object] = []
    for s, at in lab.quic_censored():
        quic = QUICCensor((s.address, 443), {s.host})
        relays.append(await loop.create_datagram_endpoint(partial(_same, quic), local_addr=at))
    for s, at in lab.tcp_censored():
        port = 80 if s.technique == "fin_host" else 443
        tcp: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
        if s.technique == "ech_drop":
            tcp = relay.ECHCensor(frozenset({lab.ECH_PUBLIC_NAME}), (s.address, port))
        else:
            tcp = relay.TCPCensor(s.host, (s.address, port))
        relays.append(await asyncio.start_server(tcp, *at))
    # like the GFW's, it sees queries in both directions: from the country's side, and from
    # abroad toward the country's addresses
    return [
        *(
            Injector(side, names, lab.FORGED_ADDRESS, aaaa, lab.FORGED_ADDRESS6).start()
            for side in ("to-isp", "to-inet")
        ),
        *relays,
    ]


def _same(protocol: QUICCensor) -> QUICCensor:
    return protocol


async def control(state: Path) -> list[object]:
    """The control helper, where it belongs: in the internet, outside every censor."""
    settings = Settings(
        public_ranges=lab.PUBLIC_RANGES,
        ca_file=str(state / "ca.pem"),
        timeout=3.0,
        throughput_window=3.0,
    )
    service = ControlService(settings, token=None, concurrency=16)
    app_runner = web.AppRunner(service.app(), handle_signals=False)
    await app_runner.setup()
    answering = []
    for address in (lab.CONTROL_ADDRESS, lab.CONTROL_ADDRESS6):
        await web.TCPSite(app_runner, address, lab.CONTROL_PORT).start()
        answering += await version_negotiation(address, (lab.CONTROL_PORT, QUIC_PORT))
    return [app_runner, *answering]


ROLES = {
    "internet": internet,
    "resolver": resolver,
    "isp-resolver": isp_resolver,
    "isp": isp,
    "border": border,
    "control": control,
}


# The resolvers come first: every target of every vantage starts with them, while the other
# servers' work (the control measures every target again, the origins serve a thousand pages a
# round) can wait a little, as a busy web server does.
PRIORITY = {"resolver": lab.NICE - 5, "isp-resolver": lab.NICE - 5}


def _raise_priority(nice: int) -> None:
    """This process's nice value, and its autogroup's: where the kernel groups processes by
    session (sched_autogroup_enabled, the default of most distributions), a nice value counts
    only against the processes of its own session, and each server leads a session of its own —
    at nice -15 a resolver still waited 50-130 ms of every 100 for a CPU while two busy loops
    ran in another session. Only root may raise either; the lab runs as root."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write(str(nice))


async def main(role: str, state: Path) -> None:
    _raise_priority(PRIORITY.get(role, lab.NICE))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    held = await ROLES[role](state)  # referenced until the end; the exit closes every socket
    (state / f"{role}.ready").write_text("ready\n")
    await stop.wait()
    del held


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("state", type=Path)
    args = parser.parse_args()
    asyncio.run(main(args.role, args.state))
