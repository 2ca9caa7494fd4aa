"""Benchmark: /metrics latency while `serve` measures a round of 1,000 lab targets, and peak RSS.

Run as root (it brings the lab up and down): `sudo python bench/serve_metrics.py [--targets N]`.
Prints figures; it does not pass or fail. Results are recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
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


def curl(url: str) -> tuple[float, str]:
    """(seconds for the HTTP exchange, body), from inside the vantage."""
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            "cp-vantage-a",
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/stderr",
            "-w",
            "%{time_total}",
            url,
        ],
        capture_output=True,
        text=True,
    )
    return float(out.stdout or "nan"), out.stderr


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=1000)
    args = parser.parse_args()
    topology.up()
    state = topology.state_dir()
    serve = subprocess.Popen(
        topology.exec_argv(
            "a",
            [
                sys.executable,
                "-m",
                "probe",
                "serve",
                "--targets",
                str(targets(args.targets, state)),
                "--listen",
                f"{VANTAGE_IP}:{PORT}",
                "--ca-file",
                str(state / "ca.pem"),
                "--interval",
                "3600",
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=(state / "bench-serve.log").open("w"),
    )
    latencies: list[float] = []
    size = 0
    rss = 0.0
    try:
        base = f"http://{VANTAGE_IP}:{PORT}"
        while "ok" not in curl(base + "/healthz")[1]:
            time.sleep(0.2)
        start = time.monotonic()
        while True:
            seconds, body = curl(base + "/metrics")
            latencies.append(seconds * 1000)
            size = len(body)
            rss = max(rss, peak_rss_mib(serve.pid))
            if "the last took" in curl(base + "/healthz")[1]:
                break
            time.sleep(0.1)
        took = time.monotonic() - start
        series = sum(
            1 for line in body.splitlines() if line.startswith("censorprobe_target_verdict{")
        )
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        topology.down()
    latencies.sort()
    print(f"targets per round:          {args.targets}")
    rate = args.targets / took
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    print(f"round duration:             {took:.1f} s ({rate:.0f} targets/s, concurrency 100)")
    print(
        f"/metrics during the round:  {len(latencies)} scrapes, p50 {p50:.1f} ms, "
        f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    print(f"exposition at the end:      {size / 1024:.0f} KiB, {series} verdict series")
    print(f"peak RSS of serve:          {rss:.0f} MiB")


if __name__ == "__main__":
    main()
