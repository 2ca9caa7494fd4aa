"""The control helper (`censorprobe control`) and the probe's client for it.

The helper runs on an unfiltered network. For each target it measures DNS, TCP, TLS and HTTP as
the probe does — its own addresses and the vantage's, so the vantage learns which of its
addresses are genuine for the host — and answers with observations in the probe's own model.

API (version 1):
    POST /api/v1/measure   {"url": "https://…/", "addresses": ["192.0.2.1", …]}
                           -> 200 {"version": 1, "control": {measurement, validation, error}}
                           400 malformed · 401 bad token · 403 refused destination
                           413 request too large · 503 too busy
    GET  /api/v1           -> {"version": 1, "in_flight": n, "max_in_flight": n}
    GET  /healthz          -> ok

It refuses loopback, private, link-local and other special-purpose destinations (unless a
`--public-range` includes them): otherwise anyone could make it fetch from its own network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import time
from typing import Any

import aiohttp
from aiohttp import web

from probe import runner
from probe.config import Settings
from probe.measure import http, tls
from probe.measure.failure import describe
from probe.model import (
    Control,
    Target,
    TLSObservation,
    from_json,
    is_ip_literal,
    is_special,
    to_json,
)

API_VERSION = 1
MAX_REQUEST_BYTES = 16 * 1024
MAX_ADDRESSES = 16
QUEUE_FACTOR = 8  # requests waiting beyond concurrency * this are answered 503


class ControlService:
    """The helper's state: one runtime, a concurrency limit, counters."""

    def __init__(self, settings: Settings, *, token: str | None, concurrency: int) -> None:
        self.settings = settings
        self.token = token
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self.waiting = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.rt: runner.Runtime | None = None

    def allowed(self, address: str) -> bool:
        return not is_special(address, self.settings.public_ranges)

    async def startup(self, app: web.Application) -> None:
        self.rt = await runner.Runtime.open(self.settings, allowed=self.allowed)

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
                "version": API_VERSION,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "concurrency": self.concurrency,
            }
        )

    async def measure(self, request: web.Request) -> web.Response:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "missing or wrong bearer token")
        try:
            body = await request.read()
            doc = json.loads(body)
            target, addresses = _parse(doc)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request larger than {MAX_REQUEST_BYTES} bytes")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, str(exc))
        if is_ip_literal(target.host) and not self.allowed(target.host):
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
            control = await self._measure(target, addresses)
        finally:
            self.in_flight -= 1
            self.slots.release()
        return web.json_response({"version": API_VERSION, "control": to_json(control)})

    async def _measure(self, target: Target, addresses: list[str]) -> Control:
        assert self.rt is not None
        allowed = [a for a in addresses if self.allowed(a)]
        m = await runner.measure(target, self.rt, extra_addresses=addresses)  # notes the refused
        validation: tuple[TLSObservation, ...] = ()
        if target.scheme == "http":  # an https target's TLS step already tried these
            s = self.settings
            steps = await asyncio.gather(
                *(
                    tls.connect_and_handshake(a, 443, target.host, self.rt.verify, s.timeout)
                    for a in allowed
                )
            )
            validation = tuple(t for _, t in steps if t is not None)
        return Control(m, validation)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"version": API_VERSION, "error": message}, status=status)


def _parse(doc: Any) -> tuple[Target, list[str]]:
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    unknown = set(doc) - {"url", "addresses"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    url = doc.get("url")
    if not isinstance(url, str):
        raise ValueError("'url' must be a string")
    target = Target.parse(url)
    addresses = doc.get("addresses", [])
    if not isinstance(addresses, list) or len(addresses) > MAX_ADDRESSES:
        raise ValueError(f"'addresses' must be a list of at most {MAX_ADDRESSES} IP addresses")
    for a in addresses:
        if not isinstance(a, str):
            raise ValueError("'addresses' must hold strings")
        ipaddress.ip_address(a)  # ValueError names the bad one
    return target, list(dict.fromkeys(addresses))


async def serve(
    settings: Settings, host: str, port: int, *, token: str | None, concurrency: int
) -> None:
    """Run the helper until SIGINT or SIGTERM."""
    service = ControlService(settings, token=token, concurrency=concurrency)
    app_runner = web.AppRunner(service.app(), handle_signals=False)
    await app_runner.setup()
    site = web.TCPSite(app_runner, host, port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await app_runner.cleanup()


# --- the probe's client ---------------------------------------------------------------------


async def ask(rt: runner.Runtime, target: Target, addresses: list[str]) -> Control:
    """The control's view of `target`; one retry, then a Control that says why it failed."""
    s = rt.settings
    assert s.control is not None
    url = s.control.rstrip("/") + "/api/v1/measure"
    headers = {"Authorization": f"Bearer {s.control_token}"} if s.control_token else {}
    body = {"url": target.url, "addresses": addresses[:MAX_ADDRESSES]}
    error = ""
    for attempt in range(2):
        start = time.perf_counter()
        try:
            async with (
                asyncio.timeout(runner.target_deadline(s) + runner.CONTROL_GRACE),
                rt.session.post(url, json=body, headers=headers) as resp,
            ):
                text = await http.read_capped(resp, 8 << 20)
                if resp.status != 200:
                    error = f"HTTP {resp.status}: {text[:200].decode('utf-8', 'replace')}"
                    if resp.status < 500:
                        break  # our request is wrong: asking again will not help
                    continue
                doc = json.loads(text)
                return from_json(Control, doc["control"])
        except (ValueError, KeyError, TypeError) as exc:
            error = f"malformed answer: {describe(exc)}"
            break
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = (
                f"{describe(exc)} after {time.perf_counter() - start:.1f}s (attempt {attempt + 1})"
            )
    return Control(error=f"{url}: {error}")
