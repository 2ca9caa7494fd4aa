"""The evidence archive (rotation, torn lines), the report over it, and the CI output formats."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from probe import cli
from probe.cli.formats import Row, format_junit
from probe.config import Settings
from probe.model import Blocking, Diagnosis, Measurement, Result, Target
from probe.serve import archive, statuspage
from probe.serve.metrics import Latest
from probe.serve.report import summarise
from probe.vocabulary import Layer, Method, Verdict

DAY1 = 1_790_000_000.0  # 2026-09-21
DAY2 = DAY1 + 86_400


def record(
    service: str, verdict: str, when: float, country: str = "RU", method: str = "reset"
) -> dict[str, object]:
    """An archive record as `serve` writes it (the fields the report reads)."""
    blocking = {"layer": "tls", "method": method} if verdict == "blocked" else None
    return {
        "service": service,
        "country": country,
        "vantage": "vp1",
        "verdict": verdict,
        "blocking": blocking,
        "finished": when,
        "url": f"https://{service}.example/",
    }


def append(a: archive.Archive, rec: dict[str, object]) -> None:
    a.append(json.dumps(rec).encode(), float(rec["finished"]))  # type: ignore[arg-type]


def test_rotates_by_size_and_by_day(tmp_path: Path) -> None:
    a = archive.Archive(tmp_path, max_bytes=400)
    for i in range(6):
        append(a, record("s", "accessible", DAY1 + i))
    append(a, record("s", "accessible", DAY2))
    a.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "results-2026-09-21.0.jsonl" and names[1] == "results-2026-09-21.1.jsonl"
    assert names[-1] == "results-2026-09-22.0.jsonl"
    assert all(p.stat().st_size <= 400 for p in tmp_path.iterdir())
    assert len(list(archive.read([tmp_path]))) == 7


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    a = archive.Archive(tmp_path)
    append(a, record("s", "accessible", DAY1))
    a.close()
    path = next(tmp_path.iterdir())
    with path.open("a") as f:
        f.write('{"service": "s", "verdict": "bloc')  # the crash cut this write
    assert [r["verdict"] for r in archive.read([path])] == ["accessible"]


def test_report_first_and_last_blocked_per_service_and_country() -> None:
    rows = summarise(
        [
            record("tg", "accessible", DAY1),
            record("tg", "blocked", DAY1 + 60),
            record("tg", "blocked", DAY2, method="timeout"),
            record("tg", "accessible", DAY2 + 60, country="DE"),
        ]
    )
    (de, ru) = rows
    assert (ru.country, ru.measurements, ru.blocked, ru.last_verdict) == ("RU", 3, 2, "blocked")
    assert ru.to_json()["first_blocked"] == "2026-09-21T14:14:20Z"
    assert ru.to_json()["last_blocked"] == "2026-09-22T14:13:20Z"
    assert ru.methods == {"tls/reset", "tls/timeout"}
    assert (de.country, de.blocked, de.first_blocked) == ("DE", 0, None)


def test_report_command_csv(tmp_path: Path) -> None:
    a = archive.Archive(tmp_path)
    append(a, record("tg", "blocked", DAY1))
    a.close()
    out = subprocess.run(
        [sys.executable, "-m", "probe", "report", str(tmp_path), "--format", "csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, row = out.splitlines()
    assert header.startswith("service,country,measurements,blocked,first_blocked")
    assert row.startswith("tg,RU,1,1,2026-09-21T")


def _result(url: str, verdict: Verdict, blocking: Blocking | None = None) -> Result:
    m = Measurement(Target.parse(url, "svc"), DAY1, timings={"total": 1.5})
    return Result(m, Diagnosis(verdict, blocking, f"because {verdict}", verdict), finished=DAY1)


def test_junit_fails_blocked_and_skips_inconclusive() -> None:
    results = [
        _result("https://a.example/", Verdict.ACCESSIBLE),
        _result("https://b.example/", Verdict.BLOCKED, Blocking(Layer.DNS, Method.INJECTED)),
        _result("https://c.example/", Verdict.INCONCLUSIVE),
    ]
    rows = [Row.of(i, r) for i, r in enumerate(results)]
    suite = ET.fromstring(format_junit(rows, Settings(vantage="vp", country="CN")))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase[@name='https://b.example/']/failure")
    assert failure is not None and failure.get("message") == "blocked dns/injected"
    assert failure.text == "because blocked"


def test_junit_has_a_case_for_each_path_with_a_verdict_of_its_own() -> None:
    """HTTP/3 and ECH paths are cases of their own: a block fails, not measured is skipped; an
    ECH `unsupported` (most sites publish none) is no case at all."""
    blocked = Diagnosis(
        Verdict.BLOCKED, Blocking(Layer.TLS, Method.TIMEOUT), "ECH why", "tls/timeout"
    )
    unsupported = Diagnosis(Verdict.UNSUPPORTED, None, "no ECH", "no ECH published")
    skipped = Diagnosis(Verdict.NOT_MEASURED, None, "HTTP/3 not measured: x", "not measured")
    results = [
        replace(_result("https://a.example/", Verdict.ACCESSIBLE), ech=blocked, quic=skipped),
        replace(_result("https://b.example/", Verdict.ACCESSIBLE), ech=unsupported),
    ]
    rows = [Row.of(i, r) for i, r in enumerate(results)]
    suite = ET.fromstring(format_junit(rows, Settings(vantage="vp", country="CN")))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    failure = suite.find("testcase[@name='https://a.example/ (ECH)']/failure")
    assert failure is not None and failure.get("message") == "ECH blocked tls/timeout"
    assert suite.find("testcase[@name='https://a.example/ (HTTP/3)']/skipped") is not None
    assert suite.find("testcase[@name='https://b.example/ (ECH)']") is None


def test_textfile_is_written_for_node_exporter(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/"  # the discard port: nothing listens, refused at once
    code = cli.main(
        [
            "check",
            url,
            "--textfile",
            str(tmp_path),
            "--quiet",
            "--format",
            "json",
            "--output",
            str(tmp_path / "out.json"),
            "--retries",
            "0",
        ]
    )
    assert code == 2
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".prom"] == ["censorprobe.prom"]
    assert f'target="{url}"' in (tmp_path / "censorprobe.prom").read_text()
    assert json.loads((tmp_path / "out.json").read_text())["results"][0]["url"] == url


def test_status_page_marks_blocked_services_and_escapes_text() -> None:
    page = statuspage.render(
        [
            Latest.of(
                _result("https://a.example/<x>", Verdict.BLOCKED, Blocking(Layer.TLS, Method.RESET))
            )
        ],
        "vp<1>",
        "CN",
        now=DAY1 + 120,
    )
    assert "&lt;x&gt;" in page and "vp&lt;1&gt;" in page
    assert 'style="background:#cf222e">blocked</span> tls/reset' in page
    assert "2 min ago" in page
    assert "<script" not in page
