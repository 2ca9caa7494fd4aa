"""The command line: one module per subcommand (check, serve and report, control, lab), each
parsing its flags, calling the engine or a front end, and turning the outcome into output and an
exit code."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from probe import __version__
from probe.cli import check, control, lab, serve
from probe.cli.common import Parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="censorprobe",
        description="Internet-censorship availability probe: "
        "tests DNS, TCP, TLS and HTTP and says how a service is blocked.",
    )
    parser.add_argument("--version", action="version", version=f"censorprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check.add_parser(sub)
    serve.add_parsers(sub)
    control.add_parser(sub)
    lab.add_parser(sub)
    return parser


COMMANDS = {
    "check": check.command,
    "serve": serve.serve_command,
    "report": serve.report_command,
    "control": control.command,
    "lab": lab.command,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
