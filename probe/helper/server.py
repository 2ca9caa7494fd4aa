"""The control helper (`censorprobe control`): the probe's measurement of a target, from an
unfiltered network, for probes that ask. Its client is `probe.engine.control`.

For each target it measures DNS, TCP, TLS and HTTP as the probe does — its own addresses and the
vantage's, so the vantage learns which of its addresses are genuine for the host — and answers
with observations in the probe's own model.

API (version 2; a request of any version is answered, unknown fields ignored):
    POST /api/v1/measure   {"version": 2, "url": "https://…/", "addresses": ["192.0.2.1", …],
                            "deadline": 50}
                           -> 200 {"version": 2, "control": {measurement, validation, error}}
                           400 malformed · 401 bad token · 403 refused destination
                           413 request too large · 503 too busy
    GET  /api/v1           -> {"version": 2, "in_flight": n, "max_in_flight": n, …}
    GET  /healthz          -> ok

It fetches URLs for others, so its address policy refuses loopback, private, link-local and
other special-purpose destinations (unless a `--public-range` includes them) at connect time,
for every connection it opens: every redirect hop, every family, names and address literals.
It keeps nothing of a request once it has answered.
"""

from __future__ import annotations

import asyncio
import json
import signal

from aiohttp import web

from probe.config import Settings
from probe.engine import flow
from probe.engine.runtime import Runtime
from probe.httpd import BODY_TIMEOUT, MAX_CONNECTIONS, Guard, authorised, serving
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
QUEUE_FACTOR = 8  # requests waiting beyond concurrency * this are answered 503


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
        seconds = rt.settings.deadline
        if asked.deadline is not None:
            seconds = min(seconds, asked.deadline)
        budget = flow.Budget(seconds)
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
        return Control(m, tuple(t for t in validation if t.connected))


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
    async with serving(service.app(), host, port, Guard(max_connections)):
        await stop.wait()
