"""The lab's network: namespaces, veth links, addresses, routes, censors and servers.

    vantage-a ─┐
               ├─ isp ── border ── internet ── abroad
    vantage-b ─┘

Links exist only between these namespaces: nothing routes to the machine's own network. Every
address comes from ranges reserved for documentation (192.0.2.0/24, 203.0.113.0/24,
2001:db8::/32) and benchmarking (198.18.0.0/15). Every link is dual-stack; vantage b's ISP drops
its IPv6 (a vantage whose IPv6 goes nowhere). `abroad` is a vantage outside the country, for
remote measurement toward the in-country hosts on the ISP (an address that runs no resolver, the
ISP's resolver, open to anyone, and a web server). `up` starts from a clean slate (it runs `down`
first, so it also cleans up after a crash); `down` removes every namespace, process and file the
lab made.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trustme

import probe
from probe.lab import censors
from probe.lab import scenarios as lab

READY_TIMEOUT = 15.0


class LabError(Exception):
    """The lab cannot be made or used here; the message says why and what to do."""


def ns(name: str) -> str:
    return f"{lab.NS_PREFIX}{name}"


REGIME_NAMESPACES = tuple(f"vantage-{v}" for v in lab.REGIME_VANTAGES)
NAMESPACES = ("vantage-a", "vantage-b", *REGIME_NAMESPACES, "isp", "border", "internet", lab.ABROAD)


@dataclass(frozen=True)
class Link:
    left: str
    left_if: str
    left_addr: tuple[str, str]  # IPv4, IPv6
    right: str
    right_if: str
    right_addr: tuple[str, str]


def _regime_link(vantage: str, prefix: str, n: int) -> Link:
    """A regime vantage's link to the ISP: {prefix}.0/30, and 2001:db8:{n}::/64."""
    return Link(
        f"vantage-{vantage}",
        "to-isp",
        (f"{prefix}.2/30", f"2001:db8:{n}::2/64"),
        "isp",
        f"to-{vantage}",
        (f"{prefix}.1/30", f"2001:db8:{n}::1/64"),
    )


REGIME_LINKS = tuple(
    _regime_link(v, prefix, 7 + i)
    for i, (v, (_, _, prefix)) in enumerate(lab.REGIME_VANTAGES.items())
)
LINKS = (
    *REGIME_LINKS,
    Link(
        "vantage-a",
        "to-isp",
        ("198.18.1.2/30", "2001:db8:1::2/64"),
        "isp",
        "to-a",
        ("198.18.1.1/30", "2001:db8:1::1/64"),
    ),
    Link(
        "vantage-b",
        "to-isp",
        ("198.18.2.2/30", "2001:db8:2::2/64"),
        "isp",
        "to-b",
        ("198.18.2.1/30", "2001:db8:2::1/64"),
    ),
    Link(
        "isp",
        "to-border",
        ("198.18.3.1/30", "2001:db8:3::1/64"),
        "border",
        "to-isp",
        ("198.18.3.2/30", "2001:db8:3::2/64"),
    ),
    Link(
        "border",
        "to-inet",
        ("198.18.4.1/30", "2001:db8:4::1/64"),
        "internet",
        "to-border",
        ("198.18.4.2/30", "2001:db8:4::2/64"),
    ),
    Link(
        "internet",
        "to-abroad",
        ("198.18.6.1/30", "2001:db8:6::1/64"),
        lab.ABROAD,
        "to-inet",
        ("198.18.6.2/30", "2001:db8:6::2/64"),
    ),
)
ROUTES = {
    **{
        link.left: [
            ["default", "via", link.right_addr[0].split("/")[0]],
            ["default", "via", link.right_addr[1].split("/")[0]],
        ]
        for link in REGIME_LINKS
    },
    "vantage-a": [["default", "via", "198.18.1.1"], ["default", "via", "2001:db8:1::1"]],
    "vantage-b": [["default", "via", "198.18.2.1"], ["default", "via", "2001:db8:2::1"]],
    # the special-purpose answers of its resolver (10.10.34.35) go nowhere, at once
    "isp": [
        ["default", "via", "198.18.3.2"],
        ["unreachable", "10.0.0.0/8"],
        ["default", "via", "2001:db8:3::2"],
    ],
    lab.ABROAD: [["default", "via", "198.18.6.1"], ["default", "via", "2001:db8:6::1"]],
    "border": [
        ["198.18.1.0/30", "via", "198.18.3.1"],
        ["198.18.2.0/30", "via", "198.18.3.1"],
        ["192.0.2.0/24", "via", "198.18.3.1"],
        *(
            [link.left_addr[0].replace(".2/30", ".0/30"), "via", "198.18.3.1"]
            for link in REGIME_LINKS
        ),
        ["default", "via", "198.18.4.2"],
        ["2001:db8:1::/64", "via", "2001:db8:3::1"],
        ["2001:db8:2::/64", "via", "2001:db8:3::1"],
        *(
            [link.left_addr[1].replace("::2/64", "::/64"), "via", "2001:db8:3::1"]
            for link in REGIME_LINKS
        ),
        ["default", "via", "2001:db8:4::2"],
    ],
    # unassigned internet addresses (the injectors' forged ones) go nowhere, silently
    "internet": [
        ["default", "via", "198.18.4.1"],
        ["blackhole", "203.0.113.0/24"],
        ["default", "via", "2001:db8:4::1"],
        ["blackhole", "2001:db8:113::/64"],
        ["blackhole", "2001::/32"],
    ],
}
RESOLVERS = {
    **{name: lab.ISP_RESOLVER for name in REGIME_NAMESPACES},
    "vantage-a": lab.ISP_RESOLVER,
    "vantage-b": lab.ISP_RESOLVER,
    "isp": lab.INTERNET_RESOLVER,
    "border": lab.INTERNET_RESOLVER,
    "internet": lab.INTERNET_RESOLVER,
    lab.ABROAD: lab.INTERNET_RESOLVER,
}
SERVERS = {
    "internet": "internet",
    "resolver": "internet",
    "isp-resolver": "isp",
    "isp": "isp",
    "border": "border",
    "control": "internet",
}
# Internet hosts behind firewalls send no ICMP port unreachable: a query to an address with no
# resolver gets only the injector's answer, as in China (and the forgery need not win a race
# against the ICMP error, which it could not: the injector runs in Python).
HOST_RULES = {
    "internet": [["-A", "OUTPUT", "-p", "icmp", "--icmp-type", "port-unreachable", "-j", "DROP"]],
    # the in-country address that runs no resolver is such a host too: nothing comes back from it
    "isp": [["-A", "INPUT", "-d", lab.IN_COUNTRY_SILENT, "-j", "DROP"]],
}


def local_addresses(name: str) -> list[str]:
    if name == "isp":
        return [
            lab.ISP_RESOLVER,
            lab.ISP_BLOCKPAGE,
            lab.ISP_REDIRECTOR,
            lab.ISP_INTERCEPTOR,
            lab.ISP_PROXY,
            lab.ISP_REFUSER,
            lab.ISP_DIFFPAGE,
            lab.IN_COUNTRY_SILENT,
            lab.IN_COUNTRY_SERVER,
        ]
    if name == "internet":
        return lab.internet_addresses()
    return []


def vantage_namespace(vantage: str) -> str:
    """`a`, `vantage-a` or `cp-vantage-a` -> `cp-vantage-a`; `abroad` -> `cp-abroad`."""
    short = vantage.removeprefix(lab.NS_PREFIX).removeprefix("vantage-")
    if short == lab.ABROAD:
        return ns(lab.ABROAD)
    if short not in (*lab.VANTAGES, *lab.REGIME_VANTAGES):
        known = ", ".join([*lab.VANTAGES, *lab.REGIME_VANTAGES, lab.ABROAD])
        raise LabError(f"unknown vantage {vantage!r}: the lab has {known}")
    return ns(f"vantage-{short}")


def require_root() -> None:
    """Refuse, with the reason, where the lab cannot be made."""
    if sys.platform != "linux":
        raise LabError("the lab needs Linux network namespaces")
    if os.geteuid() != 0:
        raise LabError("the lab needs root to create network namespaces: run it with sudo")
    for tool in ("ip", "iptables", "ip6tables"):
        if shutil.which(tool) is None:
            raise LabError(
                f"the lab needs '{tool}': install iproute2 and iptables (scripts/install)"
            )
    if not Path("/proc/self/ns/net").exists():
        raise LabError("this kernel has no network namespaces")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _in(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run("ip", "netns", "exec", ns(name), *args, check=check)


def existing_namespaces() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(lab.NS_PREFIX)]


def state_dir() -> Path:
    return Path(lab.STATE_DIR)


def up() -> float:
    """Build the lab; returns the seconds it took."""
    require_root()
    start = time.monotonic()
    down()
    state = state_dir()
    state.mkdir(parents=True)
    _raise_forwarding(state)
    _write_certificates(state)
    for name in NAMESPACES:
        _run("ip", "netns", "add", ns(name))
        _run("ip", "-n", ns(name), "link", "set", "lo", "up")
        _in(
            name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv6.conf.all.forwarding=1",
        )
        for address in local_addresses(name):
            prefix = 128 if ":" in address else 32
            _run("ip", "-n", ns(name), "addr", "add", f"{address}/{prefix}", "dev", "lo")
        etc = Path("/etc/netns") / ns(name)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"nameserver {RESOLVERS[name]}\noptions timeout:2 attempts:1\n"
        )
    for link in LINKS:
        _run(
            "ip",
            "link",
            "add",
            link.left_if,
            "netns",
            ns(link.left),
            "type",
            "veth",
            "peer",
            "name",
            link.right_if,
            "netns",
            ns(link.right),
        )
        for side, ifname, addrs in (
            (link.left, link.left_if, link.left_addr),
            (link.right, link.right_if, link.right_addr),
        ):
            for addr in addrs:
                nodad = ["nodad"] if ":" in addr else []  # IPv6: usable at once
                _run("ip", "-n", ns(side), "addr", "add", addr, "dev", ifname, *nodad)
            # one packet per segment (no GSO), so that a censor counting bytes cuts where it says
            _run("ip", "-n", ns(side), "link", "set", ifname, "gso_max_segs", "1", "up")
    for name, routes in ROUTES.items():
        for route in routes:
            _run("ip", "-n", ns(name), "route", "add", *route)
    # the freeze censor counts each connection's bytes
    _in("border", "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1", check=False)
    rules_by_ns = {
        "isp": censors.isp_rules() + censors.regime_rules(),
        "border": censors.border_rules() + censors.border_nat_rules(),
    }
    for name in NAMESPACES:
        for rule in [*rules_by_ns.get(name, []), *HOST_RULES.get(name, [])]:
            _in(name, "iptables", "-w", *rule)
    for name, rules in (("isp", censors.isp_rules6()), ("border", censors.border_rules6())):
        for rule in rules:
            _in(name, "ip6tables", "-w", *rule)
    for role, name in SERVERS.items():
        _start_server(role, name, state)
    _wait_ready(state)
    return time.monotonic() - start


def _softirq_threads() -> list[int]:
    """The kernel's ksoftirqd threads: they forward the lab's packets when the CPUs are busy."""
    threads = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().startswith("ksoftirqd/"):
                threads.append(int(comm.parent.name))
    return threads


def _raise_forwarding(state: Path) -> None:
    """Run the kernel's packet forwarding ahead of busy processes, as the lab's servers run.

    Under load the kernel defers the forwarding of packets between namespaces to ksoftirqd,
    a thread at nice 0 like any busy loop: the lab's network would slow down with the vantage's
    CPU. The priorities found are kept in the state folder and `down` puts them back.
    """
    saved = []
    for pid in _softirq_threads():
        with contextlib.suppress(OSError):
            saved.append(f"{pid} {os.getpriority(os.PRIO_PROCESS, pid)}")
            os.setpriority(os.PRIO_PROCESS, pid, lab.NICE)
    (state / "ksoftirqd.nice").write_text("".join(f"{line}\n" for line in saved))


def _restore_forwarding(state: Path) -> None:
    with contextlib.suppress(OSError):
        for line in (state / "ksoftirqd.nice").read_text().splitlines():
            pid, nice = line.split()
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(pid), int(nice))


def _write_certificates(state: Path) -> None:
    ca = trustme.CA(organization_name="censorprobe lab CA")
    ca.cert_pem.write_to_path(str(state / "ca.pem"))
    names = [f"*.{lab.ZONE}", lab.ZONE]
    origin = ca.issue_cert(*names)
    origin.private_key_and_cert_chain_pem.write_to_path(str(state / "origin.pem"))
    # the same, apart, for the HTTP/3 origins (aioquic reads the chain and the key apart)
    origin.cert_chain_pems[0].write_to_path(str(state / "origin-cert.pem"))
    origin.private_key_pem.write_to_path(str(state / "origin-key.pem"))
    rogue = trustme.CA(organization_name="ISP Interception CA")
    rogue.issue_cert(*names).private_key_and_cert_chain_pem.write_to_path(
        str(state / "intercept.pem")
    )
    # origins whose certificate does not validate (OONI's badssl cases): expired, another name
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = ca.issue_cert(*names, not_before=past, not_after=past + datetime.timedelta(days=90))
    expired.private_key_and_cert_chain_pem.write_to_path(str(state / "expired.pem"))
    other = ca.issue_cert("other.example")
    other.private_key_and_cert_chain_pem.write_to_path(str(state / "wrongname.pem"))


def _start_server(role: str, name: str, state: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(probe.__file__).resolve().parents[1])}
    log = (state / f"{role}.log").open("w")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns(name),
            sys.executable,
            "-m",
            "probe.lab.servers",
            role,
            str(state),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    (state / f"{role}.pid").write_text(f"{proc.pid}\n")


def _wait_ready(state: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = set(SERVERS)
    while waiting and time.monotonic() < deadline:
        for role in list(waiting):
            if (state / f"{role}.ready").exists():
                waiting.discard(role)
            elif not _alive(_pid(state, role)):
                tail = (state / f"{role}.log").read_text()[-2000:]
                raise LabError(f"the lab's {role} server died while starting:\n{tail}")
        time.sleep(0.05)
    if waiting:
        raise LabError(
            f"the lab's servers did not start within {READY_TIMEOUT:.0f}s: "
            f"{', '.join(sorted(waiting))} (logs in {state})"
        )


def _pid(state: Path, role: str) -> int | None:
    try:
        return int((state / f"{role}.pid").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def down() -> list[str]:
    """Remove everything the lab made; returns what was removed (for the user)."""
    require_root()
    removed: list[str] = []
    state = state_dir()
    for name in existing_namespaces():
        pids = [int(p) for p in _run("ip", "netns", "pids", name, check=False).stdout.split()]
        for pid in pids:
            _kill(pid)
        if pids:
            removed.append(f"{len(pids)} process(es) in {name}")
    for role in SERVERS:
        server = _pid(state, role)
        if server is not None and _alive(server):
            _kill(server)
    for name in existing_namespaces():
        _run("ip", "netns", "del", name, check=False)
        removed.append(f"namespace {name}")
    _restore_forwarding(state)
    for etc in Path("/etc/netns").glob(f"{lab.NS_PREFIX}*"):
        shutil.rmtree(etc, ignore_errors=True)
        removed.append(str(etc))
    if state.exists():
        shutil.rmtree(state, ignore_errors=True)
        removed.append(str(state))
    return removed


def _kill(pid: int) -> None:
    """SIGTERM, then SIGKILL after a moment."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(40):
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def status() -> str:
    """Namespaces, addresses, servers and rules, for people."""
    require_root()
    present = existing_namespaces()
    if not present:
        return "the lab is down (no cp-* namespaces)\n"
    lines = []
    state = state_dir()
    for name in NAMESPACES:
        full = ns(name)
        if full not in present:
            lines.append(f"{full}: MISSING")
            continue
        addrs = _run("ip", "-n", full, "-br", "-4", "addr", check=False).stdout.split("\n")
        shown = " ".join(w for line in addrs for w in line.split()[2:] if not w.startswith("127."))
        rules = [
            r
            for r in _in(name, "iptables-save", check=False).stdout.splitlines()
            if r.startswith("-A")
        ]
        lines.append(f"{full}: {shown}")
        if rules:
            lines.append(f"  {len(rules)} censor rule(s)")
    for role, name in SERVERS.items():
        pid = _pid(state, role)
        lines.append(
            f"server {role} in {ns(name)}: "
            + (f"running (pid {pid})" if _alive(pid) else "NOT RUNNING")
        )
    lines.append(f"lab CA: {state / 'ca.pem'}")
    return "\n".join(lines) + "\n"


ATTACHED = ("198.18.5.1/30", "198.18.5.2/30")  # the ISP's side, the attached namespace's


def attach(pid: int) -> str:
    """Make the network namespace of process `pid` (e.g. a container started with
    `--network none`) a third vantage behind the ISP; returns its address. `down` undoes it."""
    require_root()
    if ns("isp") not in existing_namespaces():
        raise LabError("the lab is down: run 'censorprobe lab up' first")
    isp_addr, addr = ATTACHED
    _run(
        "ip",
        "link",
        "add",
        "to-c",
        "netns",
        ns("isp"),
        "type",
        "veth",
        "peer",
        "name",
        "lab0",
        "netns",
        str(pid),
    )
    _run("ip", "-n", ns("isp"), "addr", "add", isp_addr, "dev", "to-c")
    _run("ip", "-n", ns("isp"), "link", "set", "to-c", "up")
    inside = ["nsenter", "-t", str(pid), "-n", "ip"]
    _run(*inside, "addr", "add", addr, "dev", "lab0")
    _run(*inside, "link", "set", "lab0", "up")
    _run(*inside, "route", "add", "default", "via", isp_addr.split("/")[0])
    _run("ip", "-n", ns("border"), "route", "add", "198.18.5.0/30", "via", "198.18.3.1")
    return addr.split("/")[0]


def exec_argv(vantage: str, command: list[str]) -> list[str]:
    """The command line that runs `command` inside a vantage namespace."""
    require_root()
    name = vantage_namespace(vantage)
    if name not in existing_namespaces():
        raise LabError("the lab is down: run 'censorprobe lab up' first")
    if not command:
        raise LabError("give a command after '--', e.g. censorprobe lab exec a -- dig ok.lab.test")
    return ["ip", "netns", "exec", name, *command]
