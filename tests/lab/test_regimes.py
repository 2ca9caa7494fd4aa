"""A vantage's network regime in the lab, every round of the session's `serve` rounds: three
vantages whose ISP gives them an allowlist, a shutdown and port 443 reset read as those regimes
(one alert each, in the lab's Prometheus), the others as normal; and the fleet — each vantage's
Prometheus agent remote-writing to a central Prometheus abroad — keeps a shut-down vantage's
series through its shutdown, delivered once it is lifted."""

from __future__ import annotations

import itertools
import subprocess
import time
from typing import Any

import pytest

from probe.lab import scenarios as lab
from tests.lab.conftest import (
    REGIME_TARGETS,
    ROUNDS,
    SCRAPE,
    Rounds,
    central_query,
    prometheus_query,
)

# what each regime vantage's targets read as: the regime's doing, never a decision on them
UNDER = {
    "allowlist": {"ok": "inconclusive", "ok-http": "inconclusive", "sni-reset": "inconclusive"},
    "shutdown": {"ok": "inconclusive", "ok-http": "inconclusive", "sni-reset": "inconclusive"},
    "port_reset": {"ok": "blocked", "ok-http": "accessible", "sni-reset": "blocked"},
}


@pytest.mark.parametrize("vantage", list(lab.REGIME_VANTAGES))
def test_a_regime_vantage_reads_its_regime_every_round(rounds: Rounds, vantage: str) -> None:
    regime = lab.REGIME_VANTAGES[vantage][1]
    results = rounds.results(vantage)
    assert set(results) == set(REGIME_TARGETS)
    for service, seen in results.items():
        assert len(seen) == ROUNDS, service
        for i, r in enumerate(seen, 1):
            assert r["regime"] == regime, (i, service, r["explanation"])
            assert r["verdict"] == UNDER[regime][service], (i, service, r["explanation"])
            if r["verdict"] != "accessible":
                assert r["explanation"].startswith(f"network regime {regime} since"), r
            if r["verdict"] == "blocked":
                assert r["blocking"]["regime"] == regime
                assert (r["attempts"], r["agreed"]) == (2, 2), r["explanation"]


def test_the_other_vantages_stay_normal_every_round(rounds: Rounds) -> None:
    for vantage in (*lab.VANTAGES, lab.ABROAD):
        seen = [r for results in rounds.results(vantage).values() for r in results]
        assert seen and {r["regime"] for r in seen} == {"normal"}, vantage


def _firing() -> set[tuple[str, str]]:
    alerts = prometheus_query('ALERTS{alertname="CensorprobeVantageRegime",alertstate="firing"}')
    return {(a["metric"]["vantage"], a["metric"]["regime"]) for a in alerts}


def test_one_regime_alert_fires_for_each_regime_vantage(rounds: Rounds) -> None:
    expected = {(f"lab-{v}", regime) for v, (_, regime, _) in lab.REGIME_VANTAGES.items()}
    deadline = time.monotonic() + 60
    while _firing() != expected and time.monotonic() < deadline:
        time.sleep(1)
    assert _firing() == expected
    since = prometheus_query("censorprobe_vantage_regime_since_timestamp_seconds")
    assert {s["metric"]["vantage"] for s in since} == {f"lab-{v}" for v in rounds_vantages()}


def rounds_vantages() -> list[str]:
    return [*lab.VANTAGES, *lab.REGIME_VANTAGES, lab.ABROAD]


def test_the_fleet_sees_every_regime_and_a_shutdown_afterwards(rounds: Rounds) -> None:
    """The central Prometheus, fed only by the vantages' agents, has each regime; the shut-down
    vantage's agent could send nothing abroad until the shutdown is lifted, then sends what it
    kept: the window holds its samples, with no gap longer than two scrape intervals."""
    seen = {
        (s["metric"]["vantage"], s["metric"]["regime"])
        for s in central_query("censorprobe_vantage_regime == 1")
    }
    expected = {(f"lab-{v}", "normal") for v in lab.VANTAGES} | {
        (f"lab-{v}", regime)
        for v, (_, regime, _) in lab.REGIME_VANTAGES.items()
        if regime not in ("shutdown", "allowlist")  # their agents cannot reach abroad either
    }
    assert seen == expected
    shut = next(v for v, (_, regime, _) in lab.REGIME_VANTAGES.items() if regime == "shutdown")
    selector = f'censorprobe_vantage_regime{{vantage="lab-{shut}",regime="shutdown"}}'
    # the shutdown has held since the lab came up; about two minutes of it are measured
    began = _agent_first_scrape(rounds, shut)
    time.sleep(max(0.0, began + 120 - time.time()))
    lifted = time.time()
    rule = ["-D", "FORWARD", "-i", f"to-{shut}", "!", "-d", lab.IN_COUNTRY, "-j", "DROP"]
    subprocess.run(["ip", "netns", "exec", "cp-isp", "iptables", "-w", *rule], check=True)
    # the window up to the lift, however late the agent's retries deliver it (a query "now"
    # would slide its start past the shutdown's first samples while they are on their way)
    window = int(lifted - began) + 5
    deadline = time.monotonic() + 90
    stamps: list[float] = []
    while time.monotonic() < deadline:
        found = central_query(f"{selector}[{window}s]", when=lifted)
        stamps = [float(t) for t, _ in found[0]["values"]] if found else []
        if stamps and stamps[0] <= began + 2 * SCRAPE and stamps[-1] >= lifted - 2 * SCRAPE:
            break
        time.sleep(2)
    assert stamps, "the central Prometheus never got the shut-down vantage's series"
    assert stamps[0] <= began + 2 * SCRAPE and stamps[-1] >= lifted - 2 * SCRAPE, (
        began,
        lifted,
        stamps[:3],
        stamps[-3:],
    )
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) <= 2 * SCRAPE, max(gaps)


def _agent_first_scrape(rounds: Rounds, vantage: str) -> float:
    """When the vantage's regime series began (its first round's survey): the start of the
    shutdown window the central Prometheus must hold."""
    first: Any = min(r["started"] for rs in rounds.results(vantage).values() for r in rs)
    return float(first)
