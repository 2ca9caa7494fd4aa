"""OONI's fingerprint files (fingerprints_http.csv, fingerprints_dns.csv) as users point
`settings.fingerprints` at them: every location and pattern type of the format, and the rows the
format marks as known false positives."""

from __future__ import annotations

from probe.model import HTTPHop, HTTPObservation
from probe.verdict.fingerprints import match_dns, match_http, parse_csv
from tests.formats import ooni_fingerprints

ROWS = [
    {
        "name": "ooni.xx_server",
        "scope": "nat",
        "location_found": "header.server",
        "pattern_type": "prefix",
        "pattern": "Protected by ExampleFilter",
        "expected_countries": "XA,XB",
    },
    {
        "name": "ooni.xx_redirect",
        "scope": "isp",
        "location_found": "header.location",
        "pattern_type": "prefix",
        "pattern": "http://blocked.example/",
    },
    {
        "name": "ooni.xx_body",
        "scope": "isp",
        "location_found": "body",
        "pattern_type": "contains",
        "pattern": 'access to this site, "by order", is restricted',
    },
    {
        "name": "ooni.xx_regexp",
        "scope": "nat",
        "location_found": "body",
        "pattern_type": "regexp",
        "pattern": r"<title>Blocked \(case \d+\)</title>",
    },
    {
        "name": "ooni.xx_dns",
        "scope": "nat",
        "location_found": "dns",
        "pattern_type": "full",
        "pattern": "198.51.100.66",
    },
    {
        "name": "ooni.xx_too_broad",
        "scope": "fp",  # known to match honest pages: never used
        "location_found": "body",
        "pattern_type": "contains",
        "pattern": "restricted",
    },
]


def page(**kw: object) -> HTTPObservation:
    return HTTPObservation("http://site.example/", 0.1, status=200, **kw)  # type: ignore[arg-type]


def test_every_location_and_pattern_type_of_the_format_matches() -> None:
    fps = parse_csv(ooni_fingerprints(ROWS), "fingerprints_http.csv")
    assert [fp.name for fp in fps] == [r["name"] for r in ROWS]
    assert fps[0].countries == "XA,XB" and fps[0].source == "fingerprints_http.csv"

    def names(h: HTTPObservation) -> list[str]:
        return [fp.name for fp, _ in match_http(fps, h)]

    assert names(page(headers={"server": "Protected by ExampleFilter 2.1"})) == ["ooni.xx_server"]
    redirected = page(hops=(HTTPHop("http://site.example/", 302, "http://blocked.example/?x"),))
    assert names(redirected) == ["ooni.xx_redirect"]
    quoted = page(body_sample='<p>Access to this site, "by order", is restricted</p>')
    assert names(quoted) == []  # `contains` is exact: another case is another text
    assert names(page(body_sample='access to this site, "by order", is restricted')) == [
        "ooni.xx_body"
    ]
    assert names(page(body_sample="<title>Blocked (case 42)</title>")) == ["ooni.xx_regexp"]
    assert names(page(body_sample="an honest page that is restricted to members")) == []
    assert match_dns(fps, "198.51.100.66") is fps[4]
    assert match_dns(fps, "198.51.100.67") is None
