"""The probe with the lab's control helper, from each vantage: every scenario of the lab's scenario
file gets its expected verdict, layer and method — `accessible` for the CDN and the slow server,
`down` for the site down everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from probe.lab import demo
from probe.lab import scenarios as lab

CASES = [(v, s) for v in lab.VANTAGES for s in lab.scenarios()]


@pytest.fixture(scope="module")
def results(lab_up: Path) -> dict[str, dict[str, Any]]:
    return {v: demo.run_vantage(v, lab_up) for v in lab.VANTAGES}


@pytest.mark.parametrize(("vantage", "scenario"), CASES, ids=[f"{v}-{s.name}" for v, s in CASES])
def test_expected_verdict(
    results: dict[str, dict[str, Any]], vantage: str, scenario: lab.Scenario
) -> None:
    r = results[vantage][scenario.name]
    blocking = r["blocking"] or {}
    got = (r["verdict"], blocking.get("layer"), blocking.get("method"))
    assert got == (scenario.expect.verdict, scenario.expect.layer, scenario.expect.method), r[
        "explanation"
    ]
    assert r["explanation"]
    assert r["evidence"]["control"]["measurement"] is not None  # the control answered
    if r["verdict"] in ("blocked", "throttled"):
        assert r["attempts"] == 2 and r["agreed"] == 2  # re-measured after the pause, and confirmed


def test_lab_demo_prints_every_scenario_beside_its_expected_verdict(netns_ok: None) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "lab", "demo"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len(lab.scenarios()) * len(lab.VANTAGES)
    assert f"{total}/{total} diagnoses as expected" in proc.stdout
    for s in lab.scenarios():
        assert any(
            line.startswith(s.name) and str(s.expect) in line for line in proc.stdout.splitlines()
        )
    assert (
        "cp-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )
