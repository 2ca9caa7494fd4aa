"""Benchmark: a million targets, in a Citizen Lab CSV and in a targets.yaml. Prints figures,
passes or fails nothing (bench/RESULTS.md records them).

    python3 bench/million.py [--runs 3] [--targets 1000000]

For each format, the median (and every run) of:
- load: reading the file into targets (`probe.config.load`), wall time and peak RSS;
- budget: `censorprobe check --targets FILE --budget 5` from start to exit, and its peak RSS
  (the run must end within 10 s of its start, reading included, and report what it read).

The targets are names under `.example`, resolved only by a resolver on 127.0.0.1 that does not
exist (nothing leaves the machine); the budget run writes JSON lines to /dev/null.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CATEGORIES = ("NEWS", "HUMR", "GRP", "ANON", "POLR")
BOUNDS = {"csv": (10.0, 400.0), "yaml": (30.0, 800.0)}  # the load's seconds and MB, at most


def write_csv(path: Path, n: int) -> None:
    with path.open("w") as f:
        f.write("url,category_code,category_description,date_added,source,notes\n")
        for i in range(n):
            scheme = "https" if i % 3 else "http"
            code = CATEGORIES[i % len(CATEGORIES)]
            f.write(f"{scheme}://www.site{i}.example/news/{i}.html,{code},Some category,")
            f.write("2021-02-08,bench,\n")


def write_yaml(path: Path, n: int) -> None:
    with path.open("w") as f:
        f.write("settings:\n  resolvers: ['127.0.0.1:1']\n  timeout: 1\ntargets:\n")
        for i in range(n):
            scheme = "https" if i % 3 else "http"
            f.write(f"  - url: {scheme}://www.site{i}.example/news/{i}.html\n")
            f.write(f"    category: {CATEGORIES[i % len(CATEGORIES)]}\n")


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace").strip()
    if err:
        print(f"    stderr: {err.splitlines()[-1][:160]}")
    return took, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--targets", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{args.targets:,} targets, {args.runs} runs each, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        files = {"csv": Path(tmp) / "list.csv", "yaml": Path(tmp) / "targets.yaml"}
        write_csv(files["csv"], args.targets)
        write_yaml(files["yaml"], args.targets)
        for kind, path in files.items():
            size = path.stat().st_size / 1e6
            load = [sys.executable, "-c", f"from probe.config import load; load({str(path)!r})"]
            budget = [
                *(sys.executable, "-m", "probe", "check", "--canaries", "none"),
                *("--targets", str(path), "--budget", "5"),
                *("--resolver", "127.0.0.1:1", "--format", "jsonl", "--output", "/dev/null", "-q"),
            ]
            for what, cmd in (("load", load), ("budget 5", budget)):
                runs = [measure(cmd) for _ in range(args.runs)]
                wall = statistics.median(r[0] for r in runs)
                rss = statistics.median(r[1] for r in runs)
                shown = ", ".join(f"{r[0]:.1f} s/{r[1]:.0f} MB (exit {r[2]})" for r in runs)
                bound = BOUNDS[kind] if what == "load" else (10.0, None)
                ok = all(r[2] == (0 if what == "load" else 2) for r in runs)
                meets = ok and wall <= bound[0] and (bound[1] is None or rss <= bound[1])
                limit = f"≤ {bound[0]:g} s" + (f", ≤ {bound[1]:g} MB" if bound[1] else "")
                print(
                    f"{kind:4} ({size:.0f} MB) {what:8}: median {wall:5.1f} s, {rss:5.0f} MB "
                    f"[{limit}: {'meets' if meets else 'MISSES'}] — {shown}"
                )


if __name__ == "__main__":
    main()
