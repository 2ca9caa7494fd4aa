"""The probe with the lab's control helper, from each vantage, ten rounds of `serve` in a row
while a thousand other targets keep the machine busy: every scenario of the lab's scenario file
gets its expected verdict, layer, method and family every time, with the words a user needs."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.lab import demo
from probe.lab import scenarios as lab
from probe.model import SCHEMA
from tests.lab.conftest import ROUNDS, Rounds

Results = dict[str, dict[str, list[dict[str, Any]]]]  # vantage -> service -> results, in order
CASES = [(v, s) for v in lab.VANTAGES for s in lab.scenarios()]


@pytest.fixture(scope="module")
def results(rounds: Rounds) -> Results:
    return {v: rounds.results(v) for v in (*lab.VANTAGES, lab.ABROAD)}


def diagnosis(r: dict[str, Any]) -> tuple[Any, ...]:
    b = r["blocking"] or {}
    return (r["verdict"], b.get("layer"), b.get("method"), b.get("ip_version"))


def http3(q: dict[str, Any]) -> tuple[Any, ...]:
    b = q["blocking"] or {}
    return (q["verdict"], b.get("layer"), b.get("method"), b.get("sni_based"))


def as_expected(e: lab.Expect | None) -> tuple[Any, ...] | None:
    return None if e is None else (e.verdict, e.layer, e.method, e.sni_based)


@pytest.mark.parametrize(("vantage", "scenario"), CASES, ids=[f"{v}-{s.name}" for v, s in CASES])
def test_expected_verdict_every_round(
    results: Results, vantage: str, scenario: lab.Scenario
) -> None:
    seen = results[vantage][scenario.name]
    assert len(seen) == ROUNDS
    e = scenario.expected(vantage)
    q = lab.expected_quic(scenario)  # None: an http:// target has no HTTP/3 path
    for i, r in enumerate(seen, 1):
        assert diagnosis(r) == (e.verdict, e.layer, e.method, e.ip_version), (i, r["explanation"])
        if q is None:
            assert r["quic"] is None
        else:
            got = http3(r["quic"])
            assert got == (q.verdict, q.layer, q.method, q.sni_based), (i, r["quic"]["explanation"])
        ech = r["ech"] and http3(r["ech"])  # None: an http:// target has no ECH verdict
        assert ech == as_expected(lab.expected_ech(scenario)), (i, r["ech"])
        assert r["explanation"]
        assert r["schema"] == SCHEMA
        # the control answered (where the scenario blocks the way to it: it did not)
        answered = r["evidence"]["control"]["measurement"] is not None
        assert answered != scenario.control_fails, (i, r["evidence"]["control"])
        if r["verdict"] in ("blocked", "throttled"):
            # measured again after the pause, and seen the same way
            assert (r["attempts"], r["agreed"]) == (2, 2), (i, r["explanation"])


@pytest.mark.parametrize("scenario", lab.scenarios(), ids=[s.name for s in lab.scenarios()])
def test_expected_remote_verdict_every_round(results: Results, scenario: lab.Scenario) -> None:
    """From abroad toward the lab's country: the border's censors show (they act in both
    directions), the ISP's do not, and a clear path is said to be only that."""
    seen = results[lab.ABROAD][scenario.name]
    assert len(seen) == ROUNDS
    e = scenario.expect_remote
    for i, r in enumerate(seen, 1):
        assert diagnosis(r) == (e.verdict, e.layer, e.method, e.ip_version), (i, r["explanation"])
        assert (r["perspective"], r["country"], r["vantage"]) == (
            "remote",
            lab.REMOTE_COUNTRY,
            f"lab-{lab.ABROAD}",
        )
        remote = r["evidence"]["probe"]["remote"]
        # the harmless controls went first, to the same destinations, and went through
        (silent,) = remote["silent"]
        assert silent["destination"] == lab.IN_COUNTRY_SILENT
        assert silent["harmless"]["responses"] == []
        (names,) = remote["names"]
        harmless = names["harmless"] or names["harmless_http"]
        assert harmless["failure"] is None
        if r["verdict"] == "accessible":
            assert r["explanation"].startswith("No interference on this path")
            assert f"does not say whether users in {lab.REMOTE_COUNTRY} reach" in r["explanation"]
        else:
            assert r["attempts"] == 2 and r["agreed"] == 2  # measured again after the pause


def test_remote_injection_names_the_forged_address(results: Results) -> None:
    r = results[lab.ABROAD]["dns-injection"][-1]
    assert f"to {lab.IN_COUNTRY_SILENT}, which runs no resolver" in r["explanation"]
    assert f"was answered {lab.FORGED_ADDRESS} after" in r["explanation"]
    (silent,) = r["evidence"]["probe"]["remote"]["silent"]
    forged = [a for q in silent["queries"] for resp in q["responses"] for a in resp["addresses"]]
    assert forged and set(forged) == {lab.FORGED_ADDRESS}


def explanation(results: Results, name: str, v: str = "a") -> str:
    return str(results[v][name][-1]["explanation"])


def test_load_targets_were_measured_every_round(
    results: Results,
) -> None:
    for v in lab.VANTAGES:
        load = results[v]["load"]
        assert len(load) >= 500 * ROUNDS and all(r["verdict"] == "accessible" for r in load)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("freeze-in-headers", "stalled: 1448 bytes of the response arrived"),
        ("freeze-in-body", "bytes of the response arrived, the last"),
        ("freeze-in-tls-record", "the response began ("),
        ("freeze-after-tls-records", "32768 bytes of the response arrived"),
        ("chain-to-sni-reset", "redirect 1 of http://chain-sni.lab.test/ to https://snireset"),
        ("chain-to-forged-dns", "(host injected.lab.test): 203.0.113.53 answered one A query"),
        ("chain-to-dropped-ip", "(host ipdrop.lab.test): TCP timeout"),
        ("page-linking-the-registry", "builtin.ru_rkn_registry (built-in): it matched a page"),
        ("news-quoting-a-blockpage", "the control's page matches it too"),
        ("ipv6-blackhole", "over IPv6 only: TCP timeout connecting to 2001:db8:113::38"),
        ("ipv4-blackhole", "over IPv4 only: TCP timeout connecting to 203.0.113.39"),
        ("aaaa-injection", "answered one AAAA query for aaaa.lab.test 2 times"),
        ("quic-open", "HTTP/3 200 'quic.lab.test over HTTP/3'"),
        ("quic-sni-block", "completes QUIC with SNI example.com: SNI-based"),
        ("quic-udp-block", "answers no QUIC from here (its UDP is blocked), not SNI-based"),
        ("quic-none", "the control's QUIC fails too"),
        ("quic-open-https-reset", "HTTP/3 200"),
    ],
)
def test_the_explanation_names_what_a_user_needs(results: Results, name: str, words: str) -> None:
    r = results["a"][name][-1]
    assert words in r["explanation"] + (r["quic"] or {}).get("explanation", "")


def test_http3_is_tried_where_only_the_control_sees_it_advertised(results: Results) -> None:
    """The vantage's HTTPS is reset, so it never sees the Alt-Svc: the control's counts."""
    path = results["a"]["quic-open-https-reset"][-1]["evidence"]["probe"]["quic"]
    assert path["tried"] == "control"


def test_a_vantage_whose_ipv6_goes_nowhere_says_so_and_measures_ipv4(
    results: Results,
) -> None:
    """Vantage b has an IPv6 route, but its ISP drops IPv6: the control helper answers over
    IPv4 and not over IPv6, so no target's IPv6 is measured there."""
    r = results["b"]["dual-stack"][-1]
    assert explanation(results, "dual-stack", "b").endswith("IPv6 not measured")
    probe = r["evidence"]["probe"]
    note = next(n for n in probe["notes"] if n.startswith("IPv6 not measured"))
    assert "answers over IPv4 but not over IPv6" in note
    assert {t["family"] for t in probe["tcp"]} == {4}
    a = results["a"]["dual-stack"][-1]["evidence"]["probe"]
    assert {t["family"] for t in a["tcp"]} == {4, 6}


ROUTED = [s for s in lab.scenarios() if s.expect_routes]
ROUTE_RUNS = 3  # `check --routes` in each vantage, one run after another
RoutesSeen = dict[str, dict[str, list[dict[str, Any]]]]  # vantage -> service -> results


@pytest.fixture(scope="module")
def routes_seen(rounds: Rounds, lab_up: Path) -> RoutesSeen:
    """`check --routes` over the scenarios with expected routes, from both vantages at once,
    ROUTE_RUNS times each (after the rounds: nothing else measures meanwhile)."""
    doc = yaml.safe_load(demo.targets_file(lab_up).read_text())
    doc["targets"] = [t for t in doc["targets"] if t["service"] in {s.name for s in ROUTED}]
    path = lab_up / "routes-targets.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def runs(vantage: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for _ in range(ROUTE_RUNS):
            argv = demo.check_argv(vantage, lab_up, "--routes", "--targets", str(path))
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            assert proc.stdout.strip(), proc.stderr[-2000:]
            for r in json.loads(proc.stdout)["results"]:
                out.setdefault(r["service"], []).append(r)
        return out

    with ThreadPoolExecutor(len(lab.VANTAGES)) as pool:
        return dict(zip(lab.VANTAGES, pool.map(runs, lab.VANTAGES), strict=True))


ROUTE_CASES = [(v, s) for v in lab.VANTAGES for s in ROUTED]


@pytest.mark.parametrize(
    ("vantage", "scenario"), ROUTE_CASES, ids=[f"{v}-{s.name}" for v, s in ROUTE_CASES]
)
def test_routes_every_run(routes_seen: RoutesSeen, vantage: str, scenario: lab.Scenario) -> None:
    seen = routes_seen[vantage][scenario.name]
    assert len(seen) == ROUTE_RUNS
    for i, r in enumerate(seen, 1):
        got = {k: route["outcome"] for k, route in r["routes"].items()}
        control = r["evidence"]["control"] or {}
        theirs = {k: (control.get("measurement") or {}).get(k) for k in ("dns", "quic")}
        assert got == scenario.expect_routes, (
            f"run {i}: {json.dumps(r['routes'])}; the control: {control.get('error')} "
            f"{json.dumps(theirs)}"
        )
        assert r["verdict"] == scenario.expected(vantage).verdict, (i, r["explanation"])


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (
            "sni-reset",
            "the reset follows the name: a ClientHello with SNI snireset.lab.test fails (reset), "
            "the harmless name example.com is answered",
        ),
        ("sni-reset", "two TCP segments inside the SNI gets through"),
        ("large-clienthello-dropped", "not one with a post-quantum key share"),
        ("ech-blocked", ""),
    ],
)
def test_the_variants_explain_the_verdict(results: Results, name: str, words: str) -> None:
    r = results["a"][name][-1]
    assert words in r["explanation"]
    if name == "ech-blocked":
        assert "the ECH extension is what is blocked" in r["ech"]["explanation"]
        assert f"outer name {lab.ECH_PUBLIC_NAME}" in r["ech"]["explanation"]


def test_lab_demo_prints_every_scenario_beside_its_expected_verdict(netns_ok: None) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "lab", "demo"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len(lab.scenarios()) * (len(lab.VANTAGES) + 1)  # and the abroad vantage's
    assert f"{total}/{total} diagnoses as expected" in proc.stdout
    for s in lab.scenarios():
        assert any(
            line.startswith(s.name) and str(s.expect) in line for line in proc.stdout.splitlines()
        )
    assert (
        "cp-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )
