"""The container image, built here without a registry (debootstrap base, wheelhouse) and run:
non-root, healthy, serving metrics; and inside the censorship lab as a third vantage, where it
diagnoses every scenario as the lab expects."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab import demo, topology
from probe.lab import scenarios as lab
from tests.conftest import free_port, lacking, require_root, require_tool

REPO = Path(__file__).resolve().parents[2]
TAG = "censorprobe:test"


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    require_tool("docker")
    if docker("info").returncode != 0:
        lacking("needs a running Docker engine (start dockerd)")
    require_root("build the base image with debootstrap")
    built = subprocess.run(
        [str(REPO / "deploy" / "build-image"), TAG],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=REPO,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return TAG


def test_image_runs_as_an_unprivileged_user(image: str) -> None:
    assert docker("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip() == "10001"
    version = docker("run", "--rm", "--entrypoint", "censorprobe", image, "--version")
    assert version.stdout.startswith("censorprobe ")


@pytest.fixture
def container(tmp_path: Path) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "-f", name)


def test_serve_in_the_container_is_healthy_and_exports_metrics(
    image: str, tmp_path: Path, container: list[str]
) -> None:
    """Read-only, all capabilities dropped; the only target is the container's own endpoint."""
    (tmp_path / "targets.yaml").write_text(
        "targets:\n  - url: http://127.0.0.1:9716/healthz\n    service: self\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    port = free_port()
    name = f"censorprobe-test-{os.getpid()}"
    container.append(name)
    started = docker(
        "run",
        "-d",
        "--name",
        name,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--health-interval",
        "2s",
        "-p",
        f"127.0.0.1:{port}:9716",
        "-v",
        f"{tmp_path / 'targets.yaml'}:/etc/censorprobe/targets.yaml:ro",
        "-v",
        f"{data}:/var/lib/censorprobe",
        image,
        "--targets",
        "/etc/censorprobe/targets.yaml",
        "--listen",
        "0.0.0.0:9716",
        "--data-dir",
        "/var/lib/censorprobe",
        "--interval",
        "5",
        "--country",
        "ZZ",
        "--vantage",
        "box",
    )
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 60
    health = ""
    while time.monotonic() < deadline:
        health = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
        if health == "healthy":
            break
        time.sleep(1)
    assert health == "healthy", docker("logs", name).stderr[-2000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        if 'service_name="self"' in text:
            break
        time.sleep(1)
    assert (
        'censorprobe_target_verdict{country="ZZ",service_name="self",'
        'target="http://127.0.0.1:9716/healthz",vantage="box",verdict="accessible"} 1.0' in text
    )
    assert any(p.name.startswith("results-") for p in data.iterdir())


def test_the_container_diagnoses_every_lab_scenario(image: str, container: list[str]) -> None:
    """The container's network namespace, attached to the lab as a third vantage."""
    if topology.existing_namespaces():
        topology.down()
    topology.up()
    try:
        state = topology.state_dir()
        targets = demo.targets_file(state)
        name = f"censorprobe-lab-{os.getpid()}"
        container.append(name)
        run = docker(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--dns",
            lab.ISP_RESOLVER,
            "--cap-drop",
            "ALL",
            "-v",
            f"{state}:/lab:ro",
            "--entrypoint",
            "sleep",
            image,
            "600",
        )
        assert run.returncode == 0, run.stderr
        pid = int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
        topology.attach(pid)
        check = docker(
            "exec",
            name,
            "censorprobe",
            "check",
            "--targets",
            f"/lab/{targets.name}",
            "--ca-file",
            "/lab/ca.pem",
            "--vantage",
            "container",
            "--country",
            "XC",
            "--format",
            "json",
            "--quiet",
            timeout=300,
        )
        results = {r["service"]: r for r in json.loads(check.stdout)["results"]}
    finally:
        topology.down()
    # the container has no IPv6 route: like vantage b, whose IPv6 goes nowhere, it measures none
    for s in lab.scenarios():
        seen = demo.got(results[s.name], s)
        assert seen == demo.expected(s, "b"), (s.name, results[s.name]["explanation"])
