"""Metric rendering: values read back from a private registry, labels bounded."""

from __future__ import annotations

import gc
import gzip
import json
from dataclasses import replace

from prometheus_client import CollectorRegistry, generate_latest

from probe.model import (
    Blocking,
    Certificate,
    Control,
    Diagnosis,
    DNSObservation,
    HTTPObservation,
    Measurement,
    Result,
    Target,
    TCPObservation,
    TLSObservation,
)
from probe.serve.metrics import ResultsCollector, render, target_label
from probe.serve.web import FRESH, Exposition
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
    ech = Diagnosis(Verdict.BLOCKED, Blocking(Layer.TLS, Method.TIMEOUT), "ECH blocked", "")
    c.record(replace(result("https://d.example/", Verdict.ACCESSIBLE), ech=ech))
    assert render(c) == generate_latest(registry(c))
    text = render(c).decode()
    assert 'censorprobe_target_ech_verdict{country="CN",service_name="clubhouse",' in text
    assert 'target="https://d.example/",vantage="vp\\"1\\\\",verdict="blocked"} 1.0' in text
    assert 'censorprobe_target_ech_blocking{country="CN",layer="tls",method="timeout"' in text
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


def _with_evidence(i: int) -> Result:
    """A result as a served target's: DNS, TCP, TLS with its certificate, HTTP, a control."""
    url = f"https://site{i}.example/"
    t = Target.parse(url)
    cert = Certificate(f"CN=site{i}.example", "CN=CA", (f"site{i}.example",), "a", "b", "00")
    m = Measurement(
        t,
        100.0,
        dns=(DNSObservation("system", "system", "A+AAAA", 0.01, "NOERROR", ("192.0.2.1",)),),
        tcp=(TCPObservation("192.0.2.1", 443, 0.02),),
        tls=(TLSObservation("192.0.2.1", 443, t.host, 0.03, certificate=cert, verified=True),),
        http=HTTPObservation(url, 0.2, status=200, headers={"server": "x"}, throughput=1e5),
        timings={"dns": 0.01, "total": 0.3},
    )
    return Result(m, Diagnosis(Verdict.ACCESSIBLE, None, "why", "ok"), Control(m), finished=1.0)


def test_kept_results_leave_the_cyclic_collector_little_to_scan() -> None:
    """serve keeps every target's latest result: as objects, a full collection would scan their
    whole evidence (a pause of a quarter of a second at 2,000 targets, /metrics unanswered)."""
    results = [_with_evidence(i) for i in range(500)]
    c = ResultsCollector("vp1", "DE")
    gc.collect()
    before = len(gc.get_objects())
    for r in results:
        c.record(r, r.dumps())
    del results, r
    gc.collect()
    per_target = (len(gc.get_objects()) - before) / 500
    assert per_target <= 12
    kept = c.latest["https://site7.example/"]
    evidence = json.loads(kept.json() or b"")["evidence"]
    assert evidence["probe"]["tls"][0]["certificate"]["subject"] == "CN=site7.example"
    assert evidence["control"]["measurement"]["http"]["status"] == 200


async def test_a_gzip_scrape_gets_the_last_compression_rather_than_wait_for_the_next() -> None:
    c = ResultsCollector("vp1", "DE")
    c.record(result("https://a.example/", Verdict.ACCESSIBLE))
    exposition = Exposition(c)
    first = gzip.decompress(await exposition.body(True))
    assert b'target="https://a.example/"' in first
    c.record(result("https://b.example/", Verdict.ACCESSIBLE))
    exposition.at -= FRESH  # the rendering is due again
    assert b'target="https://b.example/"' in await exposition.body(False)
    assert gzip.decompress(await exposition.body(True)) == first  # compressing, not waited for
    assert exposition.compressing is not None
    await exposition.compressing
    assert b'target="https://b.example/"' in gzip.decompress(await exposition.body(True))
