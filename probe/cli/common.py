"""What every subcommand shares: exit codes, the network and measurement flags, applying them to
a targets file, one-line errors, and the event loop."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeAlias, TypeVar

from probe.config import (
    CLIENT_TIMEOUT,
    MAX_CONNECTIONS,
    SPECS,
    CannotListen,
    Config,
    ConfigError,
    choose_remote,
    measured,
    override,
    parse_shard,
    shard,
)

T = TypeVar("T")

EXIT_ACCESSIBLE = 0
EXIT_BLOCKED = 1
EXIT_INCONCLUSIVE = 2
EXIT_USAGE = 64
EXIT_CONFIG = 65
EXIT_UNAVAILABLE = 69  # the lab cannot run here (no root, no namespaces); a port is taken
EXIT_INTERRUPTED = 130

EXIT_CODES = (
    "exit status: 0 all accessible · 1 something blocked or throttled · 2 inconclusive, down or\n"
    "errors only · 64 usage error · 65 bad targets file or setting · 69 the lab cannot run here\n"
    "or the address cannot be listened on · 130 interrupted"
)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"


def setting_flags(p: argparse.ArgumentParser, group: str) -> None:
    """The flags of the settings that `group` offers, as each setting declares them."""
    for name, spec in SPECS.items():
        if spec.group != group:
            continue
        p.add_argument(
            f"--{spec.flag}",
            dest=name,
            type=spec.arg,
            action="append" if spec.many else "store",
            choices=spec.choices,
            metavar=None if spec.choices else spec.metavar,
            help=spec.help,
        )


def network_flags(p: argparse.ArgumentParser) -> None:
    """How to reach targets: shared by `check`, `serve` and `control`."""
    setting_flags(p, "network")


def max_connections_flag(p: argparse.ArgumentParser) -> None:
    """The servers' bound on open connections."""
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=MAX_CONNECTIONS,
        metavar="N",
        help=f"connections open at once (default {MAX_CONNECTIONS}); when full, the one idle "
        f"longest is closed; an idle one is closed after {CLIENT_TIMEOUT:g} s",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def measure_flags(p: argparse.ArgumentParser) -> None:
    """The settings both `check` and `serve` take; they override the targets file's."""
    network_flags(p)
    setting_flags(p, "measure")
    remote = p.add_argument_group(
        "remote measurement",
        "from abroad, toward destinations in a country that you list (infrastructure, never end "
        "users): it sees only censors that act on traffic from abroad, such as the GFW; a clear "
        "path is not access in the country (see the README)",
    )
    remote.add_argument(
        "--remote",
        action="append",
        metavar="CC",
        help="measure the targets from here toward country CC only (repeatable), with the "
        "destinations of settings.remote for it and the flags below",
    )
    remote.add_argument(
        "--remote-silent",
        action="append",
        metavar="IP",
        help="an address in the country that runs no resolver: any answer to a DNS query sent "
        "there is injected on the path (repeatable)",
    )
    remote.add_argument(
        "--remote-resolver",
        action="append",
        metavar="IP[:PORT]",
        help="an open resolver in the country, compared with this vantage's resolution "
        "(repeatable)",
    )
    remote.add_argument(
        "--remote-server",
        action="append",
        metavar="IP",
        help="a web server in the country: the target's SNI (443) or Host header (80) against "
        "a harmless one (repeatable)",
    )
    p.add_argument(
        "--shard",
        metavar="i/n",
        help="measure only shard i (0-based) of n, split by a stable hash of the URL: for several "
        "replicas of one vantage with one large list",
    )


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line (those present on this subcommand)."""
    out = {
        name: getattr(args, name)
        for name, spec in SPECS.items()
        if spec.flag and getattr(args, name, None) is not None
    }
    token = os.environ.get("CENSORPROBE_CONTROL_TOKEN")
    if "control_token" not in out and token and hasattr(args, "control_token"):
        out["control_token"] = token
    return out


def configure(config: Config, args: argparse.Namespace) -> Config:
    """The command line applied to a loaded targets file: settings, the shard, then each target
    once per perspective (here, and toward each remote country)."""
    settings = override(config.settings, overrides(args))
    if settings.ca_file and not Path(settings.ca_file).is_file():
        raise ConfigError(f"--ca-file {settings.ca_file}: no such file")
    settings = choose_remote(
        settings,
        getattr(args, "remote", None) or [],
        getattr(args, "remote_silent", None),
        getattr(args, "remote_resolver", None),
        getattr(args, "remote_server", None),
    )
    targets = config.targets
    if getattr(args, "shard", None):
        try:
            targets = shard(targets, *parse_shard(args.shard))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return Config(settings, measured(targets, settings), config.notes)


def listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def fail(message: str, code: int) -> int:
    """One line on stderr, and the exit code."""
    print(f"censorprobe: {message}", file=sys.stderr)
    return code


# Objects the cyclic collector's youngest generation takes before it looks at them (Python's
# default: 700). A measurement makes and drops thousands of small containers (coroutines,
# futures, observations) that reference counting frees; at 700 the collector ran every ~15
# targets of the benchmark's run, scanning what hundreds of measurements under way hold: its
# passes took 2.3% of the run's CPU, 0.7% at this threshold, and paired runs used 3-7% less CPU
# in all, with the same peak memory (bench/RESULTS.md).
YOUNG_GENERATION = 10_000


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh event loop (uvloop's, which is faster and lighter), with the
    cyclic collector's youngest generation at YOUNG_GENERATION objects while it runs."""
    import uvloop

    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, *thresholds[1:])
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*thresholds)


def run_server(name: str, listen: str, main: Coroutine[Any, Any, None]) -> int:
    """Run a server until it stops; a port that cannot be bound is a clear error."""
    try:
        run(main)
    except CannotListen as exc:
        return fail(f"{name}: cannot listen on {listen}: {exc}", EXIT_UNAVAILABLE)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    return 0
