"""The canaries before a run, on loopback: the regime they find heads the table and the JSON,
is carried by every result and exported as a state set; `canaries: none` measures none."""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from tests.loopback.conftest import page
from tests.loopback.test_cli import censorprobe

Start = Callable[..., Awaitable[int]]


def closed_port() -> int:
    """A port nothing listens on: a connection there is refused (a RST answers the SYN)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def targets(tmp_path: Path, inside: list[str], abroad: list[str], url: str) -> Path:
    path = tmp_path / "t.yaml"
    doc = {"settings": {"canaries": {"inside": inside, "abroad": abroad}, "timeout": 2}}
    path.write_text(yaml.safe_dump({**doc, "targets": [{"url": url}]}))
    return path


async def test_canaries_that_answer_make_the_regime_normal(
    tmp_path: Path, web_server: Start, tls_origin: int, ca_file: str
) -> None:
    plain = await web_server(page("inside"))
    path = targets(
        tmp_path,
        [f"http://127.0.0.1:{plain}/"],
        [f"https://localhost:{tls_origin}/", f"http://127.0.0.1:{plain}/abroad"],
        f"http://127.0.0.1:{plain}/target",
    )
    code, out, _ = await censorprobe(
        "check",
        "--targets",
        str(path),
        "--ca-file",
        ca_file,
        "--format",
        "json",
        "--canaries",
        "none",
    )
    assert json.loads(out)["regime"] is None  # --canaries none wins over the file's
    code, out, err = await censorprobe(
        "check", "--targets", str(path), "--ca-file", ca_file, "--format", "json", canaries=True
    )
    doc = json.loads(out)
    assert code == 0 and doc["regime"]["regime"] == "normal", err
    assert len(doc["regime"]["evidence"]) == 3 and doc["regime"]["unanswered"] == []
    (r,) = doc["results"]
    assert r["regime"] == "normal" and r["verdict"] == "accessible"
    code, out, _ = await censorprobe(
        "check",
        "--targets",
        str(path),
        "--ca-file",
        ca_file,
        "--format",
        "prometheus",
        canaries=True,
    )
    assert 'censorprobe_vantage_regime{country="ZZ",regime="normal",vantage=' in out
    assert "censorprobe_vantage_regime_since_timestamp_seconds{" in out


async def test_every_connection_to_one_port_refused_reads_port_reset(
    tmp_path: Path, web_server: Start
) -> None:
    plain = await web_server(page("abroad"))
    refused = closed_port()
    path = targets(
        tmp_path,
        [],
        [
            f"https://127.0.0.1:{refused}/",
            f"https://localhost:{refused}/x",
            f"http://127.0.0.1:{plain}/",
        ],
        f"https://127.0.0.1:{refused}/target",
    )
    code, out, err = await censorprobe("check", "--targets", str(path), canaries=True)
    first = out.splitlines()[0]
    assert first.startswith("network regime port_reset since ")
    assert f"every connection to port {refused} abroad is reset" in first
    assert "censorprobe: network regime port_reset" in err
    assert code == 2  # the target: refused, and no control to tell more
    assert "network regime port_reset since" in out.split("\n\n", 1)[1]  # its explanation
