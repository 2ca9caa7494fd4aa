"""What an attacker, a hostile network or a careless operator can throw at the probe, on 127.0.0.1:
every input has a bound, and every failure is one line and an exit code, never a traceback.
(Bounds are asserted generously; the figures are measured by bench/hardening.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest
import trustme
from aiohttp import web

from probe.lab.dnsserver import DNSServer, Replies
from probe.measure import dns as measure_dns
from probe.measure.dnswire import MAX_REPLIES
from tests.conftest import free_port, require_root
from tests.loopback.conftest import measure, page, quiet, server_context
from tests.loopback.test_cli import censorprobe

Start = Callable[..., Awaitable[int]]


class Flood(DNSServer):
    """An injector gone wild: thousands of replies with the query's ID."""

    def handle(self, query: dns.message.Message) -> Replies:
        a = query.question[0].rdtype == dns.rdatatype.A  # loopback answers: nothing leaves
        return [
            (0.0, self.answer(query, [f"127.0.0.{i % 250 + 1}"] if a else [])) for i in range(3000)
        ]


async def test_a_reply_flood_is_counted_not_kept() -> None:
    async with Flood() as server:
        obs = await measure_dns.resolve_udp(
            "flood.test", "A", "127.0.0.1", server.port, timeout=2, window=0.5
        )
    assert len(obs.responses) == MAX_REPLIES
    assert obs.replies_dropped > 100
    assert len(json.dumps(obs.responses, default=str)) < 10_000


async def helper(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probe",
        "control",
        "--listen",
        f"127.0.0.1:{port}",
        *args,
        stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return proc, port
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("the helper did not start")


@pytest.fixture
async def slow_helper() -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    proc, port = await helper("--max-connections", "5")
    yield proc, port
    proc.terminate()
    await proc.wait()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_slow_clients_cannot_hold_the_helper(
    slow_helper: tuple[asyncio.subprocess.Process, int],
) -> None:
    """Twenty clients sending their headers a byte at a time against a limit of five: the idle
    longest make room for newcomers, a real request is still answered, file descriptors stay
    bounded, and every slow client is closed once its time is up."""
    proc, port = slow_helper
    baseline = open_fds(proc.pid)
    slow = []
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /api/v1/measure HTTP/1.1\r\nHo")
        slow.append((reader, writer))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert open_fds(proc.pid) <= baseline + 5 + 2
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200")

    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(), 30) == b""
        except ConnectionError:
            return True

    assert all(await asyncio.gather(*(closed(r) for r, _ in slow)))
    for _, w in slow:
        w.close()


async def test_deeply_nested_json_to_the_helper_is_a_400_not_a_500() -> None:
    proc, port = await helper()
    try:
        body = b'{"url": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/v1/measure HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.split(b" ")[1] in (b"400", b"413")
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert b"Traceback" not in err


async def test_a_hostile_helpers_answer_leaves_the_probe_its_own_result(
    web_server: Start,
) -> None:
    """Deep nesting from the control: the probe says the answer was unusable and keeps its
    own verdict."""

    async def nested(request: web.Request) -> web.Response:
        return web.Response(text='{"version": 2, "control": ' + "[" * 50_000 + "]" * 50_000 + "}")

    app = web.Application()
    app.router.add_post("/api/v1/measure", nested)
    control = f"http://127.0.0.1:{await web_server(app)}"
    url = f"http://127.0.0.1:{await web_server(page('fine'))}/"
    code, out, err = await censorprobe("check", url, "--control", control, "--format", "json")
    (result,) = json.loads(out)["results"]
    assert result["verdict"] == "accessible" and code == 0
    assert "unusable answer" in result["evidence"]["control"]["error"]
    assert "Traceback" not in err


async def test_report_skips_bad_records_by_line(tmp_path: Path) -> None:
    good = {"service": "s", "country": "RU", "verdict": "blocked", "finished": 1.79e9}
    (tmp_path / "results-2026-09-21.0.jsonl").write_text(
        json.dumps(good)
        + "\n"
        + '{"service": "s", "finished": 1e400}\n'
        + "[" * 100_000
        + "\n"
        + "not json\n"
    )
    code, out, err = await censorprobe("report", str(tmp_path))
    assert code == 0 and "Traceback" not in err
    assert ":2: no plausible 'finished'" in err and ":3: nested too deeply" in err
    assert ":4: not JSON" in err
    assert out.splitlines()[1].split()[:5] == ["s", "RU", "inside", "1", "1"]


async def test_a_hundred_thousand_targets_end_at_the_budget_and_on_sigterm(
    tmp_path: Path,
) -> None:
    """A long list: --budget ends the run (what was not measured is reported), and SIGTERM
    stops it within seconds, whatever the list's length."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # a full accept queue: every connect stalls
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    path = tmp_path / "many.yaml"
    path.write_text(
        "targets:\n" + "".join(f"  - url: http://127.0.0.1:{port}/p{i}\n" for i in range(100_000))
    )
    try:
        start = time.monotonic()
        code, out, err = await censorprobe(
            "check",
            "--targets",
            str(path),
            "--budget",
            "5",
            "--format",
            "jsonl",
            "-q",
            timeout=120,
        )
        took = time.monotonic() - start
        lines = out.splitlines()
        assert len(lines) == 100_000 and code == 2
        assert "run ended early: the run's budget ran out" in err
        assert sum("not measured" in line for line in lines) > 99_000
        assert took < 60  # generous: the figure (under 10 s) is bench/hardening.py's

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "probe",
            *quiet(("check", "--targets", str(path), "--format", "jsonl")),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        await asyncio.wait_for(proc.stderr.readline(), 60)  # the progress line: measuring
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 130
        assert time.monotonic() - sent < 30  # generous; the figure is bench/hardening.py's
        assert len(out_b.splitlines()) == 100_000
    finally:
        filler.close()
        listener.close()


@pytest.mark.parametrize("kind", ["yaml", "csv"])
async def test_a_budget_that_runs_out_while_the_list_is_read_says_how_far_it_got(
    tmp_path: Path, kind: str
) -> None:
    """Reading a long list is part of the budget: when it runs out first, the run says so, with
    how many targets were read, and its output is whole (and empty)."""
    n = 400_000
    if kind == "csv":
        path = tmp_path / "list.csv"
        rows = "".join(f"http://site{i}.example/p,NEWS\n" for i in range(n))
        path.write_text("url,category_code\n" + rows)
    else:
        path = tmp_path / "targets.yaml"
        path.write_text(
            "targets:\n" + "".join(f"  - url: http://site{i}.example/p\n" for i in range(n))
        )
    code, out, err = await censorprobe(
        *("check", "--targets", str(path), "--budget", "0.3", "--format", "json", "-q"),
        timeout=60,
    )
    assert code == 2, err
    read = re.search(r"the run's budget ran out while reading it \((\d+) targets read\)", err)
    assert read is not None and 0 < int(read.group(1)) < n, err
    doc = json.loads(out)
    assert doc["results"] == [] and "while reading it" in doc["ended_early"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 64 KiB tmpfs: a disk that fills up after a few records."""
    require_root("mount a small tmpfs")
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(data)], check=True)
    yield data
    subprocess.run(["umount", str(data)], check=False)


async def test_a_full_disk_makes_serve_not_ready_but_alive(
    tmp_path: Path, web_server: Start, small_disk: Path
) -> None:
    """The archive fills its disk: /readyz says so with the reason, /healthz stays ok (a
    liveness probe must not restart a healthy daemon), the metrics count the failed writes,
    the page says it, and SIGTERM still exits 0."""
    port = await web_server(page("x", 4000))
    targets = tmp_path / "t.yaml"
    urls = "".join(f"  - url: http://127.0.0.1:{port}/?{i}\n" for i in range(30))
    targets.write_text("targets:\n" + urls)
    listen = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probe",
        *quiet(("serve", "--targets", str(targets), "--listen", f"127.0.0.1:{listen}")),
        "--interval",
        "1",
        "--data-dir",
        str(small_disk),
        stderr=asyncio.subprocess.PIPE,
    )

    async def get(path: str) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", listen)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = (await reader.read()).decode()
        return int(raw.split(" ")[1]), raw.split("\r\n\r\n", 1)[1]

    ready = (200, "")
    for _ in range(300):
        await asyncio.sleep(0.2)
        try:
            ready = await get("/readyz")
        except (OSError, IndexError):
            continue
        if ready[0] == 503:
            break
    assert ready[0] == 503 and "archive cannot be written" in ready[1], ready
    assert (await get("/healthz"))[0] == 200
    _, metrics = await get("/metrics")
    (errors,) = [
        m for m in metrics.splitlines() if m.startswith("censorprobe_archive_errors_total")
    ]
    assert float(errors.split()[-1]) > 0
    assert "archive cannot be written" in (await get("/"))[1]
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"cannot listen" not in err and b"Traceback" not in err


async def test_a_giant_certificate_chain_is_a_protocol_failure(
    web_server: Start, ca: trustme.CA, ca_file: str
) -> None:
    """1.6 MB of certificate (tens of thousands of names) is not something a server sends in
    good faith: the handshake fails as `protocol`, not `unknown`."""
    names = ["localhost", *(f"n{i}.example" for i in range(60_000))]
    port = await web_server(web.Application(), server_context(ca, *names))
    m = await measure(f"https://localhost:{port}/", ca_file=ca_file)
    assert [t.failure for t in m.tls] == ["protocol"]
