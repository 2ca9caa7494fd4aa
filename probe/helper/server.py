"""The control helper (`censorprobe control`): the probe's measurement of a target, from an
unfiltered network, for probes that ask. Its client is `probe.engine.control`.

For each target it measures DNS, TCP, TLS and HTTP as the probe does — its own addresses and the
vantage's, so the vantage learns which of its addresses are genuine for the host — and answers
with observations in the probe's own model.

API (version 3; a request of any version is answered, unknown fields ignored):
    POST /api/v1/measure   {"version": 3, "url": "https://…/", "addresses": ["192.0.2.1", …],
                            "deadline": 50, "quic": "auto"}
                           -> 200 {"version": 3, "control": {measurement, validation, error}}
                           400 malformed · 401 bad token · 403 refused destination
                           413 request too large · 503 too busy
    GET  /api/v1           -> {"version": 3, "in_flight": n, "max_in_flight": n, …}
    GET  /healthz          -> ok
    UDP, the same port and 443: QUIC version negotiation, for vantages that check their UDP/443

It fetches URLs for others, so its address policy refuses loopback, private, link-local and
other special-purpose destinations (unless a `--public-range` includes them) at connect time,
for every connection it opens: every redirect hop, every family, names and address literals.
It keeps nothing of a request once it has answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from dataclasses import replace
from typing import Any

from aiohttp import web

from probe.config import MAX_CONNECTIONS, Settings
from probe.engine import flow
from probe.engine.deadline import Deadline
from probe.engine.runtime import Runtime
from probe.httpd import BODY_TIMEOUT, Guard, authorised, serving
from probe.measure import tls
from probe.model import (
    CONTROL_API_VERSION,
    Control,
    ControlRequest,
    Target,
    TLSObservation,
    to_json,
)
from probe.policy import AddressPolicy, is_ip_literal
from probe.vocabulary import Step

MAX_REQUEST_BYTES = 16 * 1024
QUIC_PORT = 443  # where vantages check their UDP/443 (see VersionNegotiation)
QUEUE_FACTOR = 8  # requests waiting beyond concurrency * this are answered 503
log = logging.getLogger("censorprobe")


class ControlService:
    """The helper's state: one runtime, a concurrency limit, counters."""

    def __init__(self, settings: Settings, *, token: str | None, concurrency: int) -> None:
        self.settings = settings
        self.policy = AddressPolicy(settings.public_ranges)
        self.token = token
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self.waiting = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.rt: Runtime | None = None

    async def startup(self, app: web.Application) -> None:
        self.rt = await Runtime.open(self.settings, policy=self.policy)

    async def cleanup(self, app: web.Application) -> None:
        if self.rt is not None:
            await self.rt.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/api/v1/measure", self.measure)
        app.router.add_get("/api/v1", self.info)
        app.router.add_get("/healthz", self.health)
        app.on_startup.append(self.startup)
        app.on_cleanup.append(self.cleanup)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "version": CONTROL_API_VERSION,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "concurrency": self.concurrency,
            }
        )

    async def measure(self, request: web.Request) -> web.Response:
        if not authorised(request, self.token):
            return _error(401, "missing or wrong bearer token")
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await request.read()
            asked, target = ControlRequest.parse(json.loads(body))
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request larger than {MAX_REQUEST_BYTES} bytes")
        except TimeoutError:
            return _error(408, f"the request's body took longer than {BODY_TIMEOUT:g}s")
        except RecursionError:
            return _error(400, "the JSON is nested too deeply")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, str(exc))
        if is_ip_literal(target.host) and not self.policy.allows(target.host):
            return _error(403, f"destination {target.host} is a special-purpose address")
        if self.waiting >= self.concurrency * QUEUE_FACTOR:
            return _error(503, "too busy, try again later")
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            control = await self._measure(target, asked)
        finally:
            self.in_flight -= 1
            self.slots.release()
        return web.json_response({"version": CONTROL_API_VERSION, "control": to_json(control)})

    async def _measure(self, target: Target, asked: ControlRequest) -> Control:
        rt = self.rt
        assert rt is not None
        asked_target = replace(target, quic=asked.quic)
        # as long as the probe waits: its measurement as asked, its HTTP/3 path in what is left
        # (a probe of API version 3 or less waits for the HTTP/3 path beyond `deadline`)
        within = asked.answer_within
        if within is None and asked.deadline is not None:
            within = asked.deadline + rt.settings.quic_deadline
        deadline = Deadline.of(
            asked_target, rt.settings, retries=0, within=within, measurement=asked.deadline
        )
        budget = deadline.measurement()
        m = await flow.measure(target, rt, budget, extra_addresses=asked.addresses)
        validation: list[TLSObservation] = []
        if target.scheme == "http":  # an https target's TLS step already tried these
            allowed = [a for a in asked.addresses if self.policy.allows(a)]
            validation = list(
                await asyncio.gather(
                    *(
                        tls.connect_and_handshake(
                            a,
                            443,
                            target.host,
                            rt.verify,
                            budget.take(rt.settings.timeout, Step.TCP_TLS),
                            self.policy,
                        )
                        for a in allowed
                    )
                )
            )
        quic = await flow.measure_quic(asked_target, rt, m, None, deadline.http3())
        return Control(replace(m, quic=quic), tuple(t for t in validation if t.connected))


class VersionNegotiation(asyncio.DatagramProtocol):
    """Answers a QUIC Initial of a version other than 1 with a Version Negotiation, as a QUIC
    server does (RFC 9000 §6): a vantage pings it once per run to learn whether its UDP/443
    reaches the internet (`probe.engine.runtime.Network`). The answer is much smaller than the
    1,200-byte Initial it answers, so it cannot amplify anything."""

    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 1200 or not data[0] & 0x80 or data[1:5] in (b"\0\0\0\0", b"\0\0\0\1"):
            return
        dcid = data[6 : 6 + data[5]]
        rest = data[6 + data[5] :]
        if len(dcid) != data[5] or not rest or len(rest) < 1 + rest[0]:
            return
        scid = rest[1 : 1 + rest[0]]
        reply = b"\x80\0\0\0\0" + bytes([len(scid)]) + scid + bytes([len(dcid)]) + dcid
        if self.transport is not None:
            self.transport.sendto(reply + (1).to_bytes(4, "big"), addr)


async def version_negotiation(host: str, ports: tuple[int, ...]) -> list[asyncio.DatagramTransport]:
    """The Version Negotiation responder on UDP `ports` of `host`; a port that cannot be bound
    (443 without privileges) is logged and left out."""
    loop = asyncio.get_running_loop()
    out = []
    for port in dict.fromkeys(ports):
        try:
            transport, _ = await loop.create_datagram_endpoint(
                VersionNegotiation, local_addr=(host, port)
            )
        except OSError as exc:
            log.warning("QUIC version negotiation not answered on UDP %s:%d: %s", host, port, exc)
            continue
        out.append(transport)
    return out


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"version": CONTROL_API_VERSION, "error": message}, status=status)


async def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    token: str | None,
    concurrency: int,
    max_connections: int = MAX_CONNECTIONS,
) -> None:
    """Run the helper until SIGINT or SIGTERM."""
    service = ControlService(settings, token=token, concurrency=concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    responders = await version_negotiation(host, (port, QUIC_PORT))
    try:
        async with serving(service.app(), host, port, Guard(max_connections)):
            await stop.wait()
    finally:
        for transport in responders:
            transport.close()
