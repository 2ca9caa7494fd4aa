"""Prometheus exposition of results: a custom Collector over a snapshot of the latest results.

Labels never carry raw IPs, error text or unbounded values: the target label is the URL without
its query string, and the service label is `service_name` (Prometheus and the operator attach
`service`, `job` and `instance` themselves).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from probe import __version__
from probe.model import VERDICTS, Result

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


def render(collector: ResultsCollector) -> bytes:
    """The text exposition format, from a private registry (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
