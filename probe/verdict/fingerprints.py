"""Blockpage fingerprints in OONI's CSV format, plus a small built-in set.

Columns: `name,scope,other_names,location_found,pattern_type,pattern,...`. `location_found` is
`body`, `header.<name>` or `dns`; `pattern_type` is `full`, `prefix`, `contains` or `regexp`;
scope `fp` marks patterns known to match honest pages, which are never used.
Parsing and matching are pure; the runtime reads the files and fetches the URLs.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from probe.model import HTTPObservation

PATTERN_TYPES = ("full", "prefix", "contains", "regexp")


@dataclass(frozen=True)
class Fingerprint:
    name: str
    location: str  # "body", "header.<name>" or "dns"
    pattern_type: str
    pattern: str
    scope: str = ""
    countries: str = ""
    source: str = "built-in"  # the file or URL it came from, to report a false positive upstream

    @property
    def label(self) -> str:
        return f"{self.name} ({self.source})"

    @cached_property
    def _regexp(self) -> re.Pattern[str] | None:
        return re.compile(self.pattern) if self.pattern_type == "regexp" else None

    def matches(self, text: str) -> bool:
        if self.pattern_type == "full":
            return text == self.pattern
        if self.pattern_type == "prefix":
            return text.startswith(self.pattern)
        if self.pattern_type == "contains":
            return self.pattern in text
        assert self._regexp is not None
        return self._regexp.search(text) is not None


# Well-known blockpages, written from public reports of each (OONI's full list is richer: point
# `settings.fingerprints` at its fingerprints_http.csv and fingerprints_dns.csv).
BUILTIN = (
    Fingerprint(
        "builtin.ru_rostelecom_warning",
        "header.location",
        "prefix",
        "http://warning.rt.ru",
        countries="RU",
    ),
    Fingerprint(
        "builtin.ru_rostelecom_block",
        "header.location",
        "prefix",
        "http://block.rt.ru",
        countries="RU",
    ),
    Fingerprint(
        "builtin.ru_mts", "header.location", "prefix", "http://blocked.mts.ru", countries="RU"
    ),
    Fingerprint(
        "builtin.ru_ttk", "header.location", "prefix", "http://fz139.ttk.ru", countries="RU"
    ),
    Fingerprint(
        "builtin.ru_rkn_registry", "body", "contains", "http://eais.rkn.gov.ru/", countries="RU"
    ),
    Fingerprint(  # the words most Russian ISPs' blockpages open with
        "builtin.ru_access_restricted",
        "body",
        "contains",
        "Доступ к информационному ресурсу ограничен",
        countries="RU",
    ),
    Fingerprint(
        "builtin.ir_peyvandha", "body", "contains", 'src="http://10.10.34.3', countries="IR"
    ),
    Fingerprint(
        "builtin.tr_btk",
        "body",
        "contains",
        "<title>Telekomünikasyon İletişim Başkanlığı</title>",
        countries="TR",
    ),
    Fingerprint(
        "builtin.id_internet_positif",
        "header.location",
        "prefix",
        "http://internet-positif.info",
        countries="ID",
    ),
    Fingerprint("builtin.kr_warning", "body", "contains", "http://warning.or.kr", countries="KR"),
)


def parse_csv(text: str, source: str) -> tuple[Fingerprint, ...]:
    """Parse OONI's format; raises ValueError naming the source, line and column."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    needed = {"name", "scope", "location_found", "pattern_type", "pattern"}
    try:
        header = set(reader.fieldnames or ())
    except csv.Error as exc:
        raise ValueError(f"{source}:1: {exc}") from None
    missing = needed - header
    if missing:
        raise ValueError(f"{source}:1: missing column(s) {', '.join(sorted(missing))}")
    out = []
    try:
        for row in reader:
            line = reader.line_num
            where = f"{source}:{line}"
            location = (row.get("location_found") or "").strip()
            ptype = (row.get("pattern_type") or "").strip()
            pattern = row.get("pattern") or ""
            if not (location in ("body", "dns") or location.startswith("header.")):
                raise ValueError(
                    f"{where}: location_found: {location!r} is not body, dns or header.<name>"
                )
            if ptype not in PATTERN_TYPES:
                raise ValueError(
                    f"{where}: pattern_type: {ptype!r} is not one of {', '.join(PATTERN_TYPES)}"
                )
            if not pattern:
                raise ValueError(f"{where}: pattern: empty")
            fp = Fingerprint(
                (row.get("name") or "").strip() or f"{source}:{line}",
                location.lower(),
                ptype,
                pattern,
                (row.get("scope") or "").strip(),
                (row.get("expected_countries") or "").strip(),
                source,
            )
            if ptype == "regexp":
                try:
                    fp.matches("")
                except re.error as exc:
                    raise ValueError(f"{where}: pattern: bad regexp: {exc}") from None
            out.append(fp)
    except csv.Error as exc:
        raise ValueError(f"{source}:{reader.line_num}: {exc}") from None
    return tuple(out)


def match_http(
    fingerprints: Iterable[Fingerprint], h: HTTPObservation
) -> Iterator[tuple[Fingerprint, str]]:
    """Every fingerprint that matches the page or a redirect on the way, and where."""
    for fp in fingerprints:
        if fp.scope == "fp" or fp.location == "dns":
            continue
        if fp.location == "body":
            if h.body_sample and fp.matches(h.body_sample):
                yield fp, "body"
            continue
        header = fp.location.removeprefix("header.")
        values = [hop.location for hop in h.hops if header == "location" and hop.location]
        if header in h.headers:
            values.append(h.headers[header])
        where = next((v for v in values if fp.matches(v)), None)
        if where is not None:
            yield fp, f"{header}: {where[:80]}"


def match_dns(fingerprints: Iterable[Fingerprint], address: str) -> Fingerprint | None:
    for fp in fingerprints:
        if fp.location == "dns" and fp.scope != "fp" and fp.matches(address):
            return fp
    return None
