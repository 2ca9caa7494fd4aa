"""`censorprobe serve` in both lab vantages after ten rounds (`rounds`), scraped by a real
Prometheus, and its status page in a real headless Chromium: what the dashboard and a person would
see."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.lab import scenarios as lab
from tests.conftest import require_tool
from tests.lab.conftest import PORT, VANTAGE_IP, Rounds, curl, in_vantage, prometheus_query

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"


Where = tuple[str, str]  # (country, service)


def path_series(path: str) -> tuple[dict[Where, str], dict[Where, tuple[str, str]]]:
    """A path's own verdict (`quic`, `ech`) and blocking, as Prometheus has them: the latest of
    each in-country target."""
    verdicts = {
        (s["metric"]["country"], s["metric"]["service_name"]): s["metric"]["verdict"]
        for s in prometheus_query(f'censorprobe_target_{path}_verdict{{perspective=""}} == 1')
    }
    blocking = {
        (s["metric"]["country"], s["metric"]["service_name"]): (
            s["metric"]["layer"],
            s["metric"]["method"],
        )
        for s in prometheus_query(f'censorprobe_target_{path}_blocking{{perspective=""}} == 1')
    }
    return verdicts, blocking


def test_prometheus_sees_every_scenario_from_both_vantages(rounds: Rounds) -> None:
    verdicts = {
        (s["metric"]["country"], s["metric"]["service_name"]): s["metric"]["verdict"]
        for s in prometheus_query('censorprobe_target_verdict{perspective=""} == 1')
    }
    blocking = {
        (s["metric"]["country"], s["metric"]["service_name"]): (
            s["metric"]["layer"],
            s["metric"]["method"],
            s["metric"].get("ip_version"),
        )
        for s in prometheus_query('censorprobe_target_blocking{perspective=""} == 1')
    }
    for v, country in lab.VANTAGES.items():
        for s in lab.scenarios():
            e = s.expected(v)
            assert verdicts.get((country, s.name)) == e.verdict, (country, s.name)
            family = str(e.ip_version) if e.ip_version else None
            expected = (e.layer, e.method, family) if e.layer else None
            assert blocking.get((country, s.name)) == expected, (country, s.name)
    quic, ech = path_series("quic"), path_series("ech")
    for country in lab.VANTAGES.values():
        for s in lab.scenarios():
            for path, (verdicts_seen, blocks_seen) in (
                (lab.expected_quic(s), quic),
                (lab.expected_ech(s), ech),
            ):
                where = (country, s.name)
                assert verdicts_seen.get(where) == (path.verdict if path else None), where
                expected_how = (path.layer, path.method) if path and path.layer else None
                assert blocks_seen.get(where) == expected_how, where
    up = prometheus_query('up{job="censorprobe"}')
    assert len(up) == len(VANTAGE_IP) and all(s["value"][1] == "1" for s in up)


def test_prometheus_sees_the_remote_series_apart(rounds: Rounds) -> None:
    """The abroad vantage's series for the lab's country carry perspective="remote", beside
    vantage a's in-country series for the same country and service."""
    remote = 'perspective="remote"'
    verdicts = {
        (s["metric"]["vantage"], s["metric"]["service_name"]): s["metric"]["verdict"]
        for s in prometheus_query(f"censorprobe_target_verdict{{{remote}}} == 1")
    }
    blocking = {
        s["metric"]["service_name"]: (s["metric"]["layer"], s["metric"]["method"])
        for s in prometheus_query(f"censorprobe_target_blocking{{{remote}}} == 1")
    }
    countries = {
        s["metric"]["country"] for s in prometheus_query(f"censorprobe_target_verdict{{{remote}}}")
    }
    assert countries == {lab.REMOTE_COUNTRY}
    for s in lab.scenarios():
        e = s.expect_remote
        assert verdicts.get((f"lab-{lab.ABROAD}", s.name)) == e.verdict, s.name
        assert blocking.get(s.name) == ((e.layer, e.method) if e.layer else None), s.name
    assert not prometheus_query(f"censorprobe_target_quic_verdict{{{remote}}}")  # no QUIC path


def test_promtool_accepts_the_vantages_exposition(rounds: Rounds) -> None:
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


def test_status_page_renders_in_chromium_with_blocked_services_marked(rounds: Rounds) -> None:
    dom = chromium("--dump-dom", profile=rounds.directory / "chrome-dom").stdout
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
            profile=rounds.directory / f"chrome-{name}",
        )
        assert shot.exists() and shot.stat().st_size > 10_000


DEPLOY = REPO / "deploy"
FIRING_IN_THE_LAB = {
    "CensorprobeServiceBlocked",
    "CensorprobeServiceThrottled",
    "CensorprobeHTTP3Blocked",
    "CensorprobeHTTPSBlockedHTTP3Open",
    "CensorprobePathInterference",
}
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
def test_every_dashboard_query_returns_series(rounds: Rounds, expr: str) -> None:
    assert prometheus_query(_grafana(expr)), expr


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_every_alert_expression_runs_and_its_metrics_exist(
    rounds: Rounds, rule: dict[str, Any]
) -> None:
    """Alerts for blocks fire in the lab; the others (lifted, silent, stale, down, control
    unreachable) cannot be true there, but every series they read must exist."""
    result = prometheus_query(rule["expr"])
    if rule["alert"] in FIRING_IN_THE_LAB:
        assert result, rule["expr"]
    for selector in SELECTOR.findall(rule["expr"]):
        assert prometheus_query(selector), selector
