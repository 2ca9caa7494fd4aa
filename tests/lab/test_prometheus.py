"""`censorprobe serve` in both lab vantages, scraped by a real Prometheus, and its status page in a
real headless Chromium: what the dashboard and a person would see."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from probe.lab import demo, topology
from probe.lab import scenarios as lab
from tests.conftest import require_tool
from tests.lab.conftest import in_vantage

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
VANTAGE_IP = {"a": "198.18.1.2", "b": "198.18.2.2"}
PORT = 9716
PROM = "127.0.0.1:9090"  # inside the ISP namespace, which reaches both vantages


def in_ns(ns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout
    )


def curl(ns: str, url: str) -> str:
    return in_ns(ns, "curl", "-sS", "--max-time", "5", url).stdout


@pytest.fixture(scope="module")
def stack(lab_up: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """serve in each vantage, one round each, and Prometheus scraping both."""
    prometheus = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("stack")
    targets = demo.targets_file(lab_up)
    procs = []
    for v, country in lab.VANTAGES.items():
        argv = topology.exec_argv(
            v,
            [
                sys.executable,
                "-m",
                "probe",
                "serve",
                "--targets",
                str(targets),
                "--listen",
                f"{VANTAGE_IP[v]}:{PORT}",
                "--vantage",
                f"lab-{v}",
                "--country",
                country,
                "--ca-file",
                str(lab_up / "ca.pem"),
                "--interval",
                "3600",
                "--data-dir",
                str(tmp / v),
            ],
        )
        procs.append(
            subprocess.Popen(
                argv, stdout=(tmp / f"serve-{v}.log").open("w"), stderr=subprocess.STDOUT
            )
        )
    config = tmp / "prometheus.yml"
    scraped = ", ".join(f"{ip}:{PORT}" for ip in VANTAGE_IP.values())
    config.write_text(
        "global: {scrape_interval: 2s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: censorprobe\n"
        f"    static_configs: [{{targets: [{scraped}]}}]\n"
    )
    procs.append(
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                "cp-isp",
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={PROM}",
            ],
            stdout=(tmp / "prometheus.log").open("w"),
            stderr=subprocess.STDOUT,
        )
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = all(
                "the last took" in curl("cp-isp", f"http://{ip}:{PORT}/healthz")
                for ip in VANTAGE_IP.values()
            )
            if done:
                break
            time.sleep(1)
        else:
            logs = "\n".join((tmp / f"serve-{v}.log").read_text()[-1500:] for v in lab.VANTAGES)
            raise AssertionError(f"serve did not finish a round:\n{logs}")
        time.sleep(5)  # two more scrapes after the round
        yield tmp
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


def query(expr: str) -> list[dict[str, Any]]:
    out = curl("cp-isp", f"http://{PROM}/api/v1/query?query={quote(expr)}")
    doc = json.loads(out)
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def test_prometheus_sees_every_scenario_from_both_vantages(stack: Path) -> None:
    verdicts = {
        (s["metric"]["country"], s["metric"]["service_name"]): s["metric"]["verdict"]
        for s in query("censorprobe_target_verdict == 1")
    }
    blocking = {
        (s["metric"]["country"], s["metric"]["service_name"]): (
            s["metric"]["layer"],
            s["metric"]["method"],
        )
        for s in query("censorprobe_target_blocking == 1")
    }
    for country in lab.VANTAGES.values():
        for s in lab.scenarios():
            assert verdicts.get((country, s.name)) == s.expect.verdict, (country, s.name)
            expected = (s.expect.layer, s.expect.method) if s.expect.layer else None
            assert blocking.get((country, s.name)) == expected, (country, s.name)
    up = query('up{job="censorprobe"}')
    assert len(up) == 2 and all(s["value"][1] == "1" for s in up)


def test_promtool_accepts_the_vantages_exposition(stack: Path) -> None:
    promtool = require_tool("promtool")
    metrics = curl("cp-vantage-a", f"http://{VANTAGE_IP['a']}:{PORT}/metrics")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = require_tool("chromium")
    return in_vantage(
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
        f"http://{VANTAGE_IP['a']}:{PORT}/",
        timeout=90,
    )


def test_status_page_renders_in_chromium_with_blocked_services_marked(stack: Path) -> None:
    dom = chromium("--dump-dom", profile=stack / "chrome-dom").stdout
    assert "censorprobe · vantage lab-a · XA" in dom
    row = next(line for line in dom.split("<tr>") if "snireset.lab.test" in line)
    assert ">blocked</span> tls/reset" in row
    ARTIFACTS.mkdir(exist_ok=True)
    for name, size in (("status-page.png", "1280,1400"), ("status-page-phone.png", "390,1600")):
        shot = ARTIFACTS / name
        shot.unlink(missing_ok=True)
        chromium(
            f"--screenshot={shot}",
            f"--window-size={size}",
            "--hide-scrollbars",
            profile=stack / f"chrome-{name}",
        )
        assert shot.exists() and shot.stat().st_size > 10_000


DEPLOY = REPO / "deploy"
FIRING_IN_THE_LAB = {"CensorprobeServiceBlocked", "CensorprobeServiceThrottled"}
SELECTOR = re.compile(r"\b(?:censorprobe_[a-z_]+|up)(?:\{[^}]*\})?")


def _dashboard_exprs() -> list[str]:
    out = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out.extend(t["expr"] for t in panel["targets"])
    return out


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _grafana(expr: str) -> str:
    return expr.replace("$service", ".*").replace("$__rate_interval", "1m")


@pytest.mark.parametrize("expr", _dashboard_exprs())
def test_every_dashboard_query_returns_series(stack: Path, expr: str) -> None:
    assert query(_grafana(expr)), expr


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_every_alert_expression_runs_and_its_metrics_exist(
    stack: Path, rule: dict[str, Any]
) -> None:
    """Alerts for blocks fire in the lab; the others (lifted, silent, stale, down, control
    unreachable) cannot be true there, but every series they read must exist."""
    result = query(rule["expr"])
    if rule["alert"] in FIRING_IN_THE_LAB:
        assert result, rule["expr"]
    for selector in SELECTOR.findall(rule["expr"]):
        assert query(selector), selector
