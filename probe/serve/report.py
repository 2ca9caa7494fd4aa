"""`censorprobe report`: what an evidence archive says, per service, country and perspective
(in the country, or from abroad)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from probe.vocabulary import Verdict


@dataclass
class Row:
    service: str
    country: str
    perspective: str = "local"  # or "remote": measured from abroad (a clear path, not access)
    measurements: int = 0
    blocked: int = 0  # blocked or throttled
    first_blocked: float | None = None
    last_blocked: float | None = None
    last_verdict: str = ""
    last_measured: float = 0.0
    methods: set[str] = field(default_factory=set)
    vantages: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "country": self.country,
            "measurements": self.measurements,
            "blocked": self.blocked,
            "first_blocked": _iso(self.first_blocked),
            "last_blocked": _iso(self.last_blocked),
            "last_verdict": self.last_verdict,
            "last_measured": _iso(self.last_measured),
            "methods": sorted(self.methods),
            "vantages": sorted(self.vantages),
            "perspective": self.perspective,  # last: an added column (CSV readers by position)
        }


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def _blocks(verdict: Any) -> bool:
    try:
        return Verdict(verdict).is_block
    except ValueError:
        return False


def summarise(
    records: Iterable[dict[str, Any]], skipped: Callable[[str], None] | None = None
) -> list[Row]:
    """One row per (service, country, perspective), ordered by service, in-country rows before
    remote ones; a record without a plausible time is skipped (and `skipped` told where)."""
    rows: dict[tuple[str, str, str], Row] = {}
    for r in records:
        when = r.get("finished") or r.get("started") or 0.0
        if isinstance(when, bool) or not isinstance(when, (int, float)) or not 0 <= when < 1e11:
            if skipped is not None:
                skipped(f"{r.get('_where', '?')}: no plausible 'finished' time ({when!r:.40})")
            continue
        service, country = str(r.get("service", "?")), str(r.get("country", "") or "?")
        perspective = "remote" if r.get("perspective") == "remote" else "local"
        key = (service, country, perspective)
        row = rows.setdefault(key, Row(*key))
        row.measurements += 1
        row.vantages.add(str(r.get("vantage", "") or "?"))
        if when >= row.last_measured:
            row.last_measured, row.last_verdict = float(when), str(r.get("verdict", "?"))
        if _blocks(r.get("verdict")):
            row.blocked += 1
            row.first_blocked = min(row.first_blocked or when, when)
            row.last_blocked = max(row.last_blocked or when, when)
            blocking = r.get("blocking")
            if isinstance(blocking, dict):
                row.methods.add(f"{blocking.get('layer')}/{blocking.get('method')}")
    return sorted(rows.values(), key=lambda row: (row.service, row.country, row.perspective))
