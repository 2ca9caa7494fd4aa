"""The ECH verdict, what the ClientHello variants say of a target's verdict, and the routes of
`check --routes`: table-driven, from observations (no sockets)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from probe.model import (
    Diagnosis,
    DNSObservation,
    HelloObservation,
    HelloPath,
    HTTPSRecordObservation,
    Measurement,
    PublishedECH,
    Result,
)
from probe.verdict.hello import judge_ech, what_variants_say
from probe.verdict.routes import routes
from probe.vocabulary import Failure, Verdict
from tests.unit.test_verdict import HTTP_T, T, m, page, system, tcp, tls

F = Failure
ADDRESS = "192.0.2.10"
HOST = T.host
COVER = PublishedECH("cloudflare-ech.com", 7, 1, 1)
PUBLISHED = (HTTPSRecordObservation("8.8.8.8", 0.01, "NOERROR", 1, (COVER,)),)
NONE_PUBLISHED = (HTTPSRecordObservation("8.8.8.8", 0.01, "NOERROR", 0),)
UNANSWERED = (HTTPSRecordObservation("8.8.8.8", 2.0, failure=F.TIMEOUT, error="no reply"),)


def seen(variant: str, failure: Failure | None = None, connected: bool = True) -> HelloObservation:
    sni = COVER.public_name if variant in ("ech", "ech_outer") else HOST
    sni = "example.com" if variant == "harmless" else sni
    answer = "ServerHello" if failure is None else str(failure)
    return HelloObservation(variant, ADDRESS, 443, sni, 0.05, 500, failure, answer, connected)


def path(tried: str = "ech", **outcomes: Failure | None) -> HelloPath:
    return HelloPath(tried, None, ADDRESS, 443, tuple(seen(v, f) for v, f in outcomes.items()))


def measured(hello: HelloPath | None, records: tuple[HTTPSRecordObservation, ...]) -> Measurement:
    return replace(
        m([system(ADDRESS)], [tcp(ADDRESS)], [tls(ADDRESS)]), hello=hello, https_records=records
    )


ECH_ROWS = [
    # (id, hello path, HTTPS records, the target's verdict, ECH verdict, blocking, words)
    ("answered", path(ech=None, ech_outer=None), PUBLISHED, Verdict.ACCESSIBLE, "accessible", None,
     "outer name cloudflare-ech.com, config id 7"),
    ("TSPU: ECH held silent, the same without ECH answered",
     path(ech=F.TIMEOUT, ech_outer=None), PUBLISHED, Verdict.ACCESSIBLE, "blocked", "tls/timeout",
     "the ECH extension is what is blocked"),
    ("ECH reset, the same without ECH answered", path(ech=F.RESET, ech_outer=None), PUBLISHED,
     Verdict.ACCESSIBLE, "blocked", "tls/reset", "without ECH is answered (ServerHello)"),
    ("both fail: the outer name or the address, not ECH", path(ech=F.RESET, ech_outer=F.RESET),
     PUBLISHED, Verdict.BLOCKED, "inconclusive", None, "not ECH alone"),
    ("both fail where the site is down", path(ech=F.TIMEOUT, ech_outer=F.TIMEOUT), PUBLISHED,
     Verdict.DOWN, "down", None, "the site is down"),
    ("no ECH published", path("failed", baseline=F.RESET), NONE_PUBLISHED, Verdict.BLOCKED,
     "unsupported", None, "publishes no ECH configuration (its HTTPS record, from 8.8.8.8)"),
    ("no resolver answered the HTTPS query", HelloPath(skipped="its TLS handshake was answered "
     "and no ECH configuration was found"), UNANSWERED,
     Verdict.ACCESSIBLE, "not_measured", None, "no resolver answered the query for its HTTPS "
     "record (8.8.8.8: timeout, no reply)"),
    ("variants not sent: the regime", HelloPath(skipped="the vantage's network regime is "
     "shutdown, not normal"), PUBLISHED, Verdict.BLOCKED, "not_measured", None, "regime"),
    ("clienthello: never asks nothing", HelloPath(skipped="clienthello: never"), (),
     Verdict.ACCESSIBLE, "not_measured", None, "clienthello: never"),
    ("published, but the ECH variants missing", path("ech", baseline=None), PUBLISHED,
     Verdict.ACCESSIBLE, "not_measured", None, "were not sent"),
    ("published, the ECH ClientHello without its pair", path("ech", ech=F.RESET), PUBLISHED,
     Verdict.ACCESSIBLE, "not_measured", None, "were not sent"),
    ("published, the pair without the ECH ClientHello", path("ech", ech_outer=None), PUBLISHED,
     Verdict.ACCESSIBLE, "not_measured", None, "were not sent"),
    ("variants sent, no HTTPS record asked (an address)", path("failed", baseline=F.RESET), (),
     Verdict.BLOCKED, "not_measured", None, "its HTTPS record was not asked"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("hello", "records", "target", "verdict", "blocking", "words"),
    [r[1:] for r in ECH_ROWS],
    ids=[r[0] for r in ECH_ROWS],
)
def test_ech_verdict(
    hello: HelloPath,
    records: tuple[HTTPSRecordObservation, ...],
    target: Verdict,
    verdict: str,
    blocking: str | None,
    words: str,
) -> None:
    d = judge_ech(measured(hello, records), target)
    assert d is not None
    assert (d.verdict, str(d.blocking) if d.blocking else None) == (verdict, blocking), d
    assert words in d.explanation


def test_a_target_without_variants_has_no_ech_verdict() -> None:
    assert judge_ech(measured(None, PUBLISHED), Verdict.ACCESSIBLE) is None


def test_a_failed_connect_for_ech_is_not_an_ech_block() -> None:
    hello = HelloPath(
        "ech", None, ADDRESS, 443, (seen("ech", F.REFUSED, connected=False), seen("ech_outer"))
    )
    d = judge_ech(measured(hello, PUBLISHED), Verdict.ACCESSIBLE)
    assert d is not None and d.verdict == "inconclusive"


EVERY = dict.fromkeys(("baseline", "harmless", "pq", "ech_grease", "split_record", "split_segment"))

SAY_ROWS = [
    ("the reset follows the name", {**EVERY, "baseline": F.RESET, "pq": F.RESET,
     "ech_grease": F.RESET, "split_record": F.RESET, "split_segment": F.RESET},
     ["the reset follows the name", "the harmless name example.com is answered"],
     ["yet one"]),
    ("a timeout follows the name", {**EVERY, "baseline": F.TIMEOUT, "pq": F.TIMEOUT,
     "ech_grease": F.TIMEOUT, "split_record": F.TIMEOUT, "split_segment": F.TIMEOUT},
     ["the failure follows the name"], ["reset follows"]),
    ("a DPI that does not reassemble", {**EVERY, "baseline": F.RESET, "pq": F.RESET,
     "ech_grease": F.RESET},
     ["the reset follows the name", "split into two TLS records and one split into two TCP "
      "segments inside the SNI gets through: the censor does not reassemble"], []),
    ("the address, not the name", {**EVERY, "baseline": F.TIMEOUT, "harmless": F.TIMEOUT},
     ["every variant fails", "the address is blocked, not the name"], []),
    ("only ClientHellos larger than one packet", {**EVERY, "pq": F.TIMEOUT},
     ["is answered (ServerHello), but not one with a post-quantum key share (larger than one "
      "packet): timeout", "the censor reads the ClientHello's shape"], ["follows the name"]),
    ("GREASE ECH alone dropped", {**EVERY, "ech_grease": F.RESET},
     ["not one with a GREASE ECH extension: reset"], []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("outcomes", "words", "not_words"),
    [r[1:] for r in SAY_ROWS],
    ids=[r[0] for r in SAY_ROWS],
)
def test_what_the_variants_say(
    outcomes: dict[str, Failure | None], words: list[str], not_words: list[str]
) -> None:
    said = what_variants_say(path("failed", **outcomes), HOST)
    assert said is not None
    for w in words:
        assert w in said
    for w in not_words:
        assert w not in said


@pytest.mark.parametrize(
    "hello",
    [
        None,
        HelloPath(skipped="clienthello: never"),
        path("ech", ech=F.TIMEOUT, ech_outer=None),  # ECH's verdict says it
        path("always", **EVERY),  # every variant answered: nothing to say
        path("failed", baseline=F.RESET),  # no harmless name to compare with
        path("failed", harmless=None),  # no baseline to compare with
        path("always", **EVERY, ech=F.TIMEOUT, ech_outer=None),  # ECH's own verdict says it
    ],
)
def test_variants_that_tell_nothing_say_nothing(hello: HelloPath | None) -> None:
    assert what_variants_say(hello, HOST) is None


def result(mm: Measurement, ech: Diagnosis | None = None, quic: Diagnosis | None = None) -> Result:
    d = Diagnosis(Verdict.ACCESSIBLE, None, "", "HTTP 200")
    return Result(mm, d, quic=quic, ech=ech)


def test_routes_from_a_result_with_every_variant() -> None:
    hello = path("always", **{**EVERY, "pq": F.TIMEOUT, "split_record": F.RESET})
    doh = DNSObservation("https://dns.example/dns-query", "doh", "A", 0.1, "NOERROR", (ADDRESS,))
    mm = replace(measured(hello, PUBLISHED), dns=(system(ADDRESS), doh), http=page())
    ech = Diagnosis(Verdict.BLOCKED, None, "ECH blocked: …", "tls/timeout")
    quic = Diagnosis(Verdict.UNSUPPORTED, None, "HTTP/3: …", "no HTTP/3 advertised")
    got = {k: (r.outcome, r.detail) for k, r in routes(result(mm, ech, quic)).items()}
    assert got == {
        "tls": ("through", f"handshake with {ADDRESS}"),
        "tls_pq": ("fails", "pq: timeout"),
        "ech": ("fails", "blocked tls/timeout"),
        "split": ("through", "split_segment: ServerHello"),
        "http3": ("unsupported", "no HTTP/3 advertised"),
        "doh": ("through", "https://dns.example/dns-query answered"),
    }


def test_routes_where_nothing_was_tried() -> None:
    failed = replace(
        m([system(ADDRESS)], [tcp(ADDRESS, failure="timeout")]), hello=HelloPath(skipped="x")
    )
    summary = Diagnosis(Verdict.BLOCKED, None, "", "TCP timeout; control connects")
    seen = routes(replace(result(failed), diagnosis=summary))
    assert (seen["tls"].detail, seen["tls_pq"].detail) == ("TCP timeout; control connects", "x")
    got = {k: r.outcome for k, r in seen.items()}
    assert got == {
        "tls": "fails",
        "tls_pq": "not_measured",
        "ech": "not_measured",
        "split": "not_measured",
        "http3": "not_measured",
        "doh": "not_measured",
    }
    doh = DNSObservation("https://dns.example/dns-query", "doh", "A", 2.0, failure=F.TIMEOUT)
    plain = m([doh], target=HTTP_T)
    got = {k: r.outcome for k, r in routes(result(plain)).items()}
    assert got["tls"] == "not_measured" and got["doh"] == "fails"


def test_routes_where_no_variant_went_and_a_path_was_not_measured() -> None:
    not_measured = Diagnosis(Verdict.NOT_MEASURED, None, "ECH not measured: x", "not measured")
    seen = routes(result(measured(None, ()), ech=not_measured, quic=not_measured))
    assert (seen["tls_pq"].outcome, seen["tls_pq"].detail) == ("not_measured", "not sent")
    assert seen["ech"].outcome == seen["http3"].outcome == "not_measured"


def test_routes_of_a_reset_handshake_and_an_answered_http3() -> None:
    reset = replace(measured(None, ()), tls=(tls(ADDRESS, failure="reset"),))
    quic = Diagnosis(Verdict.ACCESSIBLE, None, "HTTP/3 200", "HTTP/3 200 'News'")
    seen = routes(result(reset, quic=quic))
    assert (seen["tls"].outcome, seen["tls"].detail) == ("fails", "TLS reset")
    assert (seen["http3"].outcome, seen["http3"].detail) == ("through", "HTTP/3 200 'News'")


def test_routes_where_only_the_ech_variants_went() -> None:
    seen = routes(result(measured(path("ech", ech=None, ech_outer=None), PUBLISHED)))
    assert (seen["tls_pq"].outcome, seen["tls_pq"].detail) == ("not_measured", "not sent")
    assert (seen["split"].outcome, seen["split"].detail) == ("not_measured", "not sent")
