"""`censorprobe serve` as a process on 127.0.0.1: metrics, /probe, results, the status page,
reloads, signals and the evidence archive."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from probe.serve import archive
from tests.conftest import free_port, require_tool

Start = Callable[..., Awaitable[int]]


async def origin(web_server: Start, delay: float = 0.0) -> int:
    async def index(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(
            text=f"<title>page {request.path}</title>" + "x" * 3000, content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", index)
    return await web_server(app)


class Serve:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    async def get(self, path: str, **headers: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(self.url + path, headers=headers) as r:
            return r.status, await r.text()

    async def until(self, path: str, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            try:
                _, text = await self.get(path)
                if predicate(text):
                    return text
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"{path} never satisfied the condition; last:\n{text[-2000:]}\n"
            f"log:\n{self.log.read_text()[-3000:]}"
        )


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Serve]]]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(targets: Path, *extra: str) -> Serve:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "probe",
            "serve",
            "--canaries",
            "none",  # its built-in canaries are on the internet
            "--targets",
            str(targets),
            "--listen",
            f"127.0.0.1:{port}",
            "--vantage",
            "vp-test",
            "--country",
            "DE",
            "--timeout",
            "2",
            *extra,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return Serve(proc, f"http://127.0.0.1:{port}", log)

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def secret(web_server: Start) -> tuple[int, list[str]]:
    """A server nobody should reach through serve: its port, and the paths it was asked for."""
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="secret")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return await web_server(app), hits


def targets_file(path: Path, *urls: str) -> Path:
    path.write_text(
        "targets:\n" + "".join(f"  - url: {u}\n    service: svc{i}\n" for i, u in enumerate(urls))
    )
    return path


async def test_metrics_results_status_page_and_archive(
    serve, web_server: Start, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ok = f"http://127.0.0.1:{await origin(web_server)}/"
    dead = f"http://127.0.0.1:{free_port()}/"
    data = tmp_path / "data"
    s = await serve(
        targets_file(tmp_path / "t.yaml", ok, dead), "--interval", "1", "--data-dir", str(data)
    )
    metrics = await s.until(
        "/metrics", lambda t: t.count("censorprobe_last_measurement_timestamp_seconds{") == 2
    )
    assert (
        f'censorprobe_target_verdict{{country="DE",service_name="svc0",target="{ok}",'
        'vantage="vp-test",verdict="accessible"} 1.0'
    ) in metrics
    assert f'target="{dead}",vantage="vp-test",verdict="inconclusive"}} 1.0' in metrics
    assert 'censorprobe_build_info{country="DE",vantage="vp-test",version="0.1.0"} 1.0' in metrics
    assert "127.0.0.1:" not in "".join(
        line for line in metrics.splitlines() if "target=" not in line
    )

    _, body = await s.get("/results?verdict=accessible")
    assert [r["url"] for r in json.loads(body)["results"]] == [ok]
    status, _ = await s.get("/healthz")
    assert status == 200
    _, page = await s.get("/")
    assert "<script" not in page and "http://" not in page.split("<body>")[0]  # no external assets
    assert ok in page and dead in page and "accessible" in page
    _, evidence = await s.get(f"/result?url={ok}")
    assert json.loads(evidence)["evidence"]["probe"]["http"]["status"] == 200

    await s.until(
        "/healthz", lambda t: "the last took" in t
    )  # a round has finished: records are archived
    records = list(archive.read([data]))
    assert {r["url"] for r in records} >= {ok, dead}
    assert all(r["vantage"] == "vp-test" and r["country"] == "DE" for r in records)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "probe", "report", str(data)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = done.stdout
    assert "svc0" in report and "DE" in report


async def test_promtool_accepts_the_exposition(serve, web_server: Start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    promtool = require_tool("promtool")
    ok = f"http://127.0.0.1:{await origin(web_server)}/"
    s = await serve(targets_file(tmp_path / "t.yaml", ok), "--interval", "1")
    metrics = await s.until("/metrics", lambda t: "censorprobe_target_verdict{" in t)
    check = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=metrics,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def test_probe_endpoint_answers_one_fresh_measurement(
    serve, web_server: Start, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ok = f"http://127.0.0.1:{await origin(web_server)}/fresh"
    s = await serve(targets_file(tmp_path / "t.yaml", ok), "--interval", "3600")
    await s.until("/healthz", lambda t: t.startswith("ok"))
    status, text = await s.get(
        f"/probe?target={ok}", **{"X-Prometheus-Scrape-Timeout-Seconds": "5"}
    )
    assert status == 200
    assert f'target="{ok}",vantage="vp-test",verdict="accessible"}} 1.0' in text
    assert "censorprobe_probe_success 1" in text
    status, text = await s.get("/probe?target=ftp://nope")
    assert status == 400 and "not an http(s) URL" in text


async def test_probe_measures_only_listed_urls_by_default(
    serve, web_server: Start, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """An unlisted URL is refused, so /probe is no SSRF or port-scan oracle."""
    listed = f"http://127.0.0.1:{await origin(web_server)}/"
    port, hits = await secret(web_server)
    other = f"http://127.0.0.1:{port}/admin"
    s = await serve(targets_file(tmp_path / "t.yaml", listed), "--interval", "3600")
    await s.until("/healthz", lambda t: t.startswith("ok"))
    status, text = await s.get(f"/probe?target={other}")
    assert status == 403 and "not in the targets file" in text
    assert hits == []


async def test_probe_any_refuses_special_purpose_destinations(
    serve, web_server: Start, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """With --probe-targets any, loopback is refused at connect time: an open port and a closed
    one read the same, and the open one is never contacted."""
    (open_port, hits), closed_port = await secret(web_server), free_port()
    listed = f"http://127.0.0.1:{await origin(web_server)}/"
    s = await serve(
        targets_file(tmp_path / "t.yaml", listed), "--interval", "3600", "--probe-targets", "any"
    )
    await s.until("/healthz", lambda t: t.startswith("ok"))
    answers = []
    for port in (open_port, closed_port):
        status, text = await s.get(f"/probe?target=http://127.0.0.1:{port}/")
        assert status == 200
        answers.append([line for line in text.splitlines() if "probe_success" in line])
    assert answers[0] == answers[1] and "censorprobe_probe_success 0" in answers[0]
    assert hits == []


async def test_probe_honours_the_scrape_timeout(serve, web_server: Start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slow = f"http://127.0.0.1:{await origin(web_server, delay=10)}/"
    s = await serve(
        targets_file(tmp_path / "t.yaml", slow), "--interval", "3600", "--timeout", "20"
    )
    await s.until("/healthz", lambda t: t.startswith("ok"))
    start = time.monotonic()
    _, text = await s.get(f"/probe?target={slow}", **{"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    assert time.monotonic() - start < 15  # the scrape's 2 s, not serve's own 20 s timeout
    assert 'verdict="inconclusive"} 1.0' in text
    assert "censorprobe_probe_success 0" in text


async def test_reload_on_change_keeps_the_old_list_when_broken_and_on_sighup(  # type: ignore[no-untyped-def]
    serve, web_server: Start, tmp_path: Path
) -> None:
    port = await origin(web_server)
    a, b = f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b"
    path = targets_file(tmp_path / "t.yaml", a, b)
    s = await serve(path, "--interval", "1")
    await s.until("/metrics", lambda t: f'target="{b}"' in t and f'target="{a}"' in t)
    path.write_text("targets:\n  - url: htps://broken\n")
    await s.until("/healthz", lambda _: "t.yaml:2: targets[0].url" in s.log.read_text())
    _, metrics = await s.get("/metrics")
    assert f'target="{b}"' in metrics  # the old list stands
    targets_file(path, a)
    await s.until("/metrics", lambda t: f'target="{b}"' not in t and f'target="{a}"' in t)
    # SIGHUP reloads even when the file's timestamp and size did not change
    targets_file(tmp_path / "other.yaml", b)
    os.replace(tmp_path / "other.yaml", path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    s.proc.send_signal(signal.SIGHUP)
    await s.until("/metrics", lambda t: f'target="{b}"' in t and f'target="{a}"' not in t)


async def test_fingerprint_urls_are_fetched_once_per_start_and_reload(  # type: ignore[no-untyped-def]
    serve, web_server: Start, tmp_path: Path
) -> None:
    """Three rounds and ten /probe calls read the fingerprint list once; a reload reads it
    again; a reload whose download fails keeps the set read before."""
    fetched: list[str] = []
    fail = False

    async def csv(request: web.Request) -> web.Response:
        fetched.append(request.path)
        if fail:
            return web.Response(status=500)
        return web.Response(
            text="name,scope,other_names,location_found,pattern_type,pattern\n"
            "test.page,,,body,contains,page /p\n"
        )

    app = web.Application()
    app.router.add_get("/fp.csv", csv)
    fp = f"http://127.0.0.1:{await web_server(app)}/fp.csv"
    url = f"http://127.0.0.1:{await origin(web_server)}/p"
    path = tmp_path / "t.yaml"
    text = f"settings:\n  fingerprints: [{fp}]\ntargets:\n  - url: {url}\n"
    path.write_text(text)
    s = await serve(path, "--interval", "1", "--retries", "0")
    await s.until("/healthz", lambda t: "3 rounds" in t)
    for _ in range(10):
        status, metrics = await s.get(f"/probe?target={url}")
        assert status == 200 and 'method="blockpage"' in metrics  # the list is in use
    assert fetched == ["/fp.csv"]
    path.write_text(text + "    service: renamed\n")
    await s.until("/results", lambda t: "renamed" in t)
    assert fetched == ["/fp.csv"] * 2
    fail = True
    path.write_text(text + "    service: again\n")
    await s.until("/results", lambda t: '"again"' in t)
    assert len(fetched) == 3 and "keeping the 1 fingerprints read before" in s.log.read_text()
    _, metrics = await s.get("/metrics")
    assert 'method="blockpage"' in metrics


async def test_sigterm_stops_within_seconds_mid_round(
    serve, web_server: Start, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    slow = f"http://127.0.0.1:{await origin(web_server, delay=30)}/"
    s = await serve(targets_file(tmp_path / "t.yaml", slow), "--interval", "1", "--timeout", "60")
    await s.until("/healthz", lambda t: "running" in t)
    s.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(s.proc.wait(), 30)  # not the target's 60 s
    assert code == 0
    assert "stopped" in s.log.read_text()


async def test_kill_9_mid_round_leaves_every_finished_record_readable(  # type: ignore[no-untyped-def]
    serve, web_server: Start, tmp_path: Path
) -> None:
    port = await origin(web_server, delay=0.15)
    urls = [f"http://127.0.0.1:{port}/p{i}" for i in range(40)]
    data = tmp_path / "data"
    s = await serve(
        targets_file(tmp_path / "t.yaml", *urls),
        "--interval",
        "1",
        "--concurrency",
        "2",
        "--data-dir",
        str(data),
    )
    text = await s.until("/results", lambda t: len(json.loads(t)["results"]) >= 8)
    finished = {r["url"] for r in json.loads(text)["results"]}
    s.proc.kill()
    await s.proc.wait()
    assert len(finished) < len(urls)  # killed in the middle of the round
    records = list(archive.read([data]))
    assert finished <= {r["url"] for r in records}
    lines = sum(len(p.read_text().splitlines()) for p in archive.files([data]))
    assert lines - len(records) <= 1  # at most one torn line, from the write the kill cut
