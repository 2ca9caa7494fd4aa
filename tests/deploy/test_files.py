"""deploy/: the alert rules pass their unit tests, the configs and manifests are valid, the
dashboards are current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import require_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def run(*cmd: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    promtool = require_tool("promtool")
    check = run(promtool, "check", "rules", "prometheus/rules.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    tests = run(promtool, "test", "rules", "prometheus/rules_test.yml")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


def test_prometheus_configs_are_valid() -> None:
    promtool = require_tool("promtool")
    for args in (
        ["prometheus/prometheus.yml"],
        ["--agent", "prometheus/agent.yml"],
        ["--agent", "k8s/vantage/agent.yml"],
    ):
        check = run(promtool, "check", "config", *args)
        assert check.returncode == 0, check.stdout + check.stderr


def test_kustomize_renders_the_central_side_and_a_vantage() -> None:
    kubectl = require_tool("kubectl")
    central = run(kubectl, "kustomize", ".")
    assert central.returncode == 0, central.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(central.stdout)]
    assert kinds.count("Deployment") == 4 and kinds.count("ConfigMap") == 5
    dashboards = next(
        d
        for d in yaml.safe_load_all(central.stdout)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("grafana-dashboards")
    )
    assert set(dashboards["data"]) == {
        p.name for p in (DEPLOY / "grafana" / "dashboards").iterdir()
    }
    vantage = run(kubectl, "kustomize", "k8s/vantage")
    assert vantage.returncode == 0, vantage.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(vantage.stdout)}
    assert set(docs) >= {"StatefulSet", "ConfigMap", "PodMonitor", "Namespace"}
    probe = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert probe["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # not ready while the archive cannot be written; restarted only when not alive
    assert probe["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probe["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert '--shard "${HOSTNAME##*-}/$SHARDS"' in probe["args"][0]


def test_compose_file_validates_against_the_compose_specification() -> None:
    compose = require_tool("docker-compose")
    check = run(compose, "-f", "compose.yaml", "config", "-q")
    assert check.returncode == 0, check.stdout + check.stderr
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"vantage-a", "vantage-b", "control", "prometheus", "alertmanager", "grafana"} <= set(
        doc["services"]
    )
    countries = {
        s["command"][s["command"].index("--country") + 1]
        for n, s in doc["services"].items()
        if n.startswith("vantage")
    }
    assert len(countries) == 2


def test_dashboards_are_generated_from_the_generator() -> None:
    check = run(sys.executable, "grafana/generate.py", "--check")
    assert check.returncode == 0, check.stdout
    for path in (DEPLOY / "grafana" / "dashboards").iterdir():
        doc = json.loads(path.read_text())
        assert all(p["datasource"]["uid"] == "censorprobe-prometheus" for p in doc["panels"])
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert provisioned["datasources"][0]["uid"] == "censorprobe-prometheus"


def test_the_ci_recipe_fails_on_blocks_with_junit() -> None:
    doc = yaml.safe_load((DEPLOY / "ci" / "github-actions.yml").read_text())
    steps = doc["jobs"]["check"]["steps"]
    command = next(s["run"] for s in steps if s.get("name") == "censorprobe check")
    assert "--format junit" in command
    assert doc[True]["schedule"]  # YAML 1.1 reads the key `on` as True
