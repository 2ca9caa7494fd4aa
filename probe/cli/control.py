"""`censorprobe control`: the control helper, on an unfiltered network."""

from __future__ import annotations

import argparse
import os
import sys

from probe.cli.common import (
    EXIT_CONFIG,
    EXIT_USAGE,
    Subcommands,
    fail,
    listen_address,
    max_connections_flag,
    network_flags,
    overrides,
    run_server,
)
from probe.config import ConfigError, Settings, override


def add_parser(sub: Subcommands) -> None:
    ctl = sub.add_parser(
        "control",
        help="run the control helper (on an unfiltered network)",
        description="The control helper: measures targets for probes from an unfiltered network "
        "and answers with its observations (POST /api/v1/measure). It refuses loopback, private "
        "and other special-purpose destinations unless --public-range allows them, at connect "
        "time, for every redirect hop.",
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
    network_flags(ctl)
    max_connections_flag(ctl)
    ctl.add_argument(
        "--concurrency",
        dest="helper_concurrency",  # not the probe's setting of that name
        type=int,
        default=8,
        metavar="N",
        help="measurements at once (default 8); more wait, too many get 503",
    )


def command(args: argparse.Namespace) -> int:
    from probe.helper import server

    try:
        host, port = listen_address(args.listen)
        settings = override(Settings(), overrides(args))
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    if args.helper_concurrency <= 0:
        return fail("--concurrency must be positive", EXIT_USAGE)
    token = args.token or os.environ.get("CENSORPROBE_CONTROL_TOKEN")
    note = " (token required)" if token else ""
    print(f"censorprobe control: listening on {host}:{port}{note}", file=sys.stderr)
    return run_server(
        "control",
        args.listen,
        server.serve(
            settings,
            host,
            port,
            token=token,
            concurrency=args.helper_concurrency,
            max_connections=args.max_connections,
        ),
    )
