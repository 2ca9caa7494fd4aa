"""`censorprobe lab demo`: the lab up, the probe run from each vantage, the diagnosis beside the
expected verdict of every scenario, the lab down."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import yaml

from probe.lab import scenarios as lab
from probe.lab import topology

REMOTE_RATE = 50  # exchanges per second toward one in-country destination: the lab's own hosts


def targets_file(state: Path, *, remote: bool = False) -> Path:
    """The scenario list as a targets.yaml, with the settings a vantage in the lab needs;
    `remote`: for the abroad vantage, measuring the lab's country toward its destinations."""
    settings: dict[str, Any] = {
        # the ISP's resolver (system) and the distant one across the border (sees injection)
        "resolvers": ["system", lab.INTERNET_RESOLVER],
        "public_ranges": list(lab.PUBLIC_RANGES),
        "timeout": 3,
        "throughput_window": 3,
        # by name: it has an IPv6 address too, which tells a vantage whether IPv6 works
        "control": f"http://{lab.CONTROL_HOST}:{lab.CONTROL_PORT}",
        "retry_pause": lab.RESIDUAL_SECONDS + 2,  # outlast the lab's residual blocking
        "canaries": lab.CANARIES,
    }
    if remote:
        settings.update(
            remote=[
                {
                    "country": lab.REMOTE_COUNTRY,
                    "silent": [lab.IN_COUNTRY_SILENT],
                    "resolvers": [lab.ISP_RESOLVER],
                    "servers": [lab.IN_COUNTRY_SERVER],
                }
            ],
            remote_only=True,
            remote_rate=REMOTE_RATE,
        )
    doc = {
        "settings": settings,
        "targets": [
            {
                "url": s.url,
                "service": s.name,
                **({"quic": s.quic_mode} if s.quic_mode else {}),
                **({"clienthello": s.clienthello_mode} if s.clienthello_mode else {}),
            }
            for s in lab.scenarios()
        ],
    }
    path = state / ("lab-remote-targets.yaml" if remote else "lab-targets.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def country(vantage: str) -> str:
    if vantage in lab.REGIME_VANTAGES:
        return lab.REGIME_VANTAGES[vantage][0]
    return lab.VANTAGES.get(vantage, lab.ABROAD_COUNTRY)


def check_argv(vantage: str, state: Path, *extra: str) -> list[str]:
    """`censorprobe check` over every scenario, inside a vantage (remotely from abroad)."""
    return topology.exec_argv(
        vantage,
        [
            sys.executable,
            "-m",
            "probe",
            "check",
            "--targets",
            str(targets_file(state, remote=vantage == lab.ABROAD)),
            "--ca-file",
            str(state / "ca.pem"),
            "--vantage",
            f"lab-{vantage}",
            "--country",
            country(vantage),
            "--format",
            "json",
            "--quiet",
            *extra,
        ],
    )


def run_vantage(vantage: str, state: Path) -> dict[str, Any]:
    proc = subprocess.run(check_argv(vantage, state), capture_output=True, text=True, timeout=600)
    if not proc.stdout.strip():
        raise topology.LabError(
            f"censorprobe check in vantage {vantage} printed nothing:\n{proc.stderr[-2000:]}"
        )
    results = json.loads(proc.stdout)["results"]
    return {r["service"]: r for r in results}


def got(result: dict[str, Any], s: lab.Scenario) -> str:
    """The diagnosis as the scenario file's `Expect` prints it (and the HTTP/3 path's, where the
    scenario is about it)."""
    tcp = _as_expect(result["verdict"], result["blocking"])
    if s.expect_quic is None:
        return tcp
    q = result["quic"] or {"verdict": "none", "blocking": None}
    return f"{tcp} · HTTP/3 {_as_expect(q['verdict'], q['blocking'])}"


def expected(s: lab.Scenario, vantage: str) -> str:
    if vantage == lab.ABROAD:
        return str(s.expect_remote)
    e = str(s.expected(vantage))
    return f"{e} · HTTP/3 {s.expect_quic}" if s.expect_quic is not None else e


def got_remote(result: dict[str, Any]) -> str:
    """A remote result as the scenario file's `expect_remote` prints it."""
    return _as_expect(result["verdict"], result["blocking"])


def _as_expect(verdict: str, blocking: dict[str, Any] | None) -> str:
    b = blocking or {}
    return str(
        lab.Expect(
            verdict, b.get("layer"), b.get("method"), b.get("ip_version"), b.get("sni_based")
        )
    )


def demo(out: TextIO) -> int:
    """Returns 0 when every scenario got its expected verdict from every vantage."""
    out.write("bringing the lab up…\n")
    seconds = topology.up()
    vantages = [*lab.VANTAGES, lab.ABROAD]
    out.write(
        f"lab up in {seconds:.1f}s; measuring {len(lab.scenarios())} scenarios from "
        f"vantages {', '.join(lab.VANTAGES)}, and from {lab.ABROAD} toward "
        f"{lab.REMOTE_COUNTRY} (remote: only censors acting on traffic from abroad show)…\n\n"
    )
    try:
        state = topology.state_dir()
        with ThreadPoolExecutor(len(vantages)) as pool:
            by_vantage = dict(
                zip(vantages, pool.map(lambda v: run_vantage(v, state), vantages), strict=True)
            )
    finally:
        topology.down()
    rows = [
        (
            "SCENARIO",
            "TECHNIQUE",
            "EXPECTED",
            *(f"VANTAGE {v.upper()}" for v in lab.VANTAGES),
            f"EXPECTED FROM ABROAD → {lab.REMOTE_COUNTRY}",
            "ABROAD",
        )
    ]
    misses = 0
    for s in lab.scenarios():
        cells = []
        for v in vantages:
            r = by_vantage[v][s.name]
            seen = got_remote(r) if v == lab.ABROAD else got(r, s)
            ok = seen == expected(s, v)
            misses += not ok
            cells.append(f"{'✓' if ok else '✗'} {seen}")
        also = "".join(f"; {v}: {e}" for v, e in s.expect_by_vantage.items())
        local, remote = cells[:-1], cells[-1]
        here = f"{expected(s, 'a')}{also}"
        rows.append((s.name, s.technique, here, *local, str(s.expect_remote), remote))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    out.write("\nwhy (vantage a):\n")
    first = next(iter(lab.VANTAGES))
    for s in lab.scenarios():
        out.write(f"  {s.name}: {by_vantage[first][s.name]['explanation']}\n")
    out.write(
        f"\nfrom {lab.ABROAD} toward {lab.REMOTE_COUNTRY} ('accessible': no interference on this "
        "path, which says nothing of access in the country):\n"
    )
    for s in lab.scenarios():
        out.write(f"  {s.name}: {by_vantage[lab.ABROAD][s.name]['explanation']}\n")
    total = len(lab.scenarios()) * len(vantages)
    out.write(f"\n{total - misses}/{total} diagnoses as expected; the lab is down again.\n")
    return 0 if misses == 0 else 1
