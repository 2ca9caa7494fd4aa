"""Benchmark: `serve`'s /metrics latency while a round of lab targets is measured, its peak RSS,
and the same under load (clients looping on /metrics and /probe, as an attacker or a crowd of
scrapers would).

Run as root (it brings the lab up and down): `sudo python3 bench/serve_metrics.py
[--targets 2000] [--clients 200 --probers 50]`. Prints figures; it does not pass or fail.
Results are recorded in bench/RESULTS.md.

The quiet run scrapes /metrics every 0.1 s with one client until the round ends. With --clients
or --probers, a second run has that many connections looping on /metrics, and on /probe for a
listed URL, each one request at a time with no pause (wrk, from Debian's package: a client in C
that is not itself the bottleneck), and reports /metrics' latency under that load, from wrk, and
the round's time against the quiet round's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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


async def drive() -> None:
    """Inside the vantage: scrape /metrics every 0.1 s until SIGTERM; print the latencies."""
    import aiohttp

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    latencies: list[float] = []
    size = 0
    async with aiohttp.ClientSession(auto_decompress=False) as session:  # gzip, as Prometheus
        while not stop.is_set():
            start = time.perf_counter()
            async with session.get(f"{BASE}/metrics") as r:
                size = len(await r.read())
            latencies.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.1)
    print(json.dumps({"latencies": latencies, "size": size}))


def wrk(connections: int, url: str) -> subprocess.Popen[str]:
    """Connections looping on `url`, one request at a time each, until SIGINT."""
    return subprocess.Popen(
        topology.exec_argv(
            "a",
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                "-d3600s",
                "--latency",
                "--timeout",
                "30s",
                "-H",
                "Accept-Encoding: gzip",
                url,
            ],
        ),
        stdout=subprocess.PIPE,
        text=True,
    )


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    """wrk's "23.91ms", "1.20s" or "850.00us" in ms."""
    number = text.rstrip("mus")
    return float(number) * _UNITS[text[len(number) :]]


def wrk_figures(out: str) -> dict[str, float]:
    """wrk's summary: the requests made, and the latency percentiles in ms."""
    figures: dict[str, float] = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("50%", "90%", "99%"):
            figures["p" + words[0][:-1]] = _ms(words[1])
        elif len(words) == 5 and words[0] == "Latency":  # avg, stdev, max, +/- stdev
            figures["max"] = _ms(words[3])
        elif "requests in" in line:
            figures["requests"] = float(words[0])
    return figures


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


def start_serve(path: Path, state: Path) -> subprocess.Popen[bytes]:
    log = state / "bench-serve.log"
    serve = subprocess.Popen(
        topology.exec_argv(
            "a",
            [
                sys.executable,
                "-m",
                "probe",
                "serve",
                "--canaries",
                "none",  # the same work round after round: the targets only
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
    while not healthz().startswith("ok"):
        time.sleep(0.2)
    return serve


def round_seconds(state: Path) -> float:
    rounds = [x for x in (state / "bench-serve.log").read_text().splitlines() if "round 1:" in x]
    return float(rounds[0].split(" in ")[1].split("s")[0]) if rounds else float("nan")


def until_round_ends(serve: subprocess.Popen[bytes]) -> float:
    """Wait for the first round to end; the peak RSS seen meanwhile (MiB)."""
    rss = 0.0
    while "the last took" not in healthz():
        rss = max(rss, peak_rss_mib(serve.pid))
        time.sleep(0.2)
    return max(rss, peak_rss_mib(serve.pid))


def quiet_run(path: Path, state: Path) -> dict[str, float]:
    serve = start_serve(path, state)
    try:
        driver = subprocess.Popen(
            topology.exec_argv("a", [sys.executable, __file__, "--drive"]),
            stdout=subprocess.PIPE,
            text=True,
        )
        rss = until_round_ends(serve)
        driver.send_signal(signal.SIGTERM)
        out, _ = driver.communicate(timeout=60)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    doc = json.loads(out)
    lat = sorted(doc["latencies"])
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else lat * 99
    return {
        "round": round_seconds(state),
        "scrapes": len(lat),
        "p50": q[49],
        "p90": q[89],
        "p99": q[98],
        "max": lat[-1],
        "size": doc["size"] / 1024,
        "rss": rss,
    }


def loaded_run(path: Path, state: Path, clients: int, probers: int) -> dict[str, float]:
    serve = start_serve(path, state)
    probe_url = lab.by_technique("none").url.rstrip("/") + "/p0"
    try:
        scrapers = wrk(clients, f"{BASE}/metrics")
        probing = wrk(probers, f"{BASE}/probe?target={probe_url}") if probers else None
        rss = until_round_ends(serve)
        for load in (scrapers, probing):
            if load is not None:
                load.send_signal(signal.SIGINT)
        out, _ = scrapers.communicate(timeout=60)
        if probing is not None:
            probing.communicate(timeout=60)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    figures = wrk_figures(out)
    return {
        "round": round_seconds(state),
        "scrapes": figures.get("requests", 0.0),
        "p50": figures["p50"],
        "p90": figures["p90"],
        "p99": figures["p99"],
        "max": figures["max"],
        "size": float("nan"),  # the quiet run's: the same exposition
        "rss": rss,
    }


def show(name: str, f: dict[str, float], n: int) -> None:
    print(
        f"{name:28} round {f['round']:6.1f} s ({n / f['round']:4.0f} targets/s) · /metrics "
        f"{f['scrapes']:.0f} scrapes: p50 {f['p50']:6.1f} ms  p90 {f['p90']:6.1f} ms  "
        f"p99 {f['p99']:6.1f} ms  max {f['max']:6.1f} ms · "
        + ("" if math.isnan(f["size"]) else f"{f['size']:.0f} KiB · ")
        + f"peak RSS {f['rss']:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=0, help="clients looping on /metrics")
    parser.add_argument("--probers", type=int, default=0, help="clients looping on /probe")
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive())
        return
    topology.up()
    state = topology.state_dir()
    path = targets(args.targets, state)
    try:
        quiet = quiet_run(path, state)
        show("quiet (1 client, 0.1 s apart)", quiet, args.targets)
        if args.clients or args.probers:
            loaded = loaded_run(path, state, args.clients, args.probers)
            show(f"{args.clients} on /metrics, {args.probers} on /probe", loaded, args.targets)
            print(f"round time under load: {loaded['round'] / quiet['round']:.2f}x the quiet one")
    finally:
        topology.down()


if __name__ == "__main__":
    main()
