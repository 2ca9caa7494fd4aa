"""Benchmark: what hostile inputs cost. Everything on 127.0.0.1; prints figures, passes or fails
nothing (bench/RESULTS.md records them).

    python3 bench/hardening.py

- a DNS reply flood (one query answered thousands of times during the listening window): the
  probe's peak RSS and the size of the target's JSON;
- `--targets /dev/zero` and a 40 KB YAML alias bomb: how fast and how lean the refusal is;
- 100,000 targets (each to a port whose accept queue is full, so every connect stalls): the time
  to load them, a run with `--budget 5` from start to exit, and SIGTERM to exit for `check` and
  for `serve` in the middle of a round.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.rdatatype

from probe.lab.dnsserver import DNSServer, Replies

CHECK = [sys.executable, "-m", "probe", "check", "--canaries", "none"]  # nothing but loopback


class Flood(DNSServer):
    def handle(self, query: dns.message.Message) -> Replies:
        a = query.question[0].rdtype == dns.rdatatype.A  # loopback answers: nothing leaves
        return [
            (i * 0.0002, self.answer(query, [f"127.0.0.{i % 250 + 1}"] if a else []))
            for i in range(5000)
        ]


def run(cmd: list[str], **kw: object) -> tuple[float, float, int, bytes]:
    """(seconds, peak RSS in MB, exit code, stdout) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    out = bytearray()
    reader = threading.Thread(target=lambda: out.extend(proc.stdout.read()))
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    reader.join()
    return (
        time.perf_counter() - start,
        usage.ru_maxrss / 1024,
        os.waitstatus_to_exitcode(status),
        bytes(out),
    )


def flood() -> None:
    async def main() -> tuple[float, float, int, bytes]:
        async with Flood() as server:
            return await asyncio.to_thread(
                run,
                [
                    *CHECK,
                    "http://flood.test/",
                    "--resolver",
                    f"127.0.0.1:{server.port}",
                    "--format",
                    "json",
                    "--timeout",
                    "2",
                    "--retries",
                    "0",
                    "-q",
                ],
            )

    seconds, rss, _, out = asyncio.run(main())
    print(
        f"DNS reply flood (5,000 replies): peak RSS {rss:.0f} MB, the target's JSON "
        f"{len(out) / 1024:.1f} KiB, {seconds:.1f} s"
    )


def refusals(tmp: Path) -> None:
    seconds, rss, code, _ = run([*CHECK, "--targets", "/dev/zero"])
    print(f"--targets /dev/zero: refused (exit {code}) in {seconds:.2f} s, peak RSS {rss:.0f} MB")
    urls = ", ".join(f"https://x{i}.example/" for i in range(600))
    services = "".join(f"  - {{name: s{i}, urls: *u}}\n" for i in range(1300))
    bomb = tmp / "bomb.yaml"
    bomb.write_text(f"services:\n  - name: first\n    urls: &u [{urls}]\n{services}")
    seconds, rss, code, _ = run([*CHECK, "--targets", str(bomb)])
    print(
        f"alias bomb ({bomb.stat().st_size / 1024:.0f} KB, would list {600 * 1301:,} targets): "
        f"refused (exit {code}) in {seconds:.2f} s, peak RSS {rss:.0f} MB"
    )


def many(tmp: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    path = tmp / "many.yaml"
    path.write_text(
        "targets:\n" + "".join(f"  - url: http://127.0.0.1:{port}/p{i}\n" for i in range(100_000))
    )
    load = [sys.executable, "-c", f"from probe.config import load; load({str(path)!r})"]
    seconds, rss, _, _ = run(load)
    print(f"100,000 targets: loaded in {seconds:.1f} s (peak RSS {rss:.0f} MB)")
    seconds, rss, code, out = run(
        [*CHECK, "--targets", str(path), "--budget", "5", "--format", "jsonl", "-q"]
    )
    print(
        f"  check --budget 5: exit {code} after {seconds:.1f} s from the start, "
        f"{len(out.splitlines()):,} results, peak RSS {rss:.0f} MB"
    )
    for name, cmd in (
        ("check", [*CHECK, "--targets", str(path), "--format", "jsonl", "-q"]),
        (
            "serve",
            [
                sys.executable,
                "-m",
                "probe",
                "serve",
                "--canaries",
                "none",
                "--targets",
                str(path),
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--interval",
                "1",
            ],
        ),
    ):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(12)  # loaded, and measuring
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        print(f"  {name}: SIGTERM to exit in {time.perf_counter() - sent:.1f} s")
    filler.close()
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        flood()
        refusals(Path(tmp))
        many(Path(tmp))


if __name__ == "__main__":
    main()
