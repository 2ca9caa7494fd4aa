"""Benchmark: censorprobe against blackbox_exporter on the same HTTPS targets, in the same run.

Run as root: `sudo python3 bench/vs_blackbox.py [--targets 2000] [--concurrency 400] [--runs 3]`.
Needs Debian's nginx-light, dnsmasq-base, nftables and prometheus-blackbox-exporter
(`scripts/install --bench`). Prints figures; it does not pass or fail (bench/RESULTS.md).

The workload, in two network namespaces of its own (`cpb-client`, `cpb-server`) joined by one
veth pair: N HTTPS sites `tNNNNN.bench.test`, each on its own address in 198.18.0.0/15 (the
benchmarking range), served by nginx (session tickets and cache off, so every fetch is a full
handshake) with a certificate from a throwaway CA, names resolved by dnsmasq. Of every ten
targets eight are served, one is silently dropped (nft drop: a TCP timeout) and one reset (nft
reject with a TCP RST). An nft counter in the server namespace counts UDP datagrams to port 443
(QUIC), which neither tool should send here (nginx advertises no HTTP/3), and Python's import log
(PYTHONPROFILEIMPORTTIME) says whether censorprobe imported aioquic at all. The cost of trying
HTTP/3 on every target is measured apart: `--censorprobe-args "--quic always"`. Another counter
there counts TCP connections to port 443 (SYNs) during each tool's run: a ClientHello variant is
a connection of its own, so censorprobe's count says whether it sent any beyond its targets'
handshakes. `--probe-dir DIR` measures the censorprobe of another checkout (a commit before a
change) beside this one's, each paired with blackbox_exporter in the same run, and prints this
one's wall and CPU against it, run by run.

Each run measures, for each tool in turn (the order alternates between runs): wall time, CPU
seconds of its process tree, peak RSS summed over its process tree (sampled every 20 ms, and never
less than the largest single process's high-water mark), the time by which every served target
was done, and whether every verdict was right (served targets accessible / probe_success 1, the
others not). blackbox_exporter does what the issue's comparison did: a DNS probe and an HTTPS probe
per target (each target its own `dns_N` module, since the DNS prober's name is per module), driven
at the same concurrency by a small aiohttp client inside the client namespace (its CPU is not
counted as the exporter's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

CLIENT, SERVER = "cpb-client", "cpb-server"
CLIENT_IP, SERVER_IP = "198.19.255.1", "198.19.255.2"
ZONE = "bench.test"
EXPORTER = "127.0.0.1:9115"
TIMEOUT = 5.0
TOOLS = ("blackbox_exporter", "censorprobe")
PAGE = (
    "<!doctype html><html><head><title>bench origin</title></head><body>"
    + "<p>The genuine page of a benchmark origin.</p>" * 100
    + "</body></html>\n"
)


def address(i: int) -> str:
    """Target i's address: 198.18.0.1 onwards, skipping .0 and .255."""
    return f"198.18.{i // 254}.{i % 254 + 1}"


def kind(i: int) -> str:
    return {8: "dropped", 9: "reset"}.get(i % 10, "served")


def host(i: int) -> str:
    return f"t{i:05d}.{ZONE}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc


def in_ns(name: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", name, *args]


# --- the workload ---------------------------------------------------------------------------


class Workload:
    """The namespaces, nginx and dnsmasq; `with Workload(n) as w:` builds and removes them."""

    def __init__(self, n: int, state: Path) -> None:
        self.n = n
        self.state = state
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workload:
        self.down()
        for name in (CLIENT, SERVER):
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh(
            "ip",
            "link",
            "add",
            "bench0",
            "netns",
            CLIENT,
            "type",
            "veth",
            "peer",
            "name",
            "bench0",
            "netns",
            SERVER,
        )
        for name, ip in ((CLIENT, CLIENT_IP), (SERVER, SERVER_IP)):
            sh("ip", "-n", name, "addr", "add", f"{ip}/30", "dev", "bench0")
            sh("ip", "-n", name, "link", "set", "bench0", "up")
        sh("ip", "-n", CLIENT, "route", "add", "198.18.0.0/16", "via", SERVER_IP)
        batch = self.state / "addresses.batch"
        batch.write_text("".join(f"addr add {address(i)}/32 dev lo\n" for i in range(self.n)))
        sh("ip", "-n", SERVER, "-batch", str(batch))
        etc = Path("/etc/netns") / CLIENT
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {SERVER_IP}\noptions timeout:2 attempts:1\n")
        self._certificates()
        self._rules()
        self._dnsmasq()
        self._nginx()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.down()

    def down(self) -> None:
        for name in (CLIENT, SERVER):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(Path("/etc/netns") / CLIENT, ignore_errors=True)

    def _certificates(self) -> None:
        import trustme

        ca = trustme.CA(organization_name="censorprobe bench CA")
        ca.cert_pem.write_to_path(str(self.state / "ca.pem"))
        cert = ca.issue_cert(f"*.{ZONE}")
        cert.cert_chain_pems[0].write_to_path(str(self.state / "cert.pem"))
        cert.private_key_pem.write_to_path(str(self.state / "key.pem"))

    def _rules(self) -> None:
        dropped = ", ".join(address(i) for i in range(self.n) if kind(i) == "dropped")
        reset = ", ".join(address(i) for i in range(self.n) if kind(i) == "reset")
        rules = self.state / "rules.nft"
        rules.write_text(
            "table inet bench {\n"
            f"  set drops {{ type ipv4_addr; elements = {{ {dropped} }} }}\n"
            f"  set resets {{ type ipv4_addr; elements = {{ {reset} }} }}\n"
            "  counter quic {}\n"
            "  counter syn {}\n"
            "  chain input {\n"
            "    type filter hook input priority 0;\n"
            '    udp dport 443 counter name "quic"\n'
            '    tcp dport 443 tcp flags & (syn | ack) == syn counter name "syn"\n'
            "    ip daddr @drops drop\n"
            "    ip daddr @resets tcp dport 443 reject with tcp reset\n"
            "  }\n"
            "}\n"
        )
        sh(*in_ns(SERVER, "nft", "-f", str(rules)))

    def quic_datagrams(self) -> int:
        return self.counted("quic")

    def counted(self, counter: str) -> int:
        """Packets the server namespace's nft counter `counter` has seen."""
        out = sh(*in_ns(SERVER, "nft", "-j", "list", "counter", "inet", "bench", counter)).stdout
        counters = [o["counter"] for o in json.loads(out)["nftables"] if "counter" in o]
        return int(counters[0]["packets"])

    def _dnsmasq(self) -> None:
        hosts = self.state / "hosts"
        hosts.write_text("".join(f"{address(i)} {host(i)}\n" for i in range(self.n)))
        self._start(
            SERVER,
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            f"--addn-hosts={hosts}",
            f"--local=/{ZONE}/",  # its names' other types (AAAA, HTTPS) are NODATA, not REFUSED
            f"--listen-address={SERVER_IP}",
            "--bind-interfaces",
            "--cache-size=0",
            "--dns-forward-max=10000",
            f"--pid-file={self.state / 'dnsmasq.pid'}",
            "--user=root",
        )

    def _nginx(self) -> None:
        (self.state / "www").mkdir(exist_ok=True)
        (self.state / "www" / "index.html").write_text(PAGE)
        conf = self.state / "nginx.conf"
        conf.write_text(
            f"""daemon off;
worker_processes auto;
pid {self.state / "nginx.pid"};
error_log {self.state / "nginx.err"} error;
events {{ worker_connections 16384; }}
worker_rlimit_nofile 40000;
http {{
  access_log off;
  types {{ text/html html; }}
  server {{
    listen 443 ssl default_server reuseport backlog=8192;
    server_name _;
    ssl_certificate {self.state / "cert.pem"};
    ssl_certificate_key {self.state / "key.pem"};
    ssl_session_tickets off;
    ssl_session_cache off;
    root {self.state / "www"};
    location / {{ index index.html; }}
  }}
}}
"""
        )
        self._start(SERVER, "nginx", "-c", str(conf), "-e", str(self.state / "nginx.err"))

    def _start(self, name: str, *cmd: str) -> None:
        log = (self.state / f"{Path(cmd[0]).name}.log").open("w")
        self.procs.append(subprocess.Popen(in_ns(name, *cmd), stdout=log, stderr=subprocess.STDOUT))

    def wait_ready(self) -> None:
        """Until the last target resolves and answers over HTTPS from the client namespace."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = sh(
                *in_ns(
                    CLIENT,
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--cacert",
                    str(self.state / "ca.pem"),
                    f"https://{host(0)}/",
                ),
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("the workload did not come up (see the logs in " + str(self.state) + ")")


# --- measuring a process tree ---------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for kid in kids:
        out.extend(_children(int(kid)))
    return out


def _status(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu(pid: int) -> float:
    """utime + stime of a running process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeMemory:
    """Peak RSS summed over a process tree, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.single = 0
        self._stop = False

    def sample(self) -> None:
        pids = _children(self.pid)
        self.peak = max(self.peak, sum(_status(p, "VmRSS") for p in pids))
        self.single = max(self.single, *(_status(p, "VmHWM") for p in pids))

    def run(self) -> None:
        while not self._stop:
            self.sample()
            time.sleep(0.02)

    def __enter__(self) -> TreeMemory:
        import threading

        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()

    @property
    def mb(self) -> float:
        return max(self.peak, self.single) / 1e6


@dataclass
class Figures:
    tool: str
    wall: float
    cpu: float
    rss_mb: float
    served_done: float
    right: int
    total: int
    aioquic: bool | None = None  # censorprobe: whether the run imported aioquic
    connections: int = 0  # TCP connections to port 443 the servers saw during the run

    def row(self) -> str:
        imported = "" if self.aioquic is None else f"  aioquic imported: {self.aioquic}"
        return (
            f"{self.tool:18} wall {self.wall:6.2f} s  cpu {self.cpu:6.2f} s "
            f"({self.cpu / self.total * 1000:5.2f} ms/target)  peak RSS {self.rss_mb:6.1f} MB  "
            f"served done by {self.served_done:6.2f} s  verdicts right {self.right}/{self.total}"
            f"  connections to 443: {self.connections}{imported}"
        )


# --- the tools ------------------------------------------------------------------------------


def run_censorprobe(
    n: int, concurrency: int, state: Path, extra: list[str], tree: Path | None, name: str
) -> Figures:
    """`check` of this checkout, or of the one at `tree`."""
    targets = state / "targets.yaml"
    targets.write_text("targets:\n" + "".join(f"  - url: https://{host(i)}/\n" for i in range(n)))
    out = state / "censorprobe.json"
    cmd = in_ns(
        CLIENT,
        sys.executable,
        "-m",
        "probe",
        "check",
        "--canaries",
        "none",  # the same work as the exporter's: the targets only
        "--targets",
        str(targets),
        "--ca-file",
        str(state / "ca.pem"),
        "--timeout",
        str(TIMEOUT),
        "--concurrency",
        str(concurrency),
        "--format",
        "json",
        "--output",
        str(out),
        "--quiet",
        *extra,
    )
    start_wall = time.time()
    start = time.perf_counter()
    # Python lists every module it imports on stderr: was aioquic among them?
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    err = (state / "censorprobe.err").open("w")
    proc = subprocess.Popen(cmd, stderr=err, env=env, cwd=tree)
    with TreeMemory(proc.pid) as mem:
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1, 2):
        raise SystemExit("censorprobe failed: " + (state / "censorprobe.err").read_text()[-2000:])
    results = json.loads(out.read_text())["results"]
    right, done = 0, 0.0
    for r in results:
        i = int(r["target"][1:6])
        served = kind(i) == "served"
        right += (r["verdict"] == "accessible") == served
        if served:
            done = max(done, r["finished"] - start_wall)
    imported = any(
        line.split("|")[-1].strip() == "aioquic"
        for line in (state / "censorprobe.err").read_text().splitlines()
    )
    cpu = usage.ru_utime + usage.ru_stime
    return Figures(name, wall, cpu, mem.mb, done, right, len(results), imported)


def blackbox_config(n: int, state: Path) -> Path:
    modules = [
        "modules:\n  https:\n    prober: http\n    timeout: 5s\n    http:\n"
        "      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n"
        f"      tls_config:\n        ca_file: {state / 'ca.pem'}\n"
    ]
    modules += [
        f"  dns_{i}:\n    prober: dns\n    timeout: 5s\n    dns:\n"
        f"      query_name: {host(i)}\n      query_type: A\n      preferred_ip_protocol: ip4\n"
        for i in range(n)
    ]
    path = state / "blackbox.yml"
    path.write_text("".join(modules))
    return path


async def drive(n: int, concurrency: int) -> None:
    """Inside the client namespace: a DNS and an HTTPS probe per target, `concurrency` at once;
    prints one JSON line per target: index, success, seconds since the start."""
    import aiohttp

    start = time.perf_counter()
    queue = iter(range(n))
    header = {"X-Prometheus-Scrape-Timeout-Seconds": str(TIMEOUT + 0.5)}

    async def probe(session: aiohttp.ClientSession, params: dict[str, str]) -> bool:
        async with session.get(f"http://{EXPORTER}/probe", params=params, headers=header) as r:
            return "\nprobe_success 1" in await r.text()

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in queue:
            await probe(session, {"module": f"dns_{i}", "target": SERVER_IP})
            ok = await probe(session, {"module": "https", "target": f"https://{host(i)}/"})
            print(json.dumps([i, ok, time.perf_counter() - start]))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def run_blackbox(n: int, concurrency: int, state: Path) -> Figures:
    config = blackbox_config(n, state)
    exporter = subprocess.Popen(
        in_ns(
            CLIENT,
            "prometheus-blackbox-exporter",
            f"--config.file={config}",
            f"--web.listen-address={EXPORTER}",
            "--timeout-offset=0.5",
        ),
        stdout=subprocess.DEVNULL,
        stderr=(state / "blackbox.log").open("w"),
    )
    try:
        for _ in range(200):
            up = sh(*in_ns(CLIENT, "curl", "-s", f"http://{EXPORTER}/-/healthy"), check=False)
            if up.returncode == 0:
                break
            time.sleep(0.05)
        cpu0 = _cpu(exporter.pid)
        start = time.perf_counter()
        with TreeMemory(exporter.pid) as mem:
            driver = sh(
                *in_ns(
                    CLIENT,
                    sys.executable,
                    __file__,
                    "--drive",
                    str(n),
                    "--concurrency",
                    str(concurrency),
                )
            )
            wall = time.perf_counter() - start
            cpu = _cpu(exporter.pid) - cpu0
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
    right, done, total = 0, 0.0, 0
    for line in driver.stdout.splitlines():
        i, ok, at = json.loads(line)
        total += 1
        served = kind(i) == "served"
        right += ok == served
        if served:
            done = max(done, at)
    return Figures("blackbox_exporter", wall, cpu, mem.mb, done, right, total)


# what is compared between two runs, by name
COMPARED = tuple(
    (name, attrgetter(field))
    for name, field in (
        ("wall time", "wall"),
        ("CPU", "cpu"),
        ("peak RSS", "rss_mb"),
        ("served done by", "served_done"),
    )
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--censorprobe-args", default="", help="extra flags for censorprobe check (one string)"
    )
    parser.add_argument("--only", choices=TOOLS, help="run one tool only")
    parser.add_argument(
        "--probe-dir",
        type=Path,
        help="also measure the censorprobe of this checkout (e.g. a git worktree of the commit "
        "before a change), paired with the same blackbox_exporter run",
    )
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        asyncio.run(drive(args.drive, args.concurrency))
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces): sudo python3 bench/vs_blackbox.py")
    for tool in ("nginx", "dnsmasq", "nft", "prometheus-blackbox-exporter", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool}: scripts/install --bench")
    tools = [args.only] if args.only else list(TOOLS)
    if args.probe_dir is not None and "censorprobe" in tools:
        tools.append("censorprobe@before")
    print(
        f"{args.targets} HTTPS targets (80% served, 10% dropped, 10% reset), concurrency "
        f"{args.concurrency}, timeout {TIMEOUT:.0f} s, {args.runs} paired runs; "
        f"{os.cpu_count()} cores shared by client and servers"
    )
    runs: list[dict[str, Figures]] = []
    with tempfile.TemporaryDirectory(prefix="cpbench-") as tmp:
        state = Path(tmp)
        state.chmod(0o755)  # nginx's workers (www-data) read the page from here
        with Workload(args.targets, state) as workload:
            workload.wait_ready()
            for k in range(args.runs):
                order = tools if k % 2 == 0 else tools[::-1]
                figures: dict[str, Figures] = {}
                for tool in order:
                    before = workload.counted("syn")
                    if tool.startswith("censorprobe"):
                        tree = args.probe_dir if tool == "censorprobe@before" else None
                        extra = args.censorprobe_args.split()
                        f = run_censorprobe(
                            args.targets, args.concurrency, state, extra, tree, tool
                        )
                    else:
                        f = run_blackbox(args.targets, args.concurrency, state)
                    f.connections = workload.counted("syn") - before
                    figures[tool] = f
                    print(f"run {k + 1}: {f.row()}", flush=True)
                runs.append(figures)
            print(f"UDP datagrams to port 443 seen by the servers: {workload.quic_datagrams()}")
    for probe in (t for t in tools if t.startswith("censorprobe") and "blackbox_exporter" in tools):
        print(f"\nmedian over the runs ({probe} / blackbox_exporter, per paired run):")
        for name, get in COMPARED:
            ratios = [get(r[probe]) / get(r["blackbox_exporter"]) for r in runs]
            cp = statistics.median(get(r[probe]) for r in runs)
            bb = statistics.median(get(r["blackbox_exporter"]) for r in runs)
            shown = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"  {name:15} {probe} {cp:7.2f}  blackbox {bb:7.2f}  ratios {shown}")
    if "censorprobe@before" in tools:
        print("\nthis checkout against --probe-dir (censorprobe / censorprobe@before, per run):")
        for name, get in COMPARED[:2]:  # wall time and CPU
            ratios = [get(r["censorprobe"]) / get(r["censorprobe@before"]) for r in runs]
            shown = ", ".join(f"{x - 1:+.1%}" for x in ratios)
            print(f"  {name:15} {shown}  median {statistics.median(ratios) - 1:+.1%}")


if __name__ == "__main__":
    main()
