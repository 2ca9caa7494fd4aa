"""`lab up` is quick and idempotent, `lab down` leaves nothing behind, `lab exec` runs in a vantage,
and without root every lab command refuses with a clear message."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe import cli
from probe.lab import scenarios as lab
from probe.lab import servers, topology


def censorprobe(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "probe", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2]
    )


def footprint() -> dict[str, object]:
    """Everything the lab could leave behind: namespaces, processes, rules, files."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    return {
        "namespaces": sorted(
            line.split()[0] for line in netns.splitlines() if line.startswith("cp-")
        ),
        "processes": sorted(p for p in procs.splitlines() if "probe.lab.servers" in p),
        "rules": sorted(r for r in rules.splitlines() if r.startswith("-A")),
        "links": sorted(line.split()[0] for line in links.splitlines()),
        "files": sorted(str(p) for p in Path("/etc/netns").glob("cp-*"))
        + ([lab.STATE_DIR] if Path(lab.STATE_DIR).exists() else []),
    }


def forwarding_priorities() -> set[int]:
    """The nice values of the kernel's ksoftirqd threads, which forward the lab's packets."""
    ps = subprocess.run(["ps", "-eo", "ni=,comm="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in ps.splitlines() if "ksoftirqd/" in line}


def server_priorities() -> dict[str, tuple[int, int | None]]:
    """Each lab server's nice value, and its autogroup's (None where the kernel groups no
    processes by session)."""
    ps = subprocess.run(["ps", "-eo", "pid=,ni=,args="], capture_output=True, text=True).stdout
    out: dict[str, tuple[int, int | None]] = {}
    for pid, ni, *args in (line.split() for line in ps.splitlines()):
        if "probe.lab.servers" in args:
            role = args[args.index("probe.lab.servers") + 1]
            group = Path(f"/proc/{pid}/autogroup")
            nice = int(group.read_text().split()[-1]) if group.exists() else None
            out[role] = (int(ni), nice)
    return out


def test_up_is_quick_idempotent_and_down_leaves_nothing(netns_ok: None) -> None:
    subprocess.run([sys.executable, "-m", "probe", "lab", "down"], capture_output=True)
    before = footprint()
    priorities = forwarding_priorities()
    assert priorities != {lab.NICE}
    start = time.monotonic()
    first = censorprobe("lab", "up")
    took = time.monotonic() - start
    assert first.returncode == 0, first.stderr
    assert took < 20
    second = censorprobe("lab", "up")  # again: same state, nothing duplicated
    assert second.returncode == 0, second.stderr
    during = footprint()
    assert len(during["namespaces"]) == len(topology.NAMESPACES) == 9  # type: ignore[arg-type]
    assert len(during["processes"]) == len(topology.SERVERS) == 6  # type: ignore[arg-type]
    status = censorprobe("lab", "status").stdout
    assert "server border in cp-border: running" in status
    assert "censor rule(s)" in status
    assert "exec-ok" in censorprobe("lab", "exec", "a", "--", "echo", "exec-ok").stdout
    assert forwarding_priorities() == {lab.NICE}  # the lab's forwarding runs ahead of busy loops
    # and so do its servers, against the processes of every session (autogroups)
    grouped = Path("/proc/self/autogroup").exists()
    assert server_priorities() == {
        role: (nice, nice if grouped else None)
        for role in topology.SERVERS
        for nice in [servers.PRIORITY.get(role, lab.NICE)]
    }
    down = censorprobe("lab", "down")
    assert down.returncode == 0
    assert "namespace cp-internet" in down.stdout
    assert footprint() == before
    assert forwarding_priorities() == priorities


def test_up_after_a_crash_cleans_up(netns_ok: None) -> None:
    """A lab whose servers were killed -9 comes up whole again."""
    assert censorprobe("lab", "up").returncode == 0
    subprocess.run(["pkill", "-9", "-f", "probe.lab.servers"])
    assert "NOT RUNNING" in censorprobe("lab", "status").stdout
    assert censorprobe("lab", "up").returncode == 0
    assert "NOT RUNNING" not in censorprobe("lab", "status").stdout
    assert censorprobe("lab", "down").returncode == 0


@pytest.mark.parametrize(
    "action", [["up"], ["down"], ["status"], ["demo"], ["exec", "a", "--", "true"]]
)
def test_without_root_every_command_refuses_clearly(
    action: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As an ordinary user (uid 1000 as the probe sees it: this Python lives under /root, which an
    unprivileged process cannot read, so the uid is faked rather than dropped)."""
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert cli.main(["lab", *action]) == 69
    err = capsys.readouterr().err
    assert "needs root" in err and "sudo" in err
