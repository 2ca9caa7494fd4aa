"""Lab tests need root and network namespaces: skipped with the reason where they cannot be made,
never in CI, where a missing capability is a failure (`tests.conftest.lacking`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import lacking


def _namespace_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (the 'ip' command)"
    name = f"cp-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.fixture(scope="session")
def netns_ok() -> None:
    problem = _namespace_problem()
    if problem is not None:
        lacking(problem)


@pytest.fixture(scope="module")
def lab_up(netns_ok: None) -> Iterator[Path]:
    """The lab, up for one test module; returns its state directory (CA, logs)."""
    from probe.lab import topology

    topology.up()
    try:
        yield topology.state_dir()
    finally:
        topology.down()


def in_vantage(
    *cmd: str, vantage: str = "a", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", f"cp-vantage-{vantage}", *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def in_internet(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """From the internet namespace: where the control helper stands, outside every censor."""
    return subprocess.run(
        ["ip", "netns", "exec", "cp-internet", *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
