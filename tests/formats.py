"""Fixtures in the public formats the probe reads: Citizen Lab test lists and OONI's blockpage
fingerprints. Written here, small and synthetic, instead of copying the real files (the lists are
CC BY-NC-SA, the fingerprints carry no licence): the same columns, quoting and oddities."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

CITIZEN_LAB_COLUMNS = (
    "url",
    "category_code",
    "category_description",
    "date_added",
    "source",
    "notes",
)
OONI_FINGERPRINT_COLUMNS = (
    "name",
    "scope",
    "other_names",
    "location_found",
    "pattern_type",
    "pattern",
    "confidence_no_fp",
    "expected_countries",
    "source",
    "exp_url",
    "notes",
)
CATEGORIES = {
    "GRP": "Social Networking",
    "NEWS": "News Media",
    "HUMR": "Human Rights Issues",
    "ANON": "Anonymization and circumvention tools",
}


def _csv(columns: Iterable[str], rows: Iterable[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def citizen_lab_list(urls: Iterable[tuple[str, str]]) -> str:
    """A test list of (url, category_code) rows, with the description, date, source and the
    notes (commas, quotes, blank) that real lists carry."""
    rows = [
        {
            "url": url,
            "category_code": code,
            "category_description": CATEGORIES.get(code, "Miscellaneous"),
            "date_added": "2021-02-08",
            "source": "censorprobe-tests",
            "notes": 'Added after "reports", see issue 1, 2' if i % 3 == 0 else "",
        }
        for i, (url, code) in enumerate(urls)
    ]
    return _csv(CITIZEN_LAB_COLUMNS, rows)


def global_list(n: int) -> str:
    """A list shaped like the global one: Clubhouse's four URLs among `n` others."""
    clubhouse = [
        ("https://www.joinclubhouse.com/", "GRP"),
        ("https://www.clubhouseapi.com/", "GRP"),
        ("https://clubhouse.pubnub.com/", "GRP"),
        ("https://www.clubhouse.com/", "GRP"),
    ]
    codes = list(CATEGORIES)
    others = [
        (f"{'https' if i % 2 else 'http'}://site{i}.example/path/{i}", codes[i % len(codes)])
        for i in range(n)
    ]
    return citizen_lab_list(others[: n // 2] + clubhouse + others[n // 2 :])


def ooni_fingerprints(rows: Iterable[dict[str, str]]) -> str:
    """OONI's fingerprints_http.csv / fingerprints_dns.csv format; unnamed columns are empty."""
    return _csv(OONI_FINGERPRINT_COLUMNS, rows)
