"""Prometheus exposition of results: a custom Collector over a snapshot of the latest results.

Labels never carry raw IPs, error text or unbounded values: the target label is the URL without
its query string, and the service label is `service_name` (Prometheus and the operator attach
`service`, `job` and `instance` themselves).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway, write_to_textfile
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from probe import __version__
from probe.model import Blocking, Diagnosis, RegimeReport, Result, Target
from probe.vocabulary import QUIC_VERDICTS, TARGET_VERDICTS, Regime, Step, Verdict

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STEPS = (
    Step.DNS,
    Step.TCP_TLS,
    Step.SNI_CHECK,
    Step.HTTP,
    Step.QUIC,
    Step.CLIENTHELLO,
    Step.TOTAL,
)


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


# The per-target families: (name, help). Their text is cached per target when a result arrives,
# so /metrics costs a join, not a formatting pass over every series: with 1,000 targets,
# prometheus_client's generate_latest takes ~60 ms, the join ~1 ms.
TARGET_FAMILIES = (
    ("censorprobe_target_verdict", "1 for the latest verdict of the target, 0 for the others"),
    (
        "censorprobe_target_blocking",
        "1 while the latest verdict is blocked or throttled, by layer and method",
    ),
    (
        "censorprobe_last_measurement_timestamp_seconds",
        "When the latest measurement of the target finished",
    ),
    ("censorprobe_http_throughput_bytes_per_second", "Body throughput of the latest HTTP fetch"),
    (
        "censorprobe_target_quic_verdict",
        "1 for the latest verdict of the target's HTTP/3 path, 0 for the others",
    ),
    (
        "censorprobe_target_quic_blocking",
        "1 while the target's HTTP/3 path is blocked, by layer and method",
    ),
    (
        "censorprobe_target_ech_verdict",
        "1 for the latest ECH verdict of the target (an ECH ClientHello to it), 0 for the others",
    ),
    (
        "censorprobe_target_ech_blocking",
        "1 while ECH ClientHellos to the target are blocked, by layer and method",
    ),
)
Samples = tuple[tuple[dict[str, str], float], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(frozen=True, slots=True)
class Latest:
    """What is kept of a target's latest result: what its series and the status page show, and
    (for `serve`'s /result and /results) the whole result as JSON (`Result.dumps`), compressed.

    The evidence as objects is ~90 objects a target, which every full collection of Python's
    cyclic collector scans (2,000 targets: a 250 ms pause, during which /metrics does not answer);
    as bytes it is nothing to scan, and compressed a quarter of the JSON's size."""

    target: Target
    diagnosis: Diagnosis
    quic: Diagnosis | None
    ech: Diagnosis | None
    finished: float
    throughput: float | None
    evidence: bytes | None  # zlib

    @property
    def verdict(self) -> Verdict:
        return self.diagnosis.verdict

    @classmethod
    def of(cls, r: Result, json: bytes | None = None) -> Latest:
        h = r.measurement.http
        throughput = h.throughput if h is not None else None
        evidence = zlib.compress(json, 1) if json is not None else None
        return cls(
            r.measurement.target, r.diagnosis, r.quic, r.ech, r.finished, throughput, evidence
        )

    def json(self) -> bytes | None:
        """The result as `Result.dumps` wrote it, where it was kept."""
        return zlib.decompress(self.evidence) if self.evidence is not None else None


class _Series:
    """One target's samples per family, and the same as exposition text (tuples: nothing for the
    cyclic collector to scan once it has seen them)."""

    def __init__(self, r: Latest, vantage: str, country: str) -> None:
        t = r.target
        base = {
            "service_name": t.service,
            "target": target_label(t.url),
            "vantage": vantage,
            "country": country,
        }
        if t.remote:  # the country measured, from abroad: an additive label, remote only
            base.update(country=t.remote, perspective="remote")
        b = r.diagnosis.blocking
        self.samples: tuple[Samples, ...] = (
            tuple(
                ({**base, "verdict": v}, 1.0 if r.verdict == v else 0.0) for v in TARGET_VERDICTS
            ),
            ((_blocking_labels(base, b), 1.0),) if b is not None else (),
            ((base, r.finished),),
            ((base, r.throughput),) if r.throughput is not None else (),
            *_path(base, r.quic),
            *_path(base, r.ech),
        )
        self.text = tuple(
            "".join(_line(name, labels, value) for labels, value in samples)
            for (name, _), samples in zip(TARGET_FAMILIES, self.samples, strict=True)
        )


def _path(base: dict[str, str], d: Diagnosis | None) -> tuple[Samples, Samples]:
    """A path's own verdict (HTTP/3, ECH) as a state set, and its blocking; none without it."""
    if d is None:
        return (), ()
    verdicts = tuple(
        ({**base, "verdict": v}, 1.0 if d.verdict == v else 0.0) for v in QUIC_VERDICTS
    )
    b = d.blocking
    return verdicts, (({**base, "layer": b.layer, "method": b.method}, 1.0),) if b else ()


def _blocking_labels(base: dict[str, str], b: Blocking) -> dict[str, str]:
    """`ip_version` only where one family alone is blocked (the label is additive)."""
    labels = {**base, "layer": b.layer, "method": b.method}
    if b.ip_version:
        labels["ip_version"] = str(b.ip_version)
    return labels


def _line(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {floatToGoString(value)}\n"  # type: ignore[no-untyped-call]


class ResultsCollector(Collector):
    """Latest result per target (`Target.key`), plus counters and step histograms over all
    results."""

    def __init__(self, vantage: str, country: str) -> None:
        self.vantage = vantage
        self.country = country
        self.latest: dict[str, Latest] = {}
        self.series: dict[str, _Series] = {}
        self.totals: Counter[str] = Counter()
        self.control: Counter[str] = Counter()  # answers from the control helper: ok / error
        self.steps: dict[str, _Histogram] = {step: _Histogram() for step in STEPS}
        self.archive_errors = 0  # records serve could not write to its archive
        self.changes = 0  # counts every change, so a renderer knows when its text is stale
        self.regime: RegimeReport | None = None  # the vantage's, from its canaries

    def set_regime(self, report: RegimeReport | None) -> None:
        self.regime = report
        self.changes += 1

    def archive_error(self) -> None:
        self.archive_errors += 1
        self.changes += 1

    def record(self, result: Result, json: bytes | None = None) -> None:
        """`json`: the result's `dumps()`, kept where the evidence is to be served."""
        self.changes += 1
        key = result.measurement.target.key
        latest = self.latest[key] = Latest.of(result, json)
        self.series[key] = _Series(latest, self.vantage, self.country)
        self.totals[result.verdict] += 1
        if result.control is not None:
            self.control["error" if result.control.error else "ok"] += 1
        for step, seconds in result.measurement.timings.items():
            if step in self.steps:
                self.steps[step].observe(seconds)

    def relabel(self, vantage: str, country: str) -> None:
        """A reloaded targets file may name the vantage anew."""
        if (vantage, country) != (self.vantage, self.country):
            self.changes += 1
            self.vantage, self.country = vantage, country
            self.series = {key: _Series(r, vantage, country) for key, r in self.latest.items()}

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget targets no longer in the list (by `Target.key`), so their series disappear."""
        wanted = set(keys)
        self.changes += 1
        for key in list(self.latest):
            if key not in wanted:
                del self.latest[key]
                del self.series[key]

    def collect(self) -> Iterator[Metric]:
        for i, (name, doc) in enumerate(TARGET_FAMILIES):
            family = GaugeMetricFamily(name, doc)
            for series in self.series.values():
                for labels, value in series.samples[i]:
                    family.add_sample(name, labels, value)
            yield family
        yield from self.collect_totals()

    def collect_totals(self) -> Iterator[Metric]:
        """The families that do not grow with the targets."""
        total = CounterMetricFamily(
            "censorprobe_measurements",
            "Measurements made, by verdict",
            labels=["vantage", "verdict"],
        )
        for v in TARGET_VERDICTS:
            total.add_metric([self.vantage, v], float(self.totals[v]))
        yield total
        control = CounterMetricFamily(
            "censorprobe_control_requests",
            "Answers from the control helper, by outcome (error: unreachable, refused or garbled)",
            labels=["vantage", "outcome"],
        )
        for outcome in ("ok", "error"):
            control.add_metric([self.vantage, outcome], float(self.control[outcome]))
        yield control
        duration = HistogramMetricFamily(
            "censorprobe_step_duration_seconds",
            "Duration of each measurement step",
            labels=["step"],
        )
        for step, hist in self.steps.items():
            duration.add_metric([step], hist.buckets(), hist.total)
        yield duration
        archive = CounterMetricFamily(
            "censorprobe_archive_errors",
            "Measurements that could not be written to the evidence archive (disk full?)",
            labels=["vantage"],
        )
        archive.add_metric([self.vantage], float(self.archive_errors))
        yield archive
        if self.regime is not None:
            yield from self._regime(self.regime)
        info = InfoMetricFamily("censorprobe_build", "Version of censorprobe and where it runs")
        info.add_metric(
            [], {"version": __version__, "vantage": self.vantage, "country": self.country}
        )
        yield info

    def _regime(self, report: RegimeReport) -> Iterator[Metric]:
        """The vantage's network regime: a state set, and since when it holds."""
        labels = ["vantage", "country", "regime"]
        state = GaugeMetricFamily(
            "censorprobe_vantage_regime",
            "1 for the vantage's network regime found by its canaries, 0 for the others",
            labels=labels,
        )
        for regime in Regime:
            state.add_metric([self.vantage, self.country, regime], float(report.regime == regime))
        yield state
        since = GaugeMetricFamily(
            "censorprobe_vantage_regime_since_timestamp_seconds",
            "When the vantage's current network regime began",
            labels=["vantage", "country"],
        )
        since.add_metric([self.vantage, self.country], report.since)
        yield since


class _Totals(Collector):
    def __init__(self, collector: ResultsCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        return self.collector.collect_totals()


def _registry(collector: ResultsCollector) -> CollectorRegistry:
    """A private registry (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(collector: ResultsCollector) -> bytes:
    """The text exposition format: the same text as generate_latest over the collector (a test
    holds them equal), with the per-target families joined from their cache."""
    parts = []
    for i, (name, doc) in enumerate(TARGET_FAMILIES):
        parts.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        parts.extend(series.text[i] for series in collector.series.values())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Totals(collector))
    return "".join(parts).encode() + generate_latest(registry)


def write_textfile(path: str, collector: ResultsCollector) -> None:
    """For node_exporter's textfile collector: written aside, then renamed into place."""
    write_to_textfile(path, _registry(collector))


def push(gateway: str, collector: ResultsCollector) -> None:
    """To a Pushgateway, grouped by vantage so vantages do not overwrite each other."""
    push_to_gateway(
        gateway,
        job="censorprobe",
        registry=_registry(collector),
        grouping_key={"vantage": collector.vantage},
        timeout=30,
    )
