"""`censorprobe check` as a user runs it, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from probe.model import SCHEMA
from tests.loopback.conftest import Handler, quiet, reset_after_hello


async def censorprobe(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None, canaries: bool = False
) -> tuple[int, str, str]:
    """`censorprobe ARGS`; with the canaries only where asked (`quiet`)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probe",
        *(args if canaries else quiet(args)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_json_for_an_accessible_origin_has_evidence_for_every_step(
    tls_origin: int, ca_file: str
) -> None:
    code, out, _ = await censorprobe(
        "check", f"https://localhost:{tls_origin}/", "--ca-file", ca_file, "--format", "json"
    )
    assert code == 0
    doc = json.loads(out)
    (result,) = doc["results"]
    assert result["schema"] == SCHEMA
    assert result["verdict"] == "accessible"
    assert result["blocking"] is None
    assert result["measurements"] == [  # one: its sentence is the result's own
        {"verdict": "accessible", "blocking": None, "summary": result["summary"], "explanation": ""}
    ]
    assert result["target"] == "localhost"
    probe = result["evidence"]["probe"]
    assert probe["dns"][0]["addresses"]
    assert probe["tcp"][0]["failure"] is None
    assert probe["tls"][0]["verified"] is True
    assert probe["tls"][0]["certificate"]["sans"]
    assert probe["http"]["status"] == 200
    assert probe["http"]["title"] == "Hello from the origin"
    assert set(result["timings"]) >= {"dns", "tcp_tls", "http", "total"}
    assert doc["vantage"]["country"] == "ZZ"


async def test_a_plain_check_imports_no_server_dns_or_quic_library(
    tls_origin: int, ca_file: str
) -> None:
    """What a `check` costs at start: the web server (aiohttp), dnspython, cryptography and
    aioquic are each a tenth of a second or more, and a plain HTTPS check needs none of them
    (a public name's HTTPS record is asked and read without dnspython, unless it holds one)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    url = f"https://localhost:{tls_origin}/"
    code, out, err = await censorprobe(
        "check", url, "--ca-file", ca_file, "--format", "json", env=env
    )
    assert code == 0 and json.loads(out)["results"][0]["verdict"] == "accessible"
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if "|" in line}
    assert "probe.engine.flow" in imported  # the log is read right
    assert imported.isdisjoint({"aiohttp", "dns", "cryptography", "aioquic", "prometheus_client"})


async def test_reset_after_client_hello_is_reported_at_the_tls_step(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await raw_server(reset_after_hello)
    code, out, _ = await censorprobe("check", f"https://localhost:{port}/", "--format", "json")
    (result,) = json.loads(out)["results"]
    assert [t["failure"] for t in result["evidence"]["probe"]["tls"]] == ["reset"]
    # every SNI is reset (the server resets everything): not SNI filtering, and no control
    assert result["verdict"] == "inconclusive"
    assert "TLS" in result["explanation"] and "reset" in result["explanation"]
    assert code == 2


async def test_table_shows_verdict_and_evidence(tls_origin: int, ca_file: str) -> None:
    code, out, _ = await censorprobe(
        "check", f"https://localhost:{tls_origin}/", "--ca-file", ca_file
    )
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:5] == ["SERVICE", "URL", "VERDICT", "LAYER/METHOD", "EVIDENCE"]
    assert "accessible" in row and "HTTP 200" in row


async def test_jsonl_and_prometheus_formats(tls_origin: int, ca_file: str, tmp_path: Path) -> None:
    url = f"https://localhost:{tls_origin}/"
    code, out, _ = await censorprobe("check", url, "--ca-file", ca_file, "--format", "jsonl")
    assert code == 0
    assert json.loads(out.splitlines()[0])["url"] == url
    dest = tmp_path / "metrics.prom"
    code, out, _ = await censorprobe(
        "check",
        url,
        "--ca-file",
        ca_file,
        "--format",
        "prometheus",
        "--output",
        str(dest),
        "--vantage",
        "vp1",
        "--country",
        "de",
    )
    assert code == 0 and out == ""
    text = dest.read_text()
    assert (
        f'censorprobe_target_verdict{{country="DE",service_name="localhost",target="{url}",'
        f'vantage="vp1",verdict="accessible"}} 1.0'
    ) in text


async def test_broken_targets_file_exits_65_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "targets.yaml"
    bad.write_text("services:\n  - name: x\n    urls: [https://ok.example/, 'htps://x']\n")
    code, out, err = await censorprobe("check", "--targets", str(bad))
    assert code == 65
    assert f"{bad}:3: services[0].urls[1]: 'htps://x' is not an http(s) URL" in err
    assert out == ""


async def test_help_teaches_the_deadline_formula() -> None:
    code, out, _ = await censorprobe("check", "--help")
    assert code == 0
    assert "4 x timeout + throughput_window + stall_after" in " ".join(out.split())
    assert "retries x (retry_pause + deadline)" in " ".join(out.split())


async def test_usage_error_exits_64() -> None:
    code, _, err = await censorprobe("check", "--format", "xml")
    assert code == 64
    assert "invalid choice" in err


async def test_a_budget_ends_the_run_and_reports_what_was_not_measured(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    port = await raw_server(silent)
    code, out, err = await censorprobe(
        "check", f"http://127.0.0.1:{port}/", "--budget", "1", "--timeout", "10", "--format", "json"
    )
    (result,) = json.loads(out)["results"]
    assert result["verdict"] == "inconclusive"
    assert "budget" in result["explanation"]
    assert "run ended early" in err
    assert code == 2


async def test_ctrl_c_stops_and_still_prints_what_was_measured(
    raw_server: Callable[[Handler], Awaitable[int]], tls_origin: int, ca_file: str
) -> None:
    """One target done, one stalled: SIGINT ends the run at once, both are reported, exit 130.
    The run lasts more than a few seconds, so a progress line appears on stderr."""

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    stalled = await raw_server(stall)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probe",
        *quiet(("check", f"https://localhost:{tls_origin}/", f"http://127.0.0.1:{stalled}/")),
        "--ca-file",
        ca_file,
        "--timeout",
        "30",
        "--format",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 60)  # the run is under way
    assert line.startswith(b"measured 1/2")
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 130
    doc = json.loads(out)
    assert doc["ended_early"] == "interrupted"
    assert [r["verdict"] for r in doc["results"]] == ["accessible", "inconclusive"]
    assert "interrupted" in doc["results"][1]["explanation"]
    assert "Traceback" not in err.decode()


BAD_URLS = [
    ("http://a.test../", "'a.test..' is not a valid host name"),
    ("http://[fe80::1%25eth0]/", "zone identifiers are not supported"),
    ("http://xn--zz.test/", "'xn--zz' is not valid punycode"),
    ("http://1.2.3/", "is neither a host name nor an IPv4 address (write it a.b.c.d)"),
    ("http://0x7f.1/", "is neither a host name nor an IPv4 address"),
    ("http://a.test:99999/", "Port out of range"),
]


@pytest.mark.parametrize(("url", "words"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
async def test_a_bad_url_in_a_targets_file_is_one_line_naming_file_and_line(
    tmp_path: Path, url: str, words: str
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(f"targets:\n  - url: https://fine.test/\n  - url: {url}\n")
    code, out, err = await censorprobe("check", "--targets", str(path))
    assert code == 65 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"censorprobe: {path}:3: targets[1].url: ")
    assert words in err


async def test_a_redirect_to_an_invalid_host_is_that_hops_failure_with_its_evidence(
    raw_server: Callable[[Handler], Awaitable[int]],
) -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: http://a..b/\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    url = f"http://127.0.0.1:{await raw_server(redirect)}/"
    code, out, _ = await censorprobe("check", url, "--format", "json", "--retries", "0")
    (r,) = json.loads(out)["results"]
    assert code == 2 and r["verdict"] == "inconclusive"
    assert "internal error" not in r["explanation"]
    h = r["evidence"]["probe"]["http"]
    assert (h["failure"], h["hops"][0]["location"]) == ("protocol", "http://a..b/")
    assert "redirect to 'http://a..b/'" in h["error"] and "not a valid host name" in h["error"]
    assert "not a valid host name" in r["explanation"]
