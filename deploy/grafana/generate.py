"""Generates the Grafana dashboards in dashboards/ (run it after editing; a test checks they are
current): `python deploy/grafana/generate.py` (or `--check`).

Verdicts are shown as numbers with value mappings: accessible 1, inconclusive 2, down 3,
throttled 4, blocked 5, so "the worst of a service's URLs" is a `max`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from probe.vocabulary import TARGET_VERDICTS

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "censorprobe-prometheus"}  # provisioned with this uid

# the verdicts by severity, with their colour: one vocabulary for the CLI, the page and here
CODES = {
    v: (v.style.severity, v.style.grafana)
    for v in sorted(TARGET_VERDICTS, key=lambda v: v.style.severity)
}


def verdict_code(by: str, selector: str = "") -> str:
    """The worst verdict as a number, `max by (by)` over the series `selector` picks."""
    return (
        f"max by ({by}) ("
        + " or ".join(
            f'{code} * censorprobe_target_verdict{{{selector}verdict="{v}"}}'
            for v, (code, _) in CODES.items()
        )
        + ")"
    )


# in-country results under their country, remote ones beside them as "CC (from abroad)": a clear
# path seen from abroad is not access in the country, so the two never merge
WHERE = " or ".join(
    f"label_replace({verdict_code('service_name, country', f'perspective={p!r}, ')}, "
    f'"where", "{label}", "country", "(.+)")'
    for p, label in (("", "$1"), ("remote", "$1 (from abroad)"))
).replace("'", '"')
VERDICT_CODE_BY_VANTAGE = verdict_code(
    "service_name, vantage, country, perspective", 'service_name=~"$service", '
)

VERDICT_MAPPINGS = [
    {
        "type": "value",
        "options": {
            str(code): {"text": v, "color": colour, "index": i}
            for i, (v, (code, colour)) in enumerate(CODES.items())
        },
    }
]


BLOCKING_WORDS = (
    "layer/method: where and how the censor acts (docs/vocabulary.md). http/stall: the "
    "response began, then stopped with neither RST nor FIN while the control got it whole (a "
    "freeze). ip_version: set only where one IP family alone is blocked. perspective=remote: "
    "seen from abroad, interference on the path toward the country."
)


REGIME_WORDS = (
    "normal; offline (nothing leaves the machine); shutdown (nothing abroad answers); allowlist "
    "(only listed destinations work: abroad the SYN passes, then nothing); port_reset (every "
    "connection to a port is reset); unknown (mixed evidence). Under a regime, the vantage's "
    "per-target blocks are the regime's: its alert says it once (CensorprobeVantageRegime)."
)
REMOTE_WORDS = (
    'A column "CC (from abroad)" is a remote measurement: a vantage outside the country sent '
    "the target's name toward destinations inside it. It sees only censors that act on traffic "
    "from abroad (the GFW does; Russia's TSPU does not): blocked there is interference on the "
    "path, accessible there is no interference on the path, never access in the country."
)
HTTP3_WORDS = (
    "The HTTP/3 (QUIC) path has its own verdict beside the target's: unsupported where the site "
    "speaks no HTTP/3 anywhere, not_measured where this vantage did not try; a quic/… block says "
    "whether the censor read the SNI in the Initial (the explanation, via /result)."
)
TABLE_OF_LABELS = [
    {"id": "labelsToFields", "options": {"mode": "columns"}},
    {
        "id": "organize",
        "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True}},
    },
]


def target(expr: str, legend: str = "", instant: bool = False, ref: str = "A") -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
        "instant": instant,
        "range": not instant,
    }


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    x: int,
    y: int,
    w: int,
    h: int,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "targets": targets,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        **extra,
    }


def verdict_field(unit: str = "none") -> dict[str, Any]:
    return {
        "defaults": {
            "mappings": VERDICT_MAPPINGS,
            "unit": unit,
            "color": {"mode": "thresholds"},
            "thresholds": {
                "mode": "absolute",
                "steps": [
                    {"color": "green", "value": None},
                    {"color": "text", "value": 2},
                    {"color": "purple", "value": 3},
                    {"color": "orange", "value": 4},
                    {"color": "red", "value": 5},
                ],
            },
            "custom": {"cellOptions": {"type": "color-background"}},
        },
        "overrides": [],
    }


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard(
    uid: str,
    title: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    for i, p in enumerate(panels, 1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "tags": ["censorprobe"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "editable": True,
        "time": {"from": "now-24h", "to": "now"},
        "panels": panels,
        "templating": {"list": variables or []},
        "annotations": {"list": []},
    }


def overview() -> dict[str, Any]:
    return dashboard(
        "censorprobe-overview",
        "censorprobe — overview",
        [
            panel(
                "table",
                "Network regime of each vantage (its canaries, before each round)",
                [target("censorprobe_vantage_regime == 1", instant=True)],
                0,
                0,
                24,
                5,
                description=REGIME_WORDS,
                transformations=TABLE_OF_LABELS,
            ),
            panel(
                "table",
                "Current verdict: services × countries (worst URL); from abroad: the path only",
                [target(WHERE, instant=True)],
                0,
                5,
                24,
                10,
                description=REMOTE_WORDS,
                fieldConfig=verdict_field(),
                transformations=[
                    {
                        "id": "groupingToMatrix",
                        "options": {
                            "columnField": "where",
                            "rowField": "service_name",
                            "valueField": "Value",
                        },
                    }
                ],
            ),
            panel(
                "state-timeline",
                "Verdict over time by service and country",
                [target(WHERE, "{{service_name}} · {{where}}")],
                0,
                15,
                24,
                12,
                fieldConfig=verdict_field(),
                options={"showValue": "never", "mergeValues": True},
            ),
            panel(
                "stat",
                "Blocked or throttled targets by country (in the country)",
                [
                    target(
                        'count by (country) (censorprobe_target_blocking{perspective=""} == 1)',
                        "{{country}}",
                        instant=True,
                    )
                ],
                0,
                27,
                12,
                5,
                fieldConfig={
                    "defaults": {"color": {"mode": "fixed", "fixedColor": "red"}},
                    "overrides": [],
                },
            ),
            panel(
                "table",
                "How they are blocked now",
                [target("censorprobe_target_blocking == 1", instant=True)],
                12,
                27,
                12,
                8,
                description=BLOCKING_WORDS,
                transformations=TABLE_OF_LABELS,
            ),
            panel(
                "stat",
                "HTTP/3 blocked while HTTPS is open, by country",
                [
                    target(
                        "count by (country) (censorprobe_target_quic_blocking == 1 and on "
                        "(service_name, target, vantage, country) "
                        'censorprobe_target_verdict{verdict="accessible"} == 1)',
                        "{{country}}",
                        instant=True,
                    )
                ],
                0,
                32,
                12,
                5,
                description=HTTP3_WORDS,
                fieldConfig={
                    "defaults": {"color": {"mode": "fixed", "fixedColor": "orange"}},
                    "overrides": [],
                },
            ),
        ],
    )


def per_service() -> dict[str, Any]:
    service = variable(
        "service", "label_values(censorprobe_target_verdict, service_name)", "Service"
    )
    return dashboard(
        "censorprobe-service",
        "censorprobe — per service",
        [
            panel(
                "state-timeline",
                "Verdict per vantage ($service)",
                [
                    target(
                        VERDICT_CODE_BY_VANTAGE,
                        "{{service_name}} · {{vantage}} ({{country}}) {{perspective}}",
                    )
                ],
                0,
                0,
                24,
                10,
                fieldConfig=verdict_field(),
                options={"showValue": "never"},
            ),
            panel(
                "state-timeline",
                "Blocking layer/method per vantage ($service)",
                [
                    target(
                        'censorprobe_target_blocking{service_name=~"$service",ip_version=""} == 1',
                        "{{target}} · {{vantage}} ({{country}}): {{layer}}/{{method}}",
                    ),
                    target(
                        'censorprobe_target_blocking{service_name=~"$service",ip_version!=""} == 1',
                        "{{target}} · {{vantage}} ({{country}}): {{layer}}/{{method}} "
                        "(IPv{{ip_version}} only)",
                        ref="B",
                    ),
                ],
                0,
                10,
                24,
                10,
                description=BLOCKING_WORDS,
                options={"showValue": "never"},
            ),
            panel(
                "table",
                "HTTP/3 per service and country ($service)",
                [
                    target(
                        "max by (service_name, country, verdict) "
                        '(censorprobe_target_quic_verdict{service_name=~"$service"} == 1)',
                        instant=True,
                    ),
                    target(
                        "max by (service_name, country, layer, method) "
                        '(censorprobe_target_quic_blocking{service_name=~"$service"} == 1)',
                        instant=True,
                        ref="B",
                    ),
                ],
                0,
                28,
                24,
                8,
                description=HTTP3_WORDS,
                transformations=TABLE_OF_LABELS,
            ),
            panel(
                "timeseries",
                "Throughput ($service)",
                [
                    target(
                        "8 * censorprobe_http_throughput_bytes_per_second"
                        '{service_name=~"$service"}',
                        "{{target}} · {{vantage}}",
                    )
                ],
                0,
                20,
                24,
                8,
                fieldConfig={"defaults": {"unit": "bps"}, "overrides": []},
            ),
        ],
        [service],
    )


def vantage_health() -> dict[str, Any]:
    return dashboard(
        "censorprobe-vantages",
        "censorprobe — vantage health",
        [
            panel(
                "timeseries",
                "Age of the newest measurement",
                [
                    target(
                        "time() - max by (vantage, country) "
                        "(censorprobe_last_measurement_timestamp_seconds)",
                        "{{vantage}} ({{country}})",
                    )
                ],
                0,
                0,
                12,
                8,
                fieldConfig={"defaults": {"unit": "s"}, "overrides": []},
            ),
            panel(
                "state-timeline",
                "Scrape health (up)",
                [target('up{job=~"censorprobe.*"}', "{{instance}}")],
                12,
                0,
                12,
                8,
            ),
            panel(
                "timeseries",
                "Measurements per second by verdict",
                [
                    target(
                        "sum by (vantage, verdict) "
                        "(rate(censorprobe_measurements_total[$__rate_interval]))",
                        "{{vantage}} {{verdict}}",
                    )
                ],
                0,
                8,
                12,
                8,
            ),
            panel(
                "timeseries",
                "Step duration, 90th percentile",
                [
                    target(
                        "histogram_quantile(0.9, sum by (le, step) "
                        "(rate(censorprobe_step_duration_seconds_bucket[$__rate_interval])))",
                        "{{step}}",
                    )
                ],
                12,
                8,
                12,
                8,
                fieldConfig={"defaults": {"unit": "s"}, "overrides": []},
            ),
            panel(
                "timeseries",
                "Control helper answers",
                [
                    target(
                        "sum by (vantage, outcome) "
                        "(rate(censorprobe_control_requests_total[$__rate_interval]))",
                        "{{vantage}} {{outcome}}",
                    )
                ],
                0,
                16,
                12,
                8,
            ),
            panel(
                "table",
                "Vantages",
                [target("censorprobe_build_info", instant=True)],
                12,
                16,
                12,
                8,
                transformations=[{"id": "labelsToFields", "options": {"mode": "columns"}}],
            ),
        ],
    )


def throughput() -> dict[str, Any]:
    service = variable(
        "service",
        "label_values(censorprobe_http_throughput_bytes_per_second, service_name)",
        "Service",
    )
    return dashboard(
        "censorprobe-throughput",
        "censorprobe — throughput (throttling)",
        [
            panel(
                "timeseries",
                "Download throughput by service and country",
                [
                    target(
                        "8 * max by (service_name, country) "
                        '(censorprobe_http_throughput_bytes_per_second{service_name=~"$service"})',
                        "{{service_name}} · {{country}}",
                    )
                ],
                0,
                0,
                24,
                10,
                fieldConfig={"defaults": {"unit": "bps"}, "overrides": []},
            ),
            panel(
                "table",
                "Throttled now",
                [target('censorprobe_target_blocking{method="throttled"} == 1', instant=True)],
                0,
                10,
                24,
                6,
                transformations=[{"id": "labelsToFields", "options": {"mode": "columns"}}],
            ),
        ],
        [service],
    )


DASHBOARDS = {
    "overview.json": overview,
    "per-service.json": per_service,
    "vantage-health.json": vantage_health,
    "throughput.json": throughput,
}


def render() -> dict[str, str]:
    return {
        name: json.dumps(make(), indent=2, ensure_ascii=False) + "\n"
        for name, make in DASHBOARDS.items()
    }


def main() -> int:
    files = render()
    if "--check" in sys.argv:
        stale = [
            n
            for n, text in files.items()
            if not (OUT / n).exists() or (OUT / n).read_text() != text
        ]
        if stale:
            print(f"dashboards out of date: {', '.join(stale)}: run python {Path(__file__).name}")
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
