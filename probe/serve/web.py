"""The HTTP side of `censorprobe serve`: /metrics, /probe, /results, /result, /healthz, /readyz
and the status page at /."""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Protocol

import orjson
from aiohttp import web

from probe.engine import schedule
from probe.engine.runtime import Runtime
from probe.httpd import authorised
from probe.model import Target
from probe.serve import statuspage
from probe.serve.metrics import Latest, ResultsCollector, render

PROBE_MARGIN = 0.5  # answer this long before Prometheus gives up on the scrape
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FRESH = 0.5  # seconds one rendering of /metrics serves every scrape


class Exposition:
    """/metrics' text, rendered at most every FRESH seconds while results change, and shared by
    every scrape in between: a crowd of scrapers costs the event loop a few microseconds each,
    not a rendering each. The gzipped text is compressed once per rendering, in a thread; while
    that runs, scrapes that accept gzip get the previous rendering's (at most FRESH seconds and a
    compression older) rather than wait for it."""

    def __init__(self, collector: ResultsCollector) -> None:
        self.collector = collector
        self.changes = -1
        self.at = 0.0
        self.text = b""
        self.gzipped: asyncio.Future[bytes] | None = None  # the latest compression done
        self.compressing: asyncio.Future[bytes] | None = None  # the next, while it runs

    async def body(self, gzipped: bool) -> bytes:
        now = time.monotonic()
        if self.changes != self.collector.changes and now - self.at >= FRESH:
            self.changes, self.at = self.collector.changes, now
            self.text = render(self.collector)
            self.compressing = None
        if not gzipped:
            return self.text
        if self.compressing is None:  # compressed once, for every scrape until the next render
            self.compressing = asyncio.ensure_future(asyncio.to_thread(gzip.compress, self.text, 1))
        if self.compressing.done() or self.gzipped is None:
            self.gzipped = self.compressing
        return await self.gzipped


class Source(Protocol):
    """What the endpoints read: the daemon's latest state."""

    collector: ResultsCollector
    token: str | None  # guards /probe, /results and /result when set

    @property
    def runtime(self) -> Runtime: ...

    def round_info(self) -> str: ...

    def healthy(self) -> bool: ...

    def not_ready(self) -> str | None: ...

    def probe_runtime(self, target: Target) -> Runtime | None:
        """The runtime /probe measures `target` with, or None when it may not."""
        ...


def make_app(source: Source, *, probe_slots: int = 4) -> web.Application:
    """/metrics, /probe, /results, /result, /healthz, /readyz and the status page at /."""
    slots = asyncio.Semaphore(probe_slots)
    waiting = [0]
    exposition = Exposition(source.collector)

    async def metrics(request: web.Request) -> web.Response:
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        headers = {"Content-Type": CONTENT_TYPE}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=await exposition.body(gzipped), headers=headers)

    def refused(request: web.Request) -> web.Response | None:
        if authorised(request, source.token):
            return None
        return web.Response(status=401, text="missing or wrong bearer token\n")

    async def probe(request: web.Request) -> web.Response:
        if denied := refused(request):
            return denied
        try:
            target = Target.parse(request.query.get("target", ""))
        except ValueError as exc:
            return web.Response(status=400, text=f"target: {exc}\n")
        rt = source.probe_runtime(target)
        if rt is None:
            return web.Response(
                status=403,
                text=f"target: {target.url} is not in the targets file (serve --probe-targets "
                "any measures any URL, under the control helper's address policy)\n",
            )
        within = None  # the target's whole bound (a pause and a re-measurement excepted)
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        if header:
            try:
                within = max(0.5, float(header) - PROBE_MARGIN)
            except ValueError:
                return web.Response(
                    status=400, text="X-Prometheus-Scrape-Timeout-Seconds: not a number\n"
                )
        if waiting[0] >= 4 * probe_slots:
            return web.Response(status=503, text="too many /probe requests at once\n")
        waiting[0] += 1
        try:
            async with slots:
                start = time.perf_counter()
                # a scrape has no time for a pause and a re-measurement
                result = await schedule.measure_and_judge(target, rt, within=within, retries=0)
        finally:
            waiting[0] -= 1
        collector = ResultsCollector(rt.settings.vantage, rt.settings.country)
        collector.record(result)
        text = (
            render(collector)
            + (
                "# HELP censorprobe_probe_duration_seconds How long the probe took\n"
                "# TYPE censorprobe_probe_duration_seconds gauge\n"
                f"censorprobe_probe_duration_seconds {time.perf_counter() - start:.6f}\n"
                "# HELP censorprobe_probe_success 1 when the target is accessible\n"
                "# TYPE censorprobe_probe_success gauge\n"
                f"censorprobe_probe_success {int(result.verdict == 'accessible')}\n"
            ).encode()
        )
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})

    def _latest() -> list[Latest]:
        return list(source.collector.latest.values())

    async def results(request: web.Request) -> web.Response:
        if denied := refused(request):
            return denied
        service = request.query.get("service")
        verdict = request.query.get("verdict")
        chosen = [
            document
            for r in _latest()
            if (service is None or r.target.service == service)
            and (verdict is None or r.verdict == verdict)
            and (document := r.json()) is not None
        ]
        s = source.runtime.settings
        head = orjson.dumps({"vantage": s.vantage, "country": s.country})[:-1]
        body = head + b',"results":[' + b",".join(chosen) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def result(request: web.Request) -> web.Response:
        if denied := refused(request):
            return denied
        # a URL, or a remote result's "URL (remote CC)" as the status page links it
        found = source.collector.latest.get(request.query.get("url", ""))
        document = found.json() if found is not None else None
        if document is None:
            return web.json_response({"error": "no result for that url"}, status=404)
        return web.Response(body=document, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        ok = source.healthy()
        return web.Response(
            status=200 if ok else 503,
            text=("ok" if ok else "stalled") + f": {source.round_info()}\n",
        )

    async def readyz(request: web.Request) -> web.Response:
        problem = source.not_ready()
        if problem is not None:
            return web.Response(status=503, text=f"not ready: {problem}\n")
        return web.Response(text=f"ready: {source.round_info()}\n")

    async def index(request: web.Request) -> web.Response:
        s = source.runtime.settings
        page = statuspage.render(
            _latest(),
            s.vantage,
            s.country,
            round_info=source.round_info(),
            problem=source.not_ready(),
            regime=source.runtime.regime,
        )
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/results", results)
    app.router.add_get("/result", result)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app
