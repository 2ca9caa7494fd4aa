"""Prometheus exposition of results: a custom Collector over a snapshot of the latest results.

Labels never carry raw IPs, error text or unbounded values: the target label is the URL without
its query string, and the service label is `service_name` (Prometheus and the operator attach
`service`, `job` and `instance` themselves).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from probe import __version__, runner, statuspage
from probe.config import Settings
from probe.model import VERDICTS, Result, Target

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STEPS = ("dns", "tcp_tls", "sni_check", "http", "total")
TARGET_LABELS = ("service_name", "target", "vantage", "country")


def target_label(url: str) -> str:
    """The URL without query string or fragment: a bounded label value."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(STEP_BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(STEP_BUCKETS):
            if value <= bound:
                self.counts[i] += 1

    def buckets(self) -> list[tuple[str, float]]:
        out = [(repr(b), float(c)) for b, c in zip(STEP_BUCKETS, self.counts, strict=True)]
        return [*out, ("+Inf", float(self.count))]


class ResultsCollector(Collector):
    """Latest result per target URL, plus counters and step histograms over all results."""

    def __init__(self, vantage: str, country: str) -> None:
        self.vantage = vantage
        self.country = country
        self.latest: dict[str, Result] = {}
        self.totals: Counter[str] = Counter()
        self.steps = {step: _Histogram() for step in STEPS}

    def record(self, result: Result) -> None:
        self.latest[result.measurement.target.url] = result
        self.totals[result.verdict.verdict] += 1
        for step, seconds in result.measurement.timings.items():
            if step in self.steps:
                self.steps[step].observe(seconds)

    def keep_only(self, urls: Iterable[str]) -> None:
        """Forget targets no longer in the list, so their series disappear."""
        wanted = set(urls)
        for url in list(self.latest):
            if url not in wanted:
                del self.latest[url]

    def collect(self) -> Iterator[Metric]:
        results = list(self.latest.values())
        verdict = GaugeMetricFamily(
            "censorprobe_target_verdict",
            "1 for the latest verdict of the target, 0 for the others",
            labels=[*TARGET_LABELS, "verdict"],
        )
        blocking = GaugeMetricFamily(
            "censorprobe_target_blocking",
            "1 while the latest verdict is blocked or throttled, by layer and method",
            labels=[*TARGET_LABELS, "layer", "method"],
        )
        last = GaugeMetricFamily(
            "censorprobe_last_measurement_timestamp_seconds",
            "When the latest measurement of the target finished",
            labels=list(TARGET_LABELS),
        )
        throughput = GaugeMetricFamily(
            "censorprobe_http_throughput_bytes_per_second",
            "Body throughput of the latest HTTP fetch",
            labels=list(TARGET_LABELS),
        )
        for r in results:
            t = r.measurement.target
            base = [t.service, target_label(t.url), self.vantage, self.country]
            for v in VERDICTS:
                verdict.add_metric([*base, v], 1.0 if r.verdict.verdict == v else 0.0)
            if r.verdict.blocking is not None:
                blocking.add_metric(
                    [*base, r.verdict.blocking.layer, r.verdict.blocking.method], 1.0
                )
            last.add_metric(base, r.finished)
            h = r.measurement.http
            if h is not None and h.throughput is not None:
                throughput.add_metric(base, h.throughput)
        yield from (verdict, blocking, last, throughput)

        total = CounterMetricFamily(
            "censorprobe_measurements",
            "Measurements made, by verdict",
            labels=["vantage", "verdict"],
        )
        for v in VERDICTS:
            total.add_metric([self.vantage, v], float(self.totals[v]))
        yield total
        duration = HistogramMetricFamily(
            "censorprobe_step_duration_seconds",
            "Duration of each measurement step",
            labels=["step"],
        )
        for step, hist in self.steps.items():
            duration.add_metric([step], hist.buckets(), hist.total)
        yield duration
        info = InfoMetricFamily("censorprobe_build", "Version of censorprobe and where it runs")
        info.add_metric(
            [], {"version": __version__, "vantage": self.vantage, "country": self.country}
        )
        yield info


def _registry(collector: ResultsCollector) -> CollectorRegistry:
    """A private registry (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(collector: ResultsCollector) -> bytes:
    """The text exposition format."""
    return generate_latest(_registry(collector))


def push(gateway: str, collector: ResultsCollector) -> None:
    """To a Pushgateway, grouped by vantage so vantages do not overwrite each other."""
    push_to_gateway(
        gateway,
        job="censorprobe",
        registry=_registry(collector),
        grouping_key={"vantage": collector.vantage},
        timeout=30,
    )


# --- the HTTP side of `censorprobe serve` ---------------------------------------------------


class Source(Protocol):
    """What the endpoints read: the daemon's latest state."""

    collector: ResultsCollector

    @property
    def settings(self) -> Settings: ...

    def round_info(self) -> str: ...

    def healthy(self) -> bool: ...


PROBE_MARGIN = 0.5  # answer this long before Prometheus gives up on the scrape
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def make_app(source: Source) -> web.Application:
    """/metrics, /probe, /results, /result, /healthz and the status page at /."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(source.collector), headers={"Content-Type": CONTENT_TYPE})

    async def probe(request: web.Request) -> web.Response:
        try:
            target = Target.parse(request.query.get("target", ""))
        except ValueError as exc:
            return web.Response(status=400, text=f"target: {exc}\n")
        settings = replace(source.settings, retries=0)  # a scrape has no time for a pause
        budget = runner.target_deadline(settings)
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        if header:
            try:
                budget = max(0.5, float(header) - PROBE_MARGIN)
            except ValueError:
                return web.Response(
                    status=400, text="X-Prometheus-Scrape-Timeout-Seconds: not a number\n"
                )
        start = time.perf_counter()
        results, _ = await runner.run([target], settings, budget=budget)
        collector = ResultsCollector(settings.vantage, settings.country)
        collector.record(results[0])
        text = (
            render(collector)
            + (
                "# HELP censorprobe_probe_duration_seconds How long the probe took\n"
                "# TYPE censorprobe_probe_duration_seconds gauge\n"
                f"censorprobe_probe_duration_seconds {time.perf_counter() - start:.6f}\n"
                "# HELP censorprobe_probe_success 1 when the target is accessible\n"
                "# TYPE censorprobe_probe_success gauge\n"
                f"censorprobe_probe_success {int(results[0].verdict.verdict == 'accessible')}\n"
            ).encode()
        )
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})

    def _latest() -> list[Result]:
        return list(source.collector.latest.values())

    async def results(request: web.Request) -> web.Response:
        service = request.query.get("service")
        verdict = request.query.get("verdict")
        chosen = [
            r.to_json()
            for r in _latest()
            if (service is None or r.measurement.target.service == service)
            and (verdict is None or r.verdict.verdict == verdict)
        ]
        return web.json_response(
            {
                "vantage": source.settings.vantage,
                "country": source.settings.country,
                "results": chosen,
            }
        )

    async def result(request: web.Request) -> web.Response:
        found = source.collector.latest.get(request.query.get("url", ""))
        if found is None:
            return web.json_response({"error": "no result for that url"}, status=404)
        return web.json_response(found.to_json())

    async def healthz(request: web.Request) -> web.Response:
        ok = source.healthy()
        return web.Response(
            status=200 if ok else 503,
            text=("ok" if ok else "stalled") + f": {source.round_info()}\n",
        )

    async def index(request: web.Request) -> web.Response:
        page = statuspage.render(
            _latest(),
            source.settings.vantage,
            source.settings.country,
            round_info=source.round_info(),
        )
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/results", results)
    app.router.add_get("/result", result)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    return app
