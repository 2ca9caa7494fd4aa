"""`censorprobe check`: measure URLs or domains once, print a diagnosis, exit with a code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from probe.cli.common import (
    EXIT_ACCESSIBLE,
    EXIT_BLOCKED,
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Subcommands,
    configure,
    fail,
    measure_flags,
    run,
)
from probe.cli.formats import FORMATS, OUTPUTS, PrometheusOutput
from probe.config import (
    DEADLINE_FORMULA,
    TARGET_BOUND_FORMULA,
    Config,
    ConfigError,
    Settings,
    Unfinished,
    load,
)
from probe.engine import canaries, schedule
from probe.engine.runtime import Runtime
from probe.model import RegimeReport, Result, Target
from probe.verdict.http import CONTROL_MATCHES_TOO
from probe.vocabulary import Regime, Verdict

EPILOG = f"""\
{EXIT_CODES}

time: each network wait (a connect, a handshake, the first byte of an answer) takes at most
--timeout; one measurement of a target at most its deadline, {DEADLINE_FORMULA}
(50 s with the defaults); a target, re-measurements and the control's answer included, at most
{TARGET_BOUND_FORMULA}.

examples:
  censorprobe check clubhouse.com                      one domain (means https://clubhouse.com/)
  censorprobe check --targets targets.yaml             the default list, as a table
  censorprobe check https://t.me/ --resolver 8.8.8.8   also ask 8.8.8.8 over UDP (sees injection)
  censorprobe check example.org --format json          full evidence, for scripts and CI
  censorprobe check --remote CN --remote-server 198.51.100.80 clubhouse.com
                                                       from abroad: its SNI toward a server in CN
  censorprobe check --routes clubhouse.com             which ways through get an answer from
                                                       here: TLS, a post-quantum key share, ECH,
                                                       a split ClientHello, HTTP/3, DoH
"""


def add_parser(sub: Subcommands) -> None:
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
        help="targets.yaml or a Citizen Lab CSV, or - for standard input (default: "
        "./targets.yaml when no URL is given)",
    )
    measure_flags(check)
    check.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help="stop S seconds after the start (reading the targets included) and report what "
        "was not measured (default: enough for every target's full bound)",
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
    check.add_argument(
        "--fingerprints-report",
        action="store_true",
        help="at the end, list on stderr the blockpage fingerprints that matched pages the "
        "control received too (false positives of a shared list: report them upstream)",
    )
    check.add_argument(
        "--fail-on-quic",
        action="store_true",
        help="exit 1 when an HTTP/3 path is blocked too (by default only the target's verdict, "
        "over TCP, sets the exit status)",
    )
    check.add_argument(
        "--fail-on-ech",
        action="store_true",
        help="exit 1 when ECH to a target is blocked too (the site publishes ECH, an ECH "
        "ClientHello fails where the same without ECH is answered)",
    )
    check.add_argument(
        "--routes",
        action="store_true",
        help="say for each target which routes get through from here — TLS, TLS with a "
        "post-quantum key share, ECH, a split ClientHello, HTTP/3, DNS over HTTPS (the DoH "
        "resolvers of the settings) — as a matrix (--format table) or a `routes` object (json); "
        "measures every ClientHello variant and HTTP/3 (clienthello and quic: always). "
        "Availability only: nothing is carried through them",
    )
    check.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")


def resolve_config(args: argparse.Namespace, until: float | None = None) -> Config:
    """The targets file (if any) and the command line, the latter winning; `until` stops the
    reading (`Unfinished`) when the run's budget runs out."""
    path = args.targets
    if path is None and not args.urls:
        if not Path("targets.yaml").exists():
            raise ConfigError("no targets: give URLs or domains, or --targets FILE")
        path = "targets.yaml"
    config = load(path, until=until) if path else Config(Settings(), ())
    if args.urls:
        targets = list(config.targets)
        for i, text in enumerate(args.urls):
            try:
                targets.append(Target.parse(text))
            except ValueError as exc:
                raise ConfigError(f"argument {i + 1}: {exc}") from None
        config = Config(config.settings, tuple(targets), config.notes)
        config = config.deduplicated("the command line")
    config = configure(config, args)
    if args.routes:  # every route is measured: each ClientHello variant, and HTTP/3
        routes = replace(config.settings, clienthello="always", quic="always")
        config = replace(config, settings=routes)
    return config


def command(args: argparse.Namespace) -> int:
    began = time.monotonic()  # --budget counts from here: loading a long list is part of it
    if args.budget is not None and not 0 < args.budget < float("inf"):
        return fail("--budget must be a positive number of seconds", EXIT_USAGE)
    unfinished = None  # the budget ran out while the targets were read: nothing to measure
    try:
        try:
            config = resolve_config(args, None if args.budget is None else began + args.budget)
        except Unfinished as exc:
            unfinished = f"{exc}; nothing was measured"
            config = configure(Config(Settings(), ()), args)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    for note in config.notes:
        print(f"censorprobe: {note}", file=sys.stderr)
    if args.push_gateway and not args.push_gateway.startswith(("http://", "https://")):
        return fail(f"--push-gateway {args.push_gateway!r}: not an http(s) URL", EXIT_USAGE)
    try:
        stream = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    except OSError as exc:
        return fail(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_USAGE)
    progress = Progress(sys.stderr, enabled=not args.quiet, total=len(config.targets))
    started = time.time()
    output = OUTPUTS[args.format](stream, config.settings, started, routes=args.routes)
    exported = PrometheusOutput(stream, config.settings, started)  # for the exports only
    export = bool(args.textfile or args.push_gateway)
    verdicts: Counter[Verdict] = Counter()
    found: list[RegimeReport | None] = []

    def begin(regime: RegimeReport | None) -> None:
        """The canaries have spoken: the outputs can start (they show the regime first)."""
        found.append(regime)
        output.start(regime)
        if export:
            exported.start(regime)

    false_positives: dict[str, list[str]] = {}

    def on_result(index: int, result: Result) -> None:
        output.add(index, result)
        verdicts[result.verdict] += 1
        if args.fail_on_quic and result.quic is not None and result.quic.verdict.is_block:
            verdicts[Verdict.BLOCKED] += 1
        if args.fail_on_ech and result.ech is not None and result.ech.verdict.is_block:
            verdicts[Verdict.BLOCKED] += 1
        for ignored in result.diagnosis.ignored:
            fingerprint, _, why = ignored.rpartition(": ")
            if why == CONTROL_MATCHES_TOO:
                false_positives.setdefault(fingerprint, []).append(result.measurement.target.url)
        if export:
            exported.add(index, result)
        progress.update(result)

    def on_unmeasured(targets: list[tuple[int, Target]], why: str) -> None:
        output.add_unmeasured(targets, why)
        if export:
            exported.add_unmeasured(targets, why)
        verdicts[Verdict.INCONCLUSIVE] += len(targets)

    try:
        with contextlib.ExitStack() as closing:
            if args.output:
                closing.callback(stream.close)
            budget = None if args.budget is None else args.budget - (time.monotonic() - began)
            if unfinished:
                begin(None)
                ended: str | None = unfinished
            else:
                ended = run(_measure(config, budget, on_result, on_unmeasured, progress, begin))
            output.finish(time.time(), ended)
            stream.flush()
    except ConfigError as exc:
        progress.finish()
        return fail(str(exc), EXIT_CONFIG)
    except OSError as exc:  # stdout closed, disk full
        progress.finish()
        return fail(f"cannot write the output: {exc.strerror or exc}", EXIT_USAGE)
    progress.finish()
    if export and _export(args, exported) != 0:
        return EXIT_USAGE
    if args.fingerprints_report:
        print(fingerprints_report(false_positives), file=sys.stderr, end="")
    if ended:
        print(f"censorprobe: run ended early: {ended}", file=sys.stderr)
    regime = found[0] if found else None
    if regime is not None and regime.regime != Regime.NORMAL:
        print(f"censorprobe: {regime.sentence()}", file=sys.stderr)
    if ended == "interrupted":
        return EXIT_INTERRUPTED
    if unfinished or (regime is not None and regime.regime == Regime.OFFLINE):
        return EXIT_INCONCLUSIVE
    return exit_code(verdicts)


async def _measure(
    config: Config,
    budget: float | None,
    on_result: schedule.OnResult,
    on_unmeasured: schedule.OnUnmeasured,
    progress: Progress,
    begin: Callable[[RegimeReport | None], None],
) -> str | None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    rt = await Runtime.open(config.settings)
    # the targets, the modules and the runtime live for the whole run: out of the cyclic
    # collector's sight, so its full collections scan only what the measurements make
    gc.freeze()
    ticker = asyncio.ensure_future(progress.tick_forever())
    try:
        rt.regime = await canaries.survey(rt)
        begin(rt.regime)
        return await schedule.run(
            config.targets,
            rt,
            on_result,
            count=len(config.targets),
            budget=budget,
            stop=stop,
            on_unmeasured=on_unmeasured,
        )
    finally:
        ticker.cancel()
        await rt.close()


def _export(args: argparse.Namespace, exported: PrometheusOutput) -> int:
    """--textfile and --push-gateway: the same metrics as --format prometheus."""
    from probe.serve.metrics import push, write_textfile

    try:
        if args.textfile:
            write_textfile(str(Path(args.textfile) / "censorprobe.prom"), exported.collector)
        if args.push_gateway:
            push(args.push_gateway, exported.collector)
    except (OSError, ValueError) as exc:
        what = getattr(exc, "strerror", None) or exc
        return fail(f"cannot export metrics: {what}", EXIT_USAGE)
    return 0


def fingerprints_report(false_positives: dict[str, list[str]]) -> str:
    if not false_positives:
        return "fingerprints: none matched a page the control received too\n"
    lines = ["fingerprints that matched pages the control received too (report them upstream):"]
    for fingerprint, urls in sorted(false_positives.items()):
        shown = ", ".join(urls[:5]) + (f" and {len(urls) - 5} more" if len(urls) > 5 else "")
        lines.append(f"  {fingerprint}: {len(urls)} page(s): {shown}")
    return "\n".join(lines) + "\n"


def exit_code(verdicts: Counter[Verdict]) -> int:
    if any(v.is_block for v in verdicts):
        return EXIT_BLOCKED
    if set(verdicts) <= {Verdict.ACCESSIBLE}:
        return EXIT_ACCESSIBLE
    return EXIT_INCONCLUSIVE


class Progress:
    """A progress line on stderr for runs longer than a few seconds."""

    DELAY = 2.0

    def __init__(self, stream: TextIO, enabled: bool = True, total: int = 0) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.start = time.perf_counter()
        self.done = 0
        self.total = total
        self.counts: Counter[str] = Counter()
        self.shown = False

    def update(self, result: Result) -> None:
        self.done += 1
        self.counts[result.verdict] += 1
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
        line = f"measured {self.done}/{self.total} · {counts or 'nothing yet'} · {elapsed:.0f}s"
        self.stream.write(f"\r\033[K{line}" if self.tty else f"{line}\n")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
