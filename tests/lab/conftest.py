"""Lab tests need root and network namespaces: skipped with the reason where they cannot be made,
never in CI, where a missing capability is a failure (`tests.conftest.lacking`).

The lab is up once for the session (`lab_up`); tests that bring a lab up and down themselves
(`lab up`/`down`/`demo`, the image tests) run before it exists (see `tests/conftest.py`). The
expensive part, `rounds`, runs `serve` in both vantages for ten rounds over every scenario plus
load targets, and in the abroad vantage measuring the lab's country remotely, with a real
Prometheus scraping them: the verdict, Prometheus, dashboard and status page tests all read what
those rounds left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from probe.lab import demo, topology
from probe.lab import scenarios as lab
from probe.serve import archive
from tests.conftest import lacking, require_tool

ROUNDS = 10
LOAD_TARGETS = 500  # in each vantage: a thousand other targets keep the machine busy meanwhile
CONCURRENCY = 100  # the blocked targets' re-measurement pauses do not hold the load up
VANTAGE_IP = {
    "a": "198.18.1.2",
    "b": "198.18.2.2",
    lab.ABROAD: "198.18.6.2",
    **{v: f"{prefix}.2" for v, (_, _, prefix) in lab.REGIME_VANTAGES.items()},
}
SERVED = tuple(VANTAGE_IP)
PORT = 9716
PROM = "127.0.0.1:9090"  # inside the ISP namespace, which reaches every vantage
SCRAPE = 2.0  # seconds: the lab's scrape interval, the agents' as the lab's Prometheus'
# the fleet: each in-country vantage's Prometheus agent remote-writes to a central one abroad
AGENTS = (*lab.VANTAGES, *lab.REGIME_VANTAGES)
CENTRAL = f"{VANTAGE_IP[lab.ABROAD]}:9096"
AGENT_PORT = 9095
# the targets of the regime vantages: a few, each read as the regime
REGIME_TARGETS = ("ok", "ok-http", "sni-reset")
ROUNDS_TIMEOUT = 900.0
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


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


@pytest.fixture(scope="session")
def lab_up(netns_ok: None) -> Iterator[Path]:
    """The lab, up for the session; returns its state directory (CA, logs)."""
    topology.up()
    try:
        yield topology.state_dir()
    finally:
        topology.down()


@dataclass(frozen=True)
class Rounds:
    """What ten rounds of `serve` in each vantage left: archives, logs, Prometheus."""

    directory: Path

    def results(self, vantage: str) -> dict[str, list[dict[str, Any]]]:
        """Every archived result of the vantage, by service, in the order measured."""
        out: dict[str, list[dict[str, Any]]] = {}
        for r in archive.read([self.directory / vantage]):
            out.setdefault(r["service"], []).append(r)
        return out


@contextlib.contextmanager
def own_namespace(purpose: str, resolv_conf: str) -> Iterator[str]:
    """A namespace of the test's own with only `lo` (up), whose /etc/resolv.conf is
    `resolv_conf` (`ip netns exec` reads /etc/netns/NAME/); removed after."""
    name = f"cp-{purpose}-{os.getpid()}"
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(resolv_conf)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def in_ns(ns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout
    )


def curl(ns: str, url: str) -> str:
    return in_ns(ns, "curl", "-sS", "--max-time", "5", url).stdout


def _targets(state: Path, vantage: str, interval: float) -> Path:
    """Every scenario and, in the country, the load targets (pages of the honest origin, over
    plain HTTP)."""
    abroad = vantage == lab.ABROAD
    doc = yaml.safe_load(demo.targets_file(state, remote=abroad).read_text())
    doc["settings"]["interval"] = interval
    doc["settings"]["concurrency"] = CONCURRENCY
    if vantage in lab.REGIME_VANTAGES:
        doc["targets"] = [t for t in doc["targets"] if t["service"] in REGIME_TARGETS]
    else:
        doc["targets"] += [
            {"url": f"http://{lab.by_technique('none').host}/load/{i}", "service": "load"}
            for i in range(0 if abroad else LOAD_TARGETS)
        ]
    path = state / f"rounds-{vantage}.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(path)  # whole, for serve's reload
    return path


def _serve(vantage: str, state: Path, tmp: Path) -> subprocess.Popen[bytes]:
    argv = topology.exec_argv(
        vantage,
        [
            sys.executable,
            "-m",
            "probe",
            "serve",
            "--targets",
            str(_targets(state, vantage, interval=1)),
            "--listen",
            f"{VANTAGE_IP[vantage]}:{PORT}",
            "--vantage",
            f"lab-{vantage}",
            "--country",
            demo.country(vantage),
            "--ca-file",
            str(state / "ca.pem"),
            "--data-dir",
            str(tmp / vantage),
        ],
    )
    log = (tmp / f"serve-{vantage}.log").open("w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def _prometheus(tmp: Path) -> subprocess.Popen[bytes]:
    """The lab's Prometheus, scraping every vantage, with the shipped alert rules (the regime's
    `for:` made short: the lab's rounds are minutes, not hours)."""
    prometheus = require_tool("prometheus")
    rules = (DEPLOY / "prometheus" / "rules.yml").read_text()
    regime = rules.index("alert: CensorprobeVantageRegime")
    end = rules.index("for:", regime)
    rules = rules[:end] + "for: 6s" + rules[rules.index("\n", end) :]
    (tmp / "rules.yml").write_text(rules)
    config = tmp / "prometheus.yml"
    scraped = ", ".join(f"{ip}:{PORT}" for ip in VANTAGE_IP.values())
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE:g}s, scrape_timeout: 1s, evaluation_interval: 2s}}\n"
        f"rule_files: [{tmp / 'rules.yml'}]\n"
        "scrape_configs:\n"
        "  - job_name: censorprobe\n"
        f"    static_configs: [{{targets: [{scraped}]}}]\n"
    )
    return _run_in(
        "cp-isp",
        tmp / "prometheus.log",
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address={PROM}",
    )


def _run_in(namespace: str, log: Path, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, *argv],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _fleet(tmp: Path) -> list[subprocess.Popen[bytes]]:
    """The fleet, as deploy/prometheus/agent.yml runs it: a Prometheus agent beside each
    in-country vantage's probe, remote-writing to a central Prometheus abroad (which receives
    only that)."""
    prometheus = require_tool("prometheus")
    central = _run_in(
        f"cp-{lab.ABROAD}",
        tmp / "central.log",
        prometheus,
        f"--config.file={_write(tmp / 'central.yml', 'global: {}')}",
        f"--storage.tsdb.path={tmp / 'central-tsdb'}",
        f"--web.listen-address={CENTRAL}",
        "--web.enable-remote-write-receiver",
    )
    agents = []
    for v in AGENTS:
        shipped = yaml.safe_load((DEPLOY / "prometheus" / "agent.yml").read_text())
        shipped["global"] = {
            "scrape_interval": f"{SCRAPE:g}s",
            "external_labels": {"vantage": f"lab-{v}", "country": demo.country(v)},
        }
        shipped["scrape_configs"][0]["static_configs"] = [{"targets": [f"{VANTAGE_IP[v]}:{PORT}"]}]
        shipped["remote_write"] = [
            {
                "url": f"http://{CENTRAL}/api/v1/write",
                "queue_config": {"min_backoff": "100ms", "max_backoff": "1s"},
            }
        ]
        config = _write(tmp / f"agent-{v}.yml", yaml.safe_dump(shipped))
        agents.append(
            _run_in(
                f"cp-vantage-{v}",
                tmp / f"agent-{v}.log",
                prometheus,
                "--enable-feature=agent",
                f"--config.file={config}",
                f"--storage.agent.path={tmp / f'agent-{v}'}",
                f"--web.listen-address={VANTAGE_IP[v]}:{AGENT_PORT}",
            )
        )
    return [central, *agents]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def rounds(lab_up: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rounds]:
    """`serve` in each vantage for ten rounds back to back over every scenario and the load
    targets (abroad: every scenario, remotely), scraped by Prometheus. When a vantage's tenth
    round starts, its targets file gets a long interval (serve reloads it): after the tenth round
    it keeps serving what it found."""
    tmp = tmp_path_factory.mktemp("rounds")
    procs = [_prometheus(tmp), *_fleet(tmp), *(_serve(v, lab_up, tmp) for v in SERVED)]
    try:
        deadline = time.monotonic() + ROUNDS_TIMEOUT
        calmed: set[str] = set()
        done: set[str] = set()
        while done != set(SERVED):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                logs = "\n".join((tmp / f"serve-{v}.log").read_text()[-1500:] for v in SERVED)
                raise AssertionError(f"serve did not finish {ROUNDS} rounds:\n{logs}")
            for v in set(SERVED) - done:
                health = curl("cp-isp", f"http://{VANTAGE_IP[v]}:{PORT}/healthz")
                if v not in calmed and f"round {ROUNDS} running" in health:
                    _targets(lab_up, v, interval=3600)
                    calmed.add(v)
                if f"{ROUNDS} rounds, the last took" in health:
                    done.add(v)
            time.sleep(0.5)
        time.sleep(5)  # two more scrapes after the last round
        yield Rounds(tmp)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:  # an agent still retrying its remote write
                p.kill()
                p.wait()


def prometheus_query(
    expr: str, at: str = PROM, ns: str = "cp-isp", when: float | None = None
) -> list[dict[str, Any]]:
    """An instant query, evaluated now or at the Unix time `when`."""
    moment = "" if when is None else f"&time={when:.3f}"
    doc = json.loads(curl(ns, f"http://{at}/api/v1/query?query={quote(expr)}{moment}"))
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def central_query(expr: str, when: float | None = None) -> list[dict[str, Any]]:
    """The central Prometheus abroad, fed only by the vantages' agents."""
    return prometheus_query(expr, CENTRAL, f"cp-{lab.ABROAD}", when)


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
