"""`censorprobe serve`: the daemon for Prometheus, and `censorprobe report` over its archive."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from pathlib import Path

from probe.cli.common import (
    EXIT_CONFIG,
    EXIT_USAGE,
    Subcommands,
    configure,
    fail,
    listen_address,
    max_connections_flag,
    measure_flags,
    run_server,
    setting_flags,
)
from probe.cli.formats import columns
from probe.config import ConfigError


def add_parsers(sub: Subcommands) -> None:
    serve = sub.add_parser(
        "serve",
        help="measure targets every interval; /metrics, /probe, a status page, an archive",
        description="Measure every target each interval and serve the latest results: /metrics "
        "(Prometheus), /probe?target=URL (one fresh measurement, like blackbox_exporter), "
        "/results (JSON), /healthz (alive), /readyz (able to do its job), and a status page at "
        "/. Every measurement is appended to an archive under --data-dir. The targets file is "
        "reloaded when it changes or on SIGHUP.",
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
    setting_flags(serve, "serve")
    serve.add_argument(
        "--data-dir", metavar="DIR", help="append every measurement to DIR/results-DAY.N.jsonl"
    )
    serve.add_argument(
        "--token",
        metavar="T",
        help="require this bearer token on /probe, /results and /result (or "
        "CENSORPROBE_SERVE_TOKEN); /metrics, /healthz, /readyz and the status page stay open",
    )
    max_connections_flag(serve)
    serve.add_argument(
        "--probe-targets",
        choices=("listed", "any"),
        default="listed",
        help="what /probe?target=URL measures: only URLs of the targets file (default), or any "
        "URL, refusing loopback, private and other special-purpose destinations at every hop "
        "(as the control helper does; --public-range allows a range)",
    )
    measure_flags(serve)

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


def serve_command(args: argparse.Namespace) -> int:
    from probe.serve.daemon import Daemon

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    if args.targets == "-":
        return fail("serve --targets: give a file (serve reloads it when it changes)", EXIT_USAGE)
    try:
        host, port = listen_address(args.listen)
        daemon = Daemon(
            args.targets,
            lambda config: configure(config, args),
            args.data_dir,
            args.probe_targets,
            token=args.token or os.environ.get("CENSORPROBE_SERVE_TOKEN"),
            max_connections=args.max_connections,
        )
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    return run_server("serve", args.listen, daemon.run(host, port))


def report_command(args: argparse.Namespace) -> int:
    from probe.serve import archive, report

    missing = [a for a in args.archives if not Path(a).exists()]
    if missing:
        return fail(f"no such archive: {', '.join(missing)}", EXIT_USAGE)

    def skipped(where: str) -> None:
        print(f"censorprobe report: skipped {where}", file=sys.stderr)

    rows = report.summarise(archive.read(args.archives, skipped), skipped)
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
                "SEEN FROM",
                "MEASURED",
                "BLOCKED",
                "FIRST BLOCKED",
                "LAST BLOCKED",
                "HOW",
                "NOW",
            ),
        ]
        for r in rows:
            d = r.to_json()
            table.append(
                (
                    r.service,
                    r.country,
                    "abroad" if r.perspective == "remote" else "inside",
                    str(r.measurements),
                    str(r.blocked),
                    d["first_blocked"] or "-",
                    d["last_blocked"] or "-",
                    ",".join(d["methods"]) or "-",
                    r.last_verdict,
                )
            )
        text = columns(table)
    try:
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    except OSError as exc:
        return fail(
            f"cannot write {args.output or 'the output'}: {exc.strerror or exc}", EXIT_USAGE
        )
    return 0
