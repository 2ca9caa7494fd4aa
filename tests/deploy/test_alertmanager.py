"""The shipped Alertmanager config, in a real Alertmanager: while a vantage is under a network
regime, its per-target block alerts are inhibited; another vantage's are not."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, require_tool

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or require_tool("alertmanager")
    amtool = require_tool("amtool")
    check = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={CONFIG}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # alone: no gossip with peers
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "alertmanager.log").read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def post(url: str, alerts: list[dict[str, Any]]) -> None:
    body = json.dumps(alerts).encode()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", body, {"Content-Type": "application/json"}
    )
    assert urllib.request.urlopen(request, timeout=5).status == 200


def alert(name: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, **labels}, "annotations": {"summary": name}}


def test_a_vantage_regime_inhibits_that_vantages_block_alerts(alertmanager: str) -> None:
    post(
        alertmanager,
        [
            alert("CensorprobeVantageRegime", vantage="msk-1", country="RU", regime="allowlist"),
            alert(
                "CensorprobeServiceBlocked",
                vantage="msk-1",
                country="RU",
                service_name="telegram",
                layer="tls",
                method="timeout",
            ),
            alert(
                "CensorprobeServiceBlocked",
                vantage="spb-1",
                country="RU",
                service_name="telegram",
                layer="tls",
                method="reset",
            ),
        ],
    )
    states: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(100):
        with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5) as resp:
            got = json.load(resp)
        states = {(a["labels"]["alertname"], a["labels"]["vantage"]): a["status"] for a in got}
        if states.get(("CensorprobeServiceBlocked", "msk-1"), {}).get("inhibitedBy"):
            break
        time.sleep(0.1)
    blocked_msk = states[("CensorprobeServiceBlocked", "msk-1")]
    assert blocked_msk["state"] == "suppressed" and blocked_msk["inhibitedBy"], blocked_msk
    assert states[("CensorprobeServiceBlocked", "spb-1")]["state"] == "active"
    assert states[("CensorprobeVantageRegime", "msk-1")]["state"] == "active"
