"""The command line: argument parsing, output formats and exit codes — nothing else."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO
from xml.etree import ElementTree as ET

from probe import __version__, runner
from probe.config import Config, ConfigError, Settings, load, override, parse_shard, shard
from probe.exporter import ResultsCollector, push, render
from probe.model import Result, Target

EXIT_ACCESSIBLE = 0
EXIT_BLOCKED = 1
EXIT_INCONCLUSIVE = 2
EXIT_USAGE = 64
EXIT_CONFIG = 65
EXIT_UNAVAILABLE = 69  # the lab cannot run here (no root, no namespaces)
EXIT_INTERRUPTED = 130

FORMATS = ("table", "json", "jsonl", "prometheus", "junit")

EPILOG = """\
exit status: 0 all accessible · 1 something blocked or throttled · 2 inconclusive, down or
errors only · 64 usage error · 65 bad targets file or setting · 69 the lab cannot run here
· 130 interrupted

examples:
  censorprobe check clubhouse.com                      one domain (means https://clubhouse.com/)
  censorprobe check --targets targets.yaml             the default list, as a table
  censorprobe check https://t.me/ --resolver 8.8.8.8   also ask 8.8.8.8 over UDP (sees injection)
  censorprobe check example.org --format json          full evidence, for scripts and CI
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _network_flags(p: argparse.ArgumentParser) -> None:
    """How to reach targets: shared by `check`, `serve` and `control`."""
    p.add_argument(
        "--resolver",
        action="append",
        metavar="ADDR|DoH-URL",
        help="'system', an IP[:port] (UDP, listens for injected answers) or an https:// "
        "DoH URL; repeatable; replaces settings.resolvers",
    )
    p.add_argument(
        "--ca-file", metavar="PEM", help="extra trust anchors (SSL_CERT_FILE is honoured too)"
    )
    p.add_argument(
        "--public-range",
        action="append",
        metavar="CIDR",
        help="special-purpose range to treat as public (labs); repeatable",
    )
    p.add_argument("--timeout", type=float, metavar="S", help="timeout of each step (default 10)")


def _measure_flags(p: argparse.ArgumentParser) -> None:
    """The settings both `check` and `serve` take; they override the targets file's."""
    _network_flags(p)
    p.add_argument(
        "--control",
        metavar="URL",
        help="the control helper (censorprobe control) on an unfiltered network; "
        "without it only what this vantage alone proves is called blocked",
    )
    p.add_argument(
        "--control-token",
        metavar="T",
        help="bearer token for the control (or CENSORPROBE_CONTROL_TOKEN)",
    )
    p.add_argument("--vantage", metavar="NAME", help="name of this vantage point")
    p.add_argument("--country", metavar="CC", help="country code of this vantage point")
    p.add_argument(
        "--concurrency", type=int, metavar="N", help="targets measured at once (default 16)"
    )
    p.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="re-measure a target that looks blocked N times before the verdict stands (default 1)",
    )
    p.add_argument(
        "--shard",
        metavar="i/n",
        help="measure only shard i (0-based) of n, split by a stable hash of the URL: for several "
        "replicas of one vantage with one large list",
    )
    p.add_argument(
        "--retry-pause",
        type=float,
        metavar="S",
        help="pause before a re-measurement (default 10; the GFW's residual blocking lasts ~90 s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="censorprobe",
        description="Internet-censorship availability probe: "
        "tests DNS, TCP, TLS and HTTP and says how a service is blocked.",
    )
    parser.add_argument("--version", action="version", version=f"censorprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="measure URLs or domains once and print a diagnosis",
        description="Measure each target over DNS, TCP, TLS and HTTP and print a verdict with its "
        "evidence: accessible, blocked (with layer and method), throttled, down or inconclusive.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "urls", nargs="*", metavar="URL|DOMAIN", help="targets; a bare domain means https://DOMAIN/"
    )
    check.add_argument(
        "--targets",
        metavar="FILE",
        help="targets.yaml or a Citizen Lab CSV (default: ./targets.yaml when no URL is given)",
    )
    _measure_flags(check)
    check.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help="stop after S seconds and report what was not measured (default: "
        "enough for every target's full deadline)",
    )
    check.add_argument("--format", choices=FORMATS, default="table", help="output format")
    check.add_argument("--output", metavar="FILE", help="write the output here instead of stdout")
    check.add_argument(
        "--textfile",
        metavar="DIR",
        help="also write DIR/censorprobe.prom for node_exporter's textfile collector (atomically)",
    )
    check.add_argument(
        "--push-gateway", metavar="URL", help="also push the metrics to a Prometheus Pushgateway"
    )
    check.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")

    serve = sub.add_parser(
        "serve",
        help="measure targets every interval; /metrics, /probe, a status page, an archive",
        description="Measure every target each interval and serve the latest results: /metrics "
        "(Prometheus), /probe?target=URL (one fresh measurement, like blackbox_exporter), "
        "/results (JSON), /healthz, and a status page at /. Every measurement is appended to an "
        "archive under --data-dir. The targets file is reloaded when it changes or on SIGHUP.",
        epilog="example: censorprobe serve --targets targets.yaml --listen 0.0.0.0:9716 "
        "--data-dir /var/lib/censorprobe --country RU --vantage msk-1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--targets", required=True, metavar="FILE", help="targets.yaml or a CSV")
    serve.add_argument(
        "--listen",
        default="0.0.0.0:9716",
        metavar="HOST:PORT",
        help="address to serve on (default 0.0.0.0:9716)",
    )
    serve.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between rounds (default 300, ±10%% jitter)",
    )
    serve.add_argument(
        "--data-dir", metavar="DIR", help="append every measurement to DIR/results-DAY.N.jsonl"
    )
    serve.add_argument(
        "--probe-targets",
        choices=("listed", "any"),
        default="listed",
        help="what /probe?target=URL measures: only URLs of the targets file (default), or any "
        "URL, refusing loopback, private and other special-purpose destinations at every hop "
        "(as the control helper does; --public-range allows a range)",
    )
    _measure_flags(serve)

    report = sub.add_parser(
        "report",
        help="summarise an evidence archive per service and country",
        description="Summarise archives written by serve (files or directories): per service and "
        "country, the measurements, when it was first and last blocked, and how.",
    )
    report.add_argument(
        "archives", nargs="+", metavar="ARCHIVE", help="archive files or directories"
    )
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    report.add_argument("--output", metavar="FILE", help="write here instead of stdout")

    ctl = sub.add_parser(
        "control",
        help="run the control helper (on an unfiltered network)",
        description="The control helper: measures targets for probes from an unfiltered network "
        "and answers with its observations (POST /api/v1/measure). It refuses loopback, private "
        "and other special-purpose destinations unless --public-range allows them.",
        epilog='example: censorprobe control --listen 0.0.0.0:8080 --token "$TOKEN"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ctl.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8080)",
    )
    ctl.add_argument(
        "--token", metavar="T", help="require this bearer token (or CENSORPROBE_CONTROL_TOKEN)"
    )
    _network_flags(ctl)
    ctl.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="measurements at once (default 8); more wait, too many get 503",
    )

    lab = sub.add_parser(
        "lab",
        help="the censorship lab: a censored network in namespaces on this machine",
        description="A reproducible censored network (root, Linux network namespaces): two "
        "vantages behind an ISP and a border router that apply real censors' techniques to the "
        "lab's own servers. Nothing leaves the namespaces.",
        epilog="example: sudo censorprobe lab demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    lab_sub.add_parser("up", help="build the lab (cleans up a previous one first)")
    lab_sub.add_parser("down", help="remove every namespace, process, rule and file of the lab")
    lab_sub.add_parser("status", help="show namespaces, addresses, servers and rules")
    run = lab_sub.add_parser(
        "exec",
        help="run a command inside a vantage",
        description="Run a command inside a vantage: censorprobe lab exec a "
        "-- dig injected.lab.test",
    )
    run.add_argument("vantage", help="a or b")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    lab_sub.add_parser(
        "demo",
        help="bring the lab up, diagnose every scenario from each vantage, "
        "print the diagnosis beside the expected verdict, bring it down",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return check(args)
    if args.command == "lab":
        return lab_command(args)
    if args.command == "control":
        return control_command(args)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "report":
        return report_command(args)
    raise AssertionError(args.command)  # argparse accepts only known commands


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line (those present on this subcommand)."""
    names = {"resolver": "resolvers", "public_range": "public_ranges"}
    keys = (
        "resolver",
        "public_range",
        "ca_file",
        "vantage",
        "country",
        "timeout",
        "concurrency",
        "control",
        "control_token",
        "retries",
        "retry_pause",
        "interval",
    )
    out = {names.get(k, k): getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    token = os.environ.get("CENSORPROBE_CONTROL_TOKEN")
    if "control_token" not in out and token and hasattr(args, "control_token"):
        out["control_token"] = token
    return out


def _settings(config: Config, args: argparse.Namespace) -> Config:
    """The command line applied to a loaded targets file: settings, then the shard."""
    settings = override(config.settings, _overrides(args))
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise ConfigError(f"--ca-file {settings.ca_file}: no such file")
    targets = config.targets
    if args.shard:
        try:
            targets = shard(targets, *parse_shard(args.shard))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return Config(settings, targets)


def _config_error(exc: ConfigError) -> int:
    print(f"censorprobe: {exc}", file=sys.stderr)
    return EXIT_CONFIG


def control_command(args: argparse.Namespace) -> int:
    from probe import control

    try:
        host, port = _listen(args.listen)
        settings = override(Settings(), _overrides(args))
    except ConfigError as exc:
        return _config_error(exc)
    if args.concurrency <= 0:
        return _usage_error("--concurrency must be positive")
    token = args.token or os.environ.get("CENSORPROBE_CONTROL_TOKEN")
    note = " (token required)" if token else ""
    print(f"censorprobe control: listening on {host}:{port}{note}", file=sys.stderr)
    return _run_server(
        "control",
        args.listen,
        control.serve(settings, host, port, token=token, concurrency=args.concurrency),
    )


def _run_server(name: str, listen: str, main: Coroutine[Any, Any, None]) -> int:
    """Run a server until it stops; a port that cannot be bound is a clear error."""
    try:
        asyncio.run(main)
    except OSError as exc:
        print(
            f"censorprobe {name}: cannot listen on {listen}: {exc.strerror or exc}", file=sys.stderr
        )
        return EXIT_UNAVAILABLE
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from probe.serve import Daemon

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        host, port = _listen(args.listen)
        daemon = Daemon(
            args.targets, lambda config: _settings(config, args), args.data_dir, args.probe_targets
        )
    except ConfigError as exc:
        return _config_error(exc)
    return _run_server("serve", args.listen, daemon.run(host, port))


def report_command(args: argparse.Namespace) -> int:
    from probe import archive, report

    missing = [a for a in args.archives if not Path(a).exists()]
    if missing:
        return _usage_error(f"no such archive: {', '.join(missing)}")
    rows = report.summarise(archive.read(args.archives))
    if args.format == "json":
        text = json.dumps([r.to_json() for r in rows], indent=2) + "\n"
    elif args.format == "csv":
        out = io.StringIO()
        fields = list(report.Row("", "").to_json())
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            doc = r.to_json()
            writer.writerow(
                {**doc, "methods": " ".join(doc["methods"]), "vantages": " ".join(doc["vantages"])}
            )
        text = out.getvalue()
    else:
        table = [
            (
                "SERVICE",
                "COUNTRY",
                "MEASURED",
                "BLOCKED",
                "FIRST BLOCKED",
                "LAST BLOCKED",
                "HOW",
                "NOW",
            )
        ]
        for r in rows:
            d = r.to_json()
            table.append(
                (
                    r.service,
                    r.country,
                    str(r.measurements),
                    str(r.blocked),
                    d["first_blocked"] or "-",
                    d["last_blocked"] or "-",
                    ",".join(d["methods"]) or "-",
                    r.last_verdict,
                )
            )
        text = _columns(table)
    return _write(args.output, text)


def _write(path: str | None, text: str) -> int:
    try:
        if path:
            Path(path).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    except OSError as exc:
        print(f"censorprobe: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def lab_command(args: argparse.Namespace) -> int:
    from probe.lab import demo, topology  # the lab's imports are not needed for a check

    try:
        if args.lab_command == "up":
            seconds = topology.up()
            print(f"lab up in {seconds:.1f}s\n{topology.status()}", end="")
        elif args.lab_command == "down":
            removed = topology.down()
            print("removed: " + ", ".join(removed) if removed else "nothing to remove")
        elif args.lab_command == "status":
            print(topology.status(), end="")
        elif args.lab_command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            argv = topology.exec_argv(args.vantage, cmd)
            os.execvp(argv[0], argv)
        elif args.lab_command == "demo":
            return demo.demo(sys.stdout)
    except topology.LabError as exc:
        print(f"censorprobe lab: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0


def _usage_error(message: str) -> int:
    print(f"censorprobe: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def resolve_config(args: argparse.Namespace) -> Config:
    """The targets file (if any) and the command line, the latter winning."""
    path = args.targets
    if path is None and not args.urls:
        if not Path("targets.yaml").exists():
            raise ConfigError("no targets: give URLs or domains, or --targets FILE")
        path = "targets.yaml"
    config = load(path) if path else Config(Settings(), ())
    targets = list(config.targets)
    for i, text in enumerate(args.urls):
        try:
            targets.append(Target.parse(text))
        except ValueError as exc:
            raise ConfigError(f"argument {i + 1}: {exc}") from None
    return _settings(Config(config.settings, tuple(targets)), args)


def check(args: argparse.Namespace) -> int:
    try:
        config = resolve_config(args)
    except ConfigError as exc:
        print(f"censorprobe: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.budget is not None and args.budget <= 0:
        return _usage_error("--budget must be positive")
    progress = Progress(sys.stderr, enabled=not args.quiet)
    started = time.time()
    try:
        results, ended = asyncio.run(_run(config, args.budget, progress))
    except ConfigError as exc:
        progress.finish()
        print(f"censorprobe: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    progress.finish()
    finished = time.time()
    text = format_results(args.format, results, config.settings, started, finished, ended)
    if _write(args.output, text) != 0 or _export(args, results, config.settings) != 0:
        return EXIT_USAGE
    if ended:
        print(f"censorprobe: run ended early: {ended}", file=sys.stderr)
    if ended == "interrupted":
        return EXIT_INTERRUPTED
    return exit_code(results)


async def _run(
    config: Config, budget: float | None, progress: Progress
) -> tuple[list[Result], str | None]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    ticker = asyncio.ensure_future(progress.tick_forever())
    try:
        return await runner.run(
            config.targets, config.settings, budget=budget, stop=stop, progress=progress.update
        )
    finally:
        ticker.cancel()


def _export(args: argparse.Namespace, results: Sequence[Result], settings: Settings) -> int:
    """--textfile and --push-gateway: the same metrics as --format prometheus."""
    if not (args.textfile or args.push_gateway):
        return 0
    collector = ResultsCollector(settings.vantage, settings.country)
    for r in results:
        collector.record(r)
    try:
        if args.textfile:
            final = Path(args.textfile) / "censorprobe.prom"
            tmp = final.with_suffix(f".prom.{os.getpid()}.tmp")  # node_exporter skips it
            tmp.write_bytes(render(collector))
            tmp.replace(final)
        if args.push_gateway:
            push(args.push_gateway, collector)
    except OSError as exc:
        print(f"censorprobe: cannot export metrics: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def exit_code(results: Sequence[Result]) -> int:
    verdicts = {r.verdict.verdict for r in results}
    if verdicts & {"blocked", "throttled"}:
        return EXIT_BLOCKED
    if verdicts <= {"accessible"}:
        return EXIT_ACCESSIBLE
    return EXIT_INCONCLUSIVE


class Progress:
    """A progress line on stderr for runs longer than a few seconds."""

    DELAY = 2.0

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.start = time.perf_counter()
        self.done = 0
        self.total = 0
        self.counts: dict[str, int] = {}
        self.shown = False

    def update(self, result: Result, done: int, total: int) -> None:
        self.done, self.total = done, total
        v = result.verdict.verdict
        self.counts[v] = self.counts.get(v, 0) + 1
        if self.tty:
            self.show()

    async def tick_forever(self) -> None:
        await asyncio.sleep(self.DELAY)
        while True:
            self.show()
            await asyncio.sleep(0.5 if self.tty else 10.0)

    def show(self) -> None:
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.DELAY:
            return
        counts = " ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
        line = (
            f"measured {self.done}/{self.total or '?'} · {counts or 'nothing yet'} · {elapsed:.0f}s"
        )
        self.stream.write(f"\r\033[K{line}" if self.tty else f"{line}\n")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def format_results(
    fmt: str,
    results: Sequence[Result],
    settings: Settings,
    started: float,
    finished: float,
    ended: str | None,
) -> str:
    if fmt == "json":
        doc = {
            "vantage": {"name": settings.vantage, "country": settings.country},
            "started": started,
            "finished": finished,
            "ended_early": ended,
            "results": [r.to_json() for r in results],
        }
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r.to_json()) + "\n" for r in results)
    if fmt == "prometheus":
        collector = ResultsCollector(settings.vantage, settings.country)
        for r in results:
            collector.record(r)
        return render(collector).decode()
    if fmt == "junit":
        return format_junit(results, settings)
    return format_table(results, color=sys.stdout.isatty() and "NO_COLOR" not in os.environ)


def format_junit(results: Sequence[Result], settings: Settings) -> str:
    """One test case per URL: blocked/throttled fail, inconclusive/down are skipped."""
    suite = ET.Element(
        "testsuite",
        name=f"censorprobe {settings.vantage} ({settings.country})",
        tests=str(len(results)),
    )
    failures = skipped = 0
    for r in results:
        t = r.measurement.target
        case = ET.SubElement(
            suite,
            "testcase",
            classname=t.service,
            name=t.url,
            time=f"{r.measurement.timings.get('total', 0.0):.3f}",
        )
        v = r.verdict
        if v.verdict in ("blocked", "throttled"):
            failures += 1
            how = f" {v.blocking.layer}/{v.blocking.method}" if v.blocking else ""
            ET.SubElement(case, "failure", message=f"{v.verdict}{how}").text = v.explanation
        elif v.verdict != "accessible":
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{v.verdict}: {v.explanation}")
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


_COLORS = {
    "accessible": "32",
    "blocked": "31;1",
    "throttled": "33;1",
    "down": "35",
    "inconclusive": "90",
}


def format_table(results: Sequence[Result], color: bool = False) -> str:
    rows = [("SERVICE", "URL", "VERDICT", "LAYER/METHOD", "EVIDENCE", "TIME")]
    for r in results:
        b = r.verdict.blocking
        rows.append(
            (
                r.measurement.target.service,
                r.measurement.target.url,
                r.verdict.verdict,
                f"{b.layer}/{b.method}" if b else "-",
                r.verdict.summary,
                f"{r.measurement.timings.get('total', 0.0):.1f}s",
            )
        )
    text = _columns(rows, limits=(18, 44, 12, 22, 48, 7), color_column=2 if color else None)
    why = [
        f"{r.measurement.target.url}: {r.verdict.explanation}"
        for r in results
        if r.verdict.verdict != "accessible"
    ]
    return text + ("\n" + "\n".join(why) + "\n" if why else "")


def _columns(
    rows: Sequence[Sequence[str]],
    limits: Sequence[int] | None = None,
    color_column: int | None = None,
) -> str:
    """Rows as aligned columns; cells clipped to `limits`; one column coloured by verdict."""
    cells = [[_clip(c, limits[i]) if limits else c for i, c in enumerate(row)] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for k, row in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if color_column is not None and k > 0:
            code = _COLORS.get(row[color_column], "0")
            padded[color_column] = f"\033[{code}m{padded[color_column]}\033[0m"
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
