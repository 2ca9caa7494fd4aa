"""The command line: argument parsing, output formats and exit codes — nothing else."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from probe import __version__, runner
from probe.config import Config, ConfigError, Settings, load, override
from probe.exporter import ResultsCollector, render
from probe.model import Result, Target

EXIT_ACCESSIBLE = 0
EXIT_BLOCKED = 1
EXIT_INCONCLUSIVE = 2
EXIT_USAGE = 64
EXIT_CONFIG = 65
EXIT_UNAVAILABLE = 69  # the lab cannot run here (no root, no namespaces)
EXIT_INTERRUPTED = 130

FORMATS = ("table", "json", "jsonl", "prometheus")

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="censorprobe",
        description="Internet-censorship availability "
        "probe: tests DNS, TCP, TLS and HTTP and says how a service is blocked.",
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
    check.add_argument(
        "--control",
        metavar="URL",
        help="the control helper (censorprobe control) on an unfiltered network; without it "
        "only what this vantage alone proves is called blocked",
    )
    check.add_argument(
        "--control-token",
        metavar="T",
        help="bearer token for the control (or CENSORPROBE_CONTROL_TOKEN)",
    )
    check.add_argument(
        "--resolver",
        action="append",
        metavar="ADDR|DoH-URL",
        help="'system', an IP[:port] (UDP, listens for injected answers) or an "
        "https:// DoH URL; repeatable; replaces settings.resolvers",
    )
    check.add_argument(
        "--ca-file", metavar="PEM", help="extra trust anchors (SSL_CERT_FILE is honoured too)"
    )
    check.add_argument(
        "--public-range",
        action="append",
        metavar="CIDR",
        help="special-purpose range to treat as public (labs); repeatable",
    )
    check.add_argument("--vantage", metavar="NAME", help="name of this vantage point")
    check.add_argument("--country", metavar="CC", help="country code of this vantage point")
    check.add_argument(
        "--timeout", type=float, metavar="S", help="timeout of each step (default 10)"
    )
    check.add_argument(
        "--concurrency", type=int, metavar="N", help="targets measured at once (default 16)"
    )
    check.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="re-measure a target that looks blocked N times before the verdict stands (default 1)",
    )
    check.add_argument(
        "--retry-pause",
        type=float,
        metavar="S",
        help="pause before a re-measurement (default 10; the GFW's residual blocking lasts ~90 s)",
    )
    check.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help="stop after S seconds and report what was not measured (default: "
        "enough for every target's full deadline)",
    )
    check.add_argument("--format", choices=FORMATS, default="table", help="output format")
    check.add_argument("--output", metavar="FILE", help="write the output here instead of stdout")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")

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
    ctl.add_argument(
        "--public-range",
        action="append",
        metavar="CIDR",
        help="special-purpose range to treat as public (labs); repeatable",
    )
    ctl.add_argument(
        "--resolver",
        action="append",
        metavar="ADDR|DoH-URL",
        help="resolvers the control uses (default: system)",
    )
    ctl.add_argument("--ca-file", metavar="PEM", help="extra trust anchors")
    ctl.add_argument("--timeout", type=float, metavar="S", help="timeout of each step (default 10)")
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
        description="Run a command inside a vantage: censorprobe lab exec a -- "
        "dig injected.lab.test",
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
    raise AssertionError(args.command)  # argparse accepts only known commands


def control_command(args: argparse.Namespace) -> int:
    from probe import control

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        return _usage_error(f"--listen {args.listen!r}: expected HOST:PORT")
    try:
        settings = override(
            Settings(),
            {
                k: v
                for k, v in {
                    "resolvers": args.resolver,
                    "public_ranges": args.public_range,
                    "ca_file": args.ca_file,
                    "timeout": args.timeout,
                }.items()
                if v is not None
            },
        )
    except ConfigError as exc:
        print(f"censorprobe: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.concurrency <= 0:
        return _usage_error("--concurrency must be positive")
    token = args.token or os.environ.get("CENSORPROBE_CONTROL_TOKEN")
    print(
        f"censorprobe control: listening on {host}:{port}" + (" (token required)" if token else ""),
        file=sys.stderr,
    )
    try:
        asyncio.run(
            control.serve(
                settings, host.strip("[]"), int(port), token=token, concurrency=args.concurrency
            )
        )
    except OSError as exc:
        print(
            f"censorprobe control: cannot listen on {args.listen}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
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
    overrides = {"resolvers": args.resolver, "public_ranges": args.public_range}
    for key in (
        "ca_file",
        "vantage",
        "country",
        "timeout",
        "concurrency",
        "control",
        "control_token",
        "retries",
        "retry_pause",
    ):
        overrides[key] = getattr(args, key)
    overrides["control_token"] = overrides["control_token"] or os.environ.get(
        "CENSORPROBE_CONTROL_TOKEN"
    )
    settings = override(config.settings, {k: v for k, v in overrides.items() if v is not None})
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise ConfigError(f"--ca-file {settings.ca_file}: no such file")
    return Config(settings, tuple(targets))


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
    try:
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    except OSError as exc:
        print(f"censorprobe: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
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
    return format_table(results, color=sys.stdout.isatty() and "NO_COLOR" not in os.environ)


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
    limits = (18, 44, 12, 22, 48, 7)
    cells = [[_clip(c, n) for c, n in zip(row, limits, strict=True)] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(limits))]
    lines = []
    for k, row in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if color and k > 0:
            padded[2] = f"\033[{_COLORS.get(row[2], '0')}m{padded[2]}\033[0m"
        lines.append("  ".join(padded).rstrip())
    lines.append("")
    for r in results:
        if r.verdict.verdict != "accessible":
            lines.append(f"{r.measurement.target.url}: {r.verdict.explanation}")
    return "\n".join(lines).rstrip("\n") + "\n"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
