"""Benchmark: `serve`'s /metrics latency while a round of lab targets is measured, its peak RSS,
and the same under load (clients looping on /metrics and /probe, as an attacker or a crowd of
scrapers would).

Run as root (it brings the lab up and down): `sudo python3 bench/serve_metrics.py
[--targets 2000] [--clients 200 --probers 50]`. Prints figures; it does not pass or fail.
Results are recorded in bench/RESULTS.md.

The quiet run scrapes /metrics every 0.1 s with one client until the round ends. With --clients
or --probers, a second run has that many clients looping on /metrics, and on /probe for a listed
URL, each one request at a time with no pause, and reports /metrics' latency under that load and
the round's time against the quiet round's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from probe.lab import scenarios as lab
from probe.lab import topology

VANTAGE_IP = "198.18.1.2"
PORT = 9716
BASE = f"http://{VANTAGE_IP}:{PORT}"


def targets(n: int, state: Path) -> Path:
    rows = []
    scenarios = lab.scenarios()
    for i in range(n):
        s = scenarios[i % len(scenarios)]
        base = s.url.rsplit("/", 1)[0] if s.url.endswith("/large") else s.url.rstrip("/")
        rows.append({"url": f"{base}/p{i}", "service": s.name})
    doc = {
        "settings": {
            "resolvers": ["system", lab.INTERNET_RESOLVER],
            "public_ranges": list(lab.PUBLIC_RANGES),
            "control": f"http://{lab.CONTROL_ADDRESS}:{lab.CONTROL_PORT}",
            "timeout": 3,
            "throughput_window": 2,
            "retries": 0,
            "concurrency": 100,
        },
        "targets": rows,
    }
    path = state / "bench-targets.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def drive(clients: int, probers: int, pause: float, probe_url: str) -> None:
    """Inside the vantage: loop on /metrics (and /probe) until SIGTERM; print the latencies."""
    import aiohttp

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    latencies: list[float] = []
    sizes: list[int] = []

    async def scrape(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            async with session.get(f"{BASE}/metrics") as r:
                body = await r.read()
            latencies.append((time.perf_counter() - start) * 1000)
            sizes.append(len(body))
            if pause:
                await asyncio.sleep(pause)

    async def probe(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with session.get(f"{BASE}/probe", params={"target": probe_url}) as r:
                await r.read()

    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)
    # the raw (gzipped) body: the driver measures the server, not its own decompression
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, auto_decompress=False
    ) as session:
        tasks = [asyncio.ensure_future(scrape(session)) for _ in range(clients)]
        tasks += [asyncio.ensure_future(probe(session)) for _ in range(probers)]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"latencies": latencies, "size": sizes[-1] if sizes else 0}))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def healthz() -> str:
    out = subprocess.run(
        topology.exec_argv("a", ["curl", "-s", "--max-time", "5", f"{BASE}/healthz"]),
        capture_output=True,
        text=True,
    )
    return out.stdout


def one_run(path: Path, state: Path, clients: int, probers: int, pause: float) -> dict[str, float]:
    log = state / "bench-serve.log"
    serve = subprocess.Popen(
        topology.exec_argv(
            "a",
            [
                sys.executable,
                "-m",
                "probe",
                "serve",
                "--targets",
                str(path),
                "--listen",
                f"{VANTAGE_IP}:{PORT}",
                "--ca-file",
                str(state / "ca.pem"),
                "--interval",
                "3600",
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        while not healthz().startswith("ok"):
            time.sleep(0.2)
        probe_url = lab.by_technique("none").url.rstrip("/") + "/p0"
        driver = subprocess.Popen(
            topology.exec_argv(
                "a",
                [
                    sys.executable,
                    __file__,
                    "--drive",
                    "--clients",
                    str(clients),
                    "--probers",
                    str(probers),
                    "--pause",
                    str(pause),
                    "--probe-url",
                    probe_url,
                ],
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        rss = 0.0
        while "the last took" not in healthz():
            rss = max(rss, peak_rss_mib(serve.pid))
            time.sleep(0.2)
        driver.send_signal(signal.SIGTERM)
        out, _ = driver.communicate(timeout=60)
        rss = max(rss, peak_rss_mib(serve.pid))
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    doc = json.loads(out)
    lat = sorted(doc["latencies"])
    rounds = [line for line in log.read_text().splitlines() if "round 1:" in line]
    seconds = float(rounds[0].split(" in ")[1].split("s")[0]) if rounds else float("nan")
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else lat * 99
    return {
        "round": seconds,
        "scrapes": len(lat),
        "p50": q[49],
        "p95": q[94],
        "p99": q[98],
        "max": lat[-1],
        "size": doc["size"] / 1024,
        "rss": rss,
    }


def show(name: str, f: dict[str, float], n: int) -> None:
    print(
        f"{name:28} round {f['round']:6.1f} s ({n / f['round']:4.0f} targets/s) · /metrics "
        f"{f['scrapes']:.0f} scrapes: p50 {f['p50']:6.1f} ms  p95 {f['p95']:6.1f} ms  "
        f"p99 {f['p99']:6.1f} ms  max {f['max']:6.1f} ms · {f['size']:.0f} KiB · "
        f"peak RSS {f['rss']:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=0, help="clients looping on /metrics")
    parser.add_argument("--probers", type=int, default=0, help="clients looping on /probe")
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pause", type=float, default=0.1, help=argparse.SUPPRESS)
    parser.add_argument("--probe-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive(args.clients, args.probers, args.pause, args.probe_url))
        return
    topology.up()
    state = topology.state_dir()
    path = targets(args.targets, state)
    try:
        quiet = one_run(path, state, 1, 0, 0.1)
        show("quiet (1 client, 0.1 s apart)", quiet, args.targets)
        if args.clients or args.probers:
            loaded = one_run(path, state, args.clients, args.probers, 0.0)
            show(f"{args.clients} on /metrics, {args.probers} on /probe", loaded, args.targets)
            print(f"round time under load: {loaded['round'] / quiet['round']:.2f}x the quiet one")
    finally:
        topology.down()


if __name__ == "__main__":
    main()
