"""`censorprobe lab`: the censorship lab on this machine."""

from __future__ import annotations

import argparse
import os
import sys

from probe.cli.common import EXIT_UNAVAILABLE, Subcommands, fail


def add_parser(sub: Subcommands) -> None:
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


def command(args: argparse.Namespace) -> int:
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
        return fail(f"lab: {exc}", EXIT_UNAVAILABLE)
    return 0
