"""Metric rendering: values read back from a private registry, labels bounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from probe.model import Blocking, Diagnosis, HTTPObservation, Measurement, Result, Target
from probe.serve.metrics import ResultsCollector, render, target_label
from probe.vocabulary import Layer, Method, Verdict


def result(url: str, verdict: Verdict, blocking: Blocking | None = None) -> Result:
    t = Target.parse(url, service="clubhouse")
    http = HTTPObservation(url, 0.2, status=200, throughput=12345.0)
    m = Measurement(t, 100.0, http=http, timings={"dns": 0.02, "total": 0.5})
    return Result(m, Diagnosis(verdict, blocking, "why", "short"), finished=123.0)


def registry(c: ResultsCollector) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(c)
    return r


def test_verdict_is_a_state_set_and_blocking_carries_layer_and_method() -> None:
    c = ResultsCollector("vp1", "CN")
    c.record(
        result("https://www.clubhouse.com/", Verdict.BLOCKED, Blocking(Layer.TLS, Method.RESET))
    )
    r = registry(c)
    labels = {
        "service_name": "clubhouse",
        "target": "https://www.clubhouse.com/",
        "vantage": "vp1",
        "country": "CN",
    }
    assert r.get_sample_value("censorprobe_target_verdict", {**labels, "verdict": "blocked"}) == 1
    assert (
        r.get_sample_value("censorprobe_target_verdict", {**labels, "verdict": "accessible"}) == 0
    )
    assert (
        r.get_sample_value(
            "censorprobe_target_blocking", {**labels, "layer": "tls", "method": "reset"}
        )
        == 1
    )
    assert r.get_sample_value("censorprobe_last_measurement_timestamp_seconds", labels) == 123.0
    assert r.get_sample_value("censorprobe_http_throughput_bytes_per_second", labels) == 12345.0
    assert (
        r.get_sample_value(
            "censorprobe_measurements_total", {"vantage": "vp1", "verdict": "blocked"}
        )
        == 1
    )
    assert r.get_sample_value("censorprobe_step_duration_seconds_count", {"step": "dns"}) == 1
    assert (
        r.get_sample_value(
            "censorprobe_build_info", {"version": "0.1.0", "vantage": "vp1", "country": "CN"}
        )
        == 1
    )


def test_no_blocking_series_while_accessible_and_removed_targets_vanish() -> None:
    c = ResultsCollector("vp1", "CN")
    c.record(result("https://a.example/", Verdict.ACCESSIBLE))
    c.record(result("https://b.example/", Verdict.ACCESSIBLE))
    c.keep_only(["https://a.example/"])
    text = render(c).decode()
    assert "censorprobe_target_blocking{" not in text
    assert "https://b.example/" not in text
    assert 'target="https://a.example/"' in text


def test_target_label_drops_query_and_fragment() -> None:
    assert target_label("https://x.example/path?session=123#top") == "https://x.example/path"


def test_render_is_exactly_what_prometheus_client_renders() -> None:
    """The cached fast path and generate_latest over the collector give the same text, escaping
    included, so the two can never drift apart."""
    c = ResultsCollector('vp"1\\', "CN")
    c.record(result("https://a.example/", Verdict.BLOCKED, Blocking(Layer.TLS, Method.RESET)))
    c.record(result('https://b.example/x"y\\z', Verdict.ACCESSIBLE))
    c.record(
        result("https://c.example/", Verdict.THROTTLED, Blocking(Layer.HTTP, Method.THROTTLED))
    )
    assert render(c) == generate_latest(registry(c))
    c.relabel("vp2", "RU")
    assert render(c) == generate_latest(registry(c))
    assert b'vantage="vp2"' in render(c)


def test_a_block_of_one_family_carries_ip_version_and_others_do_not() -> None:
    c = ResultsCollector("vp1", "CN")
    c.record(result("https://a.example/", Verdict.BLOCKED, Blocking(Layer.TCP, Method.TIMEOUT, 6)))
    c.record(result("https://b.example/", Verdict.BLOCKED, Blocking(Layer.TCP, Method.TIMEOUT)))
    text = generate_latest(registry(c)).decode()
    blocking = [
        line for line in text.splitlines() if line.startswith("censorprobe_target_blocking{")
    ]
    assert len(blocking) == 2
    one = next(line for line in blocking if "a.example" in line)
    assert 'ip_version="6"' in one and 'layer="tcp"' in one and 'method="timeout"' in one
    assert "ip_version" not in next(line for line in blocking if "b.example" in line)
