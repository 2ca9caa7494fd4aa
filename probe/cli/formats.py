"""The output formats of `censorprobe check`, each written as results arrive.

`json` is one document whose `results` list is written one result at a time, `jsonl` one line per
result: neither keeps a result once written, so memory does not grow with the list. `table`,
`junit` and `prometheus` need every result before they can print and keep only a few words of each.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO
from xml.etree import ElementTree as ET

import orjson

from probe.config import Settings
from probe.engine.schedule import unmeasured
from probe.model import Diagnosis, RegimeReport, Result, Target, to_json
from probe.verdict.routes import FAILS, ROUTES, THROUGH, UNSUPPORTED, Route, routes
from probe.vocabulary import Regime, Verdict

FORMATS = ("table", "json", "jsonl", "prometheus", "junit")


@dataclass(frozen=True, slots=True)
class Row:
    """What a table or a JUnit case needs of a result."""

    index: int
    service: str
    url: str
    verdict: Verdict
    blocking: str  # "layer/method" or ""
    summary: str
    explanation: str
    seconds: float
    quic: Diagnosis | None  # the HTTP/3 path's verdict, where the target has one
    ech: Diagnosis | None  # the ECH verdict, where the target has one
    routes: dict[str, Route] | None  # what `check --routes` says, where asked for

    @classmethod
    def of(cls, index: int, r: Result, *, with_routes: bool = False) -> Row:
        d = r.diagnosis
        return cls(
            index,
            r.measurement.target.service,
            r.measurement.target.key,
            d.verdict,
            str(d.blocking) if d.blocking else "",
            d.summary,
            d.explanation,
            r.measurement.timings.get("total", 0.0),
            r.quic,
            r.ech,
            routes(r) if with_routes else None,
        )

    def paths(self) -> list[tuple[str, Diagnosis]]:
        """The target's paths with verdicts of their own: HTTP/3, ECH."""
        named = (("HTTP/3", self.quic), ("ECH", self.ech))
        return [(name, d) for name, d in named if d is not None]


def in_words(d: Diagnosis | None) -> str:
    """A path's verdict in a few words: "blocked quic/timeout, SNI-based", "accessible"…"""
    if d is None:
        return "-"
    return f"{d.verdict} {d.summary}" if d.verdict.is_block else str(d.verdict)


class Output:
    """Receives results as they finish; writes the format to `stream` (`routes`: with what
    `check --routes` says of each target)."""

    def __init__(
        self, stream: BinaryIO, settings: Settings, started: float, *, routes: bool = False
    ) -> None:
        self.stream = stream
        self.settings = settings
        self.started = started
        self.routes = routes

    def line(self, result: Result) -> bytes:
        """The result as one line of JSON, with its routes where asked for."""
        if not self.routes:
            return result.dumps()
        return orjson.dumps({**result.to_json(deep=False), "routes": to_json(routes(result))})

    def write(self, text: str) -> None:
        self.stream.write(text.encode())

    def start(self, regime: RegimeReport | None = None) -> None:
        """Before the first result; `regime`: the vantage's network regime, from its canaries."""
        self.regime = regime

    def add(self, index: int, result: Result) -> None:
        raise NotImplementedError

    def add_unmeasured(self, targets: list[tuple[int, Target]], why: str) -> None:
        """Every target a run ended without measuring (the rest of a long list, at once)."""
        now = time.time()
        for index, target in targets:
            self.add(index, unmeasured(target, why, self.settings, now))

    def finish(self, finished: float, ended: str | None) -> None:
        """After the last result."""


class Unmeasured:
    """The JSON lines of targets that were not measured, from one result rendered as a template:
    a million of them are written when a long list's budget runs out, and each differs from the
    next only in its target's words."""

    SLOTS = ("url", "service", "category", "quic", "clienthello", "host")
    _SLOT = re.compile(rb'"\\u0000(' + b"|".join(s.encode() for s in SLOTS) + rb')"')

    def __init__(self, why: str, settings: Settings) -> None:
        self.why, self.settings, self.now = why, settings, time.time()
        sentinel = Target(**{slot: f"\0{slot}" for slot in self.SLOTS if slot != "host"})
        template = unmeasured(sentinel, why, settings, self.now).to_json(deep=False)
        template["target"] = "\0host"  # derived from the URL
        parts = self._SLOT.split(orjson.dumps(template))
        self.fragments, self.slots = parts[0::2], [p.decode() for p in parts[1::2]]

    def line(self, target: Target) -> bytes:
        if target.remote:  # its country and perspective are its own: rendered in full
            return unmeasured(target, self.why, self.settings, self.now).dumps()
        out = [self.fragments[0]]
        for slot, fragment in zip(self.slots, self.fragments[1:], strict=True):
            out += (orjson.dumps(getattr(target, slot)), fragment)
        return b"".join(out)


class JSONOutput(Output):
    def start(self, regime: RegimeReport | None = None) -> None:
        super().start(regime)
        s = self.settings
        head = {
            "vantage": {"name": s.vantage, "country": s.country},
            "started": self.started,
            "regime": to_json(regime),
        }
        self.write(json.dumps(head)[:-1] + ',\n"results": [\n')
        self.first = True

    def add(self, index: int, result: Result) -> None:
        self.stream.write((b"" if self.first else b",\n") + self.line(result))
        self.first = False

    def add_unmeasured(self, targets: list[tuple[int, Target]], why: str) -> None:
        template = Unmeasured(why, self.settings)
        for _, target in targets:
            self.stream.write((b"" if self.first else b",\n") + template.line(target))
            self.first = False

    def finish(self, finished: float, ended: str | None) -> None:
        tail = json.dumps({"finished": finished, "ended_early": ended})[1:]
        self.write("\n],\n" + tail + "\n")


class JSONLOutput(Output):
    def add(self, index: int, result: Result) -> None:
        self.stream.write(self.line(result) + b"\n")

    def add_unmeasured(self, targets: list[tuple[int, Target]], why: str) -> None:
        template = Unmeasured(why, self.settings)
        for _, target in targets:
            self.stream.write(template.line(target) + b"\n")


class _Collected(Output):
    def start(self, regime: RegimeReport | None = None) -> None:
        super().start(regime)
        self.rows: list[Row] = []

    def add(self, index: int, result: Result) -> None:
        self.rows.append(Row.of(index, result, with_routes=self.routes))

    def ordered(self) -> list[Row]:
        return sorted(self.rows, key=lambda r: r.index)


class TableOutput(_Collected):
    def finish(self, finished: float, ended: str | None) -> None:
        regime = self.regime
        if regime is not None and regime.regime == Regime.OFFLINE:  # one line says it all
            self.write(f"{regime.sentence()}; nothing was reached\n")
            return
        if regime is not None:
            self.write(f"{regime.sentence()}\n\n")
        color = self.stream.isatty() and "NO_COLOR" not in os.environ
        rows = self.ordered()
        self.write(format_routes(rows) if self.routes else format_table(rows, color=color))


class JUnitOutput(_Collected):
    def finish(self, finished: float, ended: str | None) -> None:
        self.write(format_junit(self.ordered(), self.settings))


class PrometheusOutput(Output):
    def start(self, regime: RegimeReport | None = None) -> None:
        from probe.serve.metrics import ResultsCollector  # prometheus_client: only for this

        super().start(regime)
        self.collector = ResultsCollector(self.settings.vantage, self.settings.country)
        self.collector.set_regime(regime)

    def add(self, index: int, result: Result) -> None:
        self.collector.record(result)

    def finish(self, finished: float, ended: str | None) -> None:
        from probe.serve.metrics import render

        self.stream.write(render(self.collector))


OUTPUTS: dict[str, type[Output]] = {
    "json": JSONOutput,
    "jsonl": JSONLOutput,
    "table": TableOutput,
    "junit": JUnitOutput,
    "prometheus": PrometheusOutput,
}


def format_junit(rows: list[Row], settings: Settings) -> str:
    """One test case per URL, and one per HTTP/3 path and ECH path (where the site publishes
    ECH): blocked/throttled fail, inconclusive/down (and a path unsupported or not measured) are
    skipped."""
    suite = ET.Element("testsuite", name=f"censorprobe {settings.vantage} ({settings.country})")
    tests, failures, skipped = len(rows), 0, 0
    for r in rows:
        case = ET.SubElement(
            suite, "testcase", classname=r.service, name=r.url, time=f"{r.seconds:.3f}"
        )
        if r.verdict.is_block:
            failures += 1
            how = f" {r.blocking}" if r.blocking else ""
            ET.SubElement(case, "failure", message=f"{r.verdict}{how}").text = r.explanation
        elif r.verdict != Verdict.ACCESSIBLE:
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{r.verdict}: {r.explanation}")
        for name, d in r.paths():
            if d.verdict == Verdict.UNSUPPORTED and name == "ECH":
                continue  # most sites publish no ECH: a case each would say nothing
            tests += 1  # a path with a verdict of its own is a test case of its own
            case = ET.SubElement(suite, "testcase", classname=r.service, name=f"{r.url} ({name})")
            if d.verdict.is_block:
                failures += 1
                ET.SubElement(
                    case, "failure", message=f"{name} {d.verdict} {d.summary}"
                ).text = d.explanation
            elif d.verdict != Verdict.ACCESSIBLE:
                skipped += 1
                ET.SubElement(case, "skipped", message=f"{name} {d.verdict}: {d.explanation}")
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def format_table(rows: list[Row], color: bool = False) -> str:
    cells = [("SERVICE", "URL", "VERDICT", "LAYER/METHOD", "EVIDENCE", "HTTP/3", "ECH", "TIME")]
    cells += [
        (
            r.service,
            r.url,
            r.verdict,
            r.blocking or "-",
            r.summary,
            in_words(r.quic),
            in_words(r.ech),
            f"{r.seconds:.1f}s",
        )
        for r in rows
    ]
    limits = (18, 44, 12, 26, 44, 36, 24, 7)
    text = columns(cells, limits=limits, color_column=2 if color else None)
    why = [f"{r.url}: {r.explanation}" for r in rows if r.verdict != Verdict.ACCESSIBLE]
    why += [
        f"{r.url} ({name}): {d.explanation}"
        for r in rows
        for name, d in r.paths()
        if d.verdict in (Verdict.BLOCKED, Verdict.DOWN)
    ]
    return text + ("\n" + "\n".join(why) + "\n" if why else "")


def format_routes(rows: list[Row]) -> str:
    """`check --routes`: a matrix of the routes that get through from here, then what each one
    that does not met."""
    cells = [("SERVICE", "URL", *ROUTES.values())]
    notes = []
    for r in rows:
        got = r.routes or {}
        cells.append((r.service, r.url, *(_mark(got.get(k)) for k in ROUTES)))
        notes += [
            f"{r.url} ({title}): {got[k].detail}"
            for k, title in ROUTES.items()
            if k in got and got[k].outcome == FAILS
        ]
    legend = (
        "yes: answered from here; no: fails; n/a: the site does not offer it; -: not measured. "
        "Availability only: censorprobe carries no traffic through any of them."
    )
    text = columns(cells, limits=(18, 44, 7, 7, 7, 7, 7, 7))
    return text + "\n" + "\n".join([*notes, legend]) + "\n"


def _mark(route: Route | None) -> str:
    if route is None:
        return "-"
    return {THROUGH: "yes", FAILS: "no", UNSUPPORTED: "n/a"}.get(route.outcome, "-")


def columns(
    rows: Sequence[Sequence[str]],
    limits: tuple[int, ...] | None = None,
    color_column: int | None = None,
) -> str:
    """Rows as aligned columns; cells clipped to `limits`; one column coloured by verdict."""
    cells = [[_clip(c, limits[i]) if limits else c for i, c in enumerate(row)] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for k, row in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if color_column is not None and k > 0:
            code = Verdict(row[color_column]).style.ansi
            padded[color_column] = f"\033[{code}m{padded[color_column]}\033[0m"
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
