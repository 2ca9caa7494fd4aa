"""The default target list inside a namespace with only `lo`: no network is not censorship."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import own_namespace

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def offline_ns(netns_ok: None) -> Iterator[str]:
    """A namespace with only `lo`, whose resolv.conf names a resolver it has no route to (a
    documentation address), as a vantage that lost its network has."""
    with own_namespace("offline", "nameserver 192.0.2.53\n") as name:
        yield name


def test_default_targets_without_network_are_never_blocked(offline_ns: str) -> None:
    """Every target is reported, within the budget, and none is called blocked or throttled."""
    budget = 60.0
    start = time.monotonic()
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            offline_ns,
            sys.executable,
            "-m",
            "probe",
            "check",
            "--targets",
            str(REPO / "targets.yaml"),
            "--format",
            "json",
            "--timeout",
            "3",
            "--budget",
            str(budget),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=budget + 30,
        cwd=REPO,
    )
    elapsed = time.monotonic() - start
    doc = json.loads(proc.stdout)
    urls = [r["url"] for r in doc["results"]]
    expected = subprocess.run(  # the same list, read by the probe's own parser
        [
            sys.executable,
            "-c",
            "from probe.config import load; import sys; "
            f"print('\\n'.join(t.url for t in load('{REPO / 'targets.yaml'}').targets))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(urls) == sorted(expected)  # in the order they finished
    assert doc["ended_early"] is None
    assert elapsed < budget + 10
    verdicts = {r["verdict"] for r in doc["results"]}
    assert verdicts <= {"inconclusive", "down"}, verdicts
    assert proc.returncode == 2
    assert doc["regime"]["regime"] == "offline"
    for r in doc["results"]:
        assert r["regime"] == "offline"
        (dns,) = r["evidence"]["probe"]["dns"]  # the system resolver: named for what happened
        assert (dns["failure"], dns["error"]) == (
            "unreachable",
            "no route to any resolver (192.0.2.53: Network is unreachable)",
        )
        assert "DNS for" in r["explanation"] and "no route to any resolver" in r["explanation"]
        if r["url"].startswith("https://"):  # nothing reached the site: nothing claimed of it
            assert r["quic"]["verdict"] == "not_measured", r["quic"]["explanation"]


def test_without_network_the_table_is_one_line_naming_the_regime(offline_ns: str) -> None:
    proc = subprocess.run(
        [
            *("ip", "netns", "exec", offline_ns, sys.executable, "-m", "probe", "check"),
            *("--targets", str(REPO / "targets.yaml"), "--timeout", "2", "--quiet"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("network regime offline since ") and "nothing can leave" in line
