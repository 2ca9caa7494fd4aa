"""A vantage's network regime from its canaries, as a table: every rule, and the boundaries
where one regime turns into another (one canary answered, one on another port, none inside)."""

from __future__ import annotations

import pytest

from probe.model import (
    DNSObservation,
    HTTPObservation,
    Measurement,
    Target,
    TCPObservation,
    TLSObservation,
)
from probe.verdict.regime import Canary, answered, confirmed, judge_regime
from probe.vocabulary import Failure, Regime

F = Failure
ADDRESS = "198.51.100.10"


def canary(url: str, side: str, outcome: str) -> Canary:
    """A canary's measurement that came to `outcome`: answered, no_route, nxdomain,
    dns_timeout, syn (unanswered), refused, tls_timeout, tls_reset, http_timeout, http_reset."""
    t = Target.parse(url)
    port = t.port
    dns_ok = (DNSObservation("system", "system", "A+AAAA", 0.01, "NOERROR", (ADDRESS,)),)
    if outcome == "no_route":
        dns = (DNSObservation("system", "system", "A+AAAA", 0.0, failure=F.UNREACHABLE),)
        return Canary(side, Measurement(t, 0.0, dns))
    if outcome in ("nxdomain", "dns_timeout"):
        failure = F.NXDOMAIN if outcome == "nxdomain" else F.TIMEOUT
        dns = (DNSObservation("system", "system", "A+AAAA", 2.0, failure=failure),)
        return Canary(side, Measurement(t, 0.0, dns))
    tcp_failure = {"syn": F.TIMEOUT, "refused": F.REFUSED, "tcp_unreachable": F.UNREACHABLE}
    if outcome in tcp_failure:
        tcp = (TCPObservation(ADDRESS, port, 3.0, tcp_failure[outcome]),)
        return Canary(side, Measurement(t, 0.0, dns_ok, tcp))
    tcp = (TCPObservation(ADDRESS, port, 0.01),)
    https = t.scheme == "https"
    tls_failure = {"tls_timeout": F.TIMEOUT, "tls_reset": F.RESET}.get(outcome)
    tls = (TLSObservation(ADDRESS, port, t.host, 0.02, tls_failure),) if https else ()
    if tls_failure is not None:
        return Canary(side, Measurement(t, 0.0, dns_ok, tcp, tls))
    if outcome in ("http_timeout", "http_reset"):
        failure = F.TIMEOUT if outcome == "http_timeout" else F.RESET
        http = HTTPObservation(t.url, 3.0, failure, "no byte", address=ADDRESS)
    else:
        assert outcome == "answered", outcome
        http = HTTPObservation(t.url, 0.1, status=200, address=ADDRESS)
    return Canary(side, Measurement(t, 0.0, dns_ok, tcp, tls, http=http))


GOV = "https://gov.example.ru/"
BANK = "https://bank.example.ru/"
NEUTRAL = "https://example.com/"
NEUTRAL_80 = "http://example.com/"
HELPER = "https://control.example.org/healthz"

ROWS = [
    # (id, canaries as (url, side, outcome), regime, words)
    (
        "everything answers",
        [(GOV, "inside", "answered"), (NEUTRAL, "abroad", "answered")],
        Regime.NORMAL,
        "destinations abroad answer",
    ),
    (
        "one canary abroad answering is enough for normal (the others are that site's trouble)",
        [(NEUTRAL, "abroad", "syn"), (HELPER, "abroad", "answered")],
        Regime.NORMAL,
        "abroad answer",
    ),
    (
        "no route, no resolver, for every canary: offline",
        [(GOV, "inside", "no_route"), (NEUTRAL, "abroad", "no_route")],
        Regime.OFFLINE,
        "nothing can leave this machine",
    ),
    (
        "a connect with no route counts as no route too",
        [(GOV, "inside", "tcp_unreachable"), (NEUTRAL, "abroad", "no_route")],
        Regime.OFFLINE,
        "no route",
    ),
    (
        "one canary with a route is not offline",
        [(GOV, "inside", "answered"), (NEUTRAL, "abroad", "no_route")],
        Regime.UNKNOWN,
        "mixed",
    ),
    (
        "inside answers, abroad the SYN passes and the ClientHello hangs: allowlist",
        [
            (GOV, "inside", "answered"),
            (BANK, "inside", "syn"),
            (NEUTRAL, "abroad", "tls_timeout"),
            (NEUTRAL_80, "abroad", "http_timeout"),
        ],
        Regime.ALLOWLIST,
        "only listed destinations work",
    ),
    (
        "abroad hangs after connecting, but nothing inside answers: no allowlist told",
        [(GOV, "inside", "syn"), (NEUTRAL, "abroad", "tls_timeout")],
        Regime.UNKNOWN,
        "mixed",
    ),
    (
        "abroad hangs after connecting, no inside canary: allowlist cannot be told",
        [(NEUTRAL, "abroad", "tls_timeout"), (HELPER, "abroad", "tls_timeout")],
        Regime.UNKNOWN,
        "mixed",
    ),
    (
        "nothing abroad answers at any layer, inside works: shutdown",
        [
            (GOV, "inside", "answered"),
            (NEUTRAL, "abroad", "syn"),
            (HELPER, "abroad", "dns_timeout"),
        ],
        Regime.SHUTDOWN,
        "nothing abroad answers at any layer",
    ),
    (
        "nothing answers anywhere, routes exist: shutdown",
        [(GOV, "inside", "syn"), (NEUTRAL, "abroad", "syn")],
        Regime.SHUTDOWN,
        "SYNs go unanswered",
    ),
    (
        "a name abroad that does not exist proves nothing of a shutdown",
        [(NEUTRAL, "abroad", "nxdomain"), (HELPER, "abroad", "syn")],
        Regime.SHUTDOWN,
        "names do not resolve",
    ),
    (
        "some abroad hang, some go unanswered: mixed",
        [
            (GOV, "inside", "answered"),
            (NEUTRAL, "abroad", "tls_timeout"),
            (HELPER, "abroad", "syn"),
        ],
        Regime.UNKNOWN,
        "mixed",
    ),
    (
        "every connection to 443 abroad is reset, port 80 answers: port_reset",
        [
            (NEUTRAL, "abroad", "refused"),
            (HELPER, "abroad", "tls_reset"),
            (NEUTRAL_80, "abroad", "answered"),
        ],
        Regime.PORT_RESET,
        "every connection to port 443 abroad is reset, whatever its name, while port 80 answers",
    ),
    (
        "a reset after the handshake is a reset too (the request, not the ClientHello)",
        [
            (NEUTRAL, "abroad", "http_reset"),
            (HELPER, "abroad", "refused"),
            (NEUTRAL_80, "abroad", "answered"),
        ],
        Regime.PORT_RESET,
        "every connection to port 443 abroad is reset",
    ),
    (
        "443 reset but nothing on another port answers: not port_reset",
        [(NEUTRAL, "abroad", "refused"), (NEUTRAL_80, "abroad", "syn")],
        Regime.UNKNOWN,
        "mixed",
    ),
    (
        "one name on 443 reset, another on 443 answered: a name's block, normal",
        [
            (NEUTRAL, "abroad", "tls_reset"),
            (HELPER, "abroad", "answered"),
            (NEUTRAL_80, "abroad", "answered"),
        ],
        Regime.NORMAL,
        "abroad answer",
    ),
    ("no canary", [], Regime.UNKNOWN, "no canary was measured"),
    (
        "inside canaries only",
        [(GOV, "inside", "answered")],
        Regime.UNKNOWN,
        "no canary abroad",
    ),
]


@pytest.mark.parametrize(
    ("seen", "regime", "words"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_regime(seen: list[tuple[str, str, str]], regime: Regime, words: str) -> None:
    got, why, evidence = judge_regime([canary(*s) for s in seen])
    assert got == regime, (why, evidence)
    assert words in why
    assert len(evidence) == len(seen)


ALLOWLIST_SEEN = [
    ("https://gov.example.ru/", "inside", "answered"),
    (NEUTRAL, "abroad", "tls_timeout"),
]
SHUTDOWN_SEEN = [(GOV, "inside", "answered"), (NEUTRAL, "abroad", "syn")]
NORMAL_SEEN = [(GOV, "inside", "answered"), (NEUTRAL, "abroad", "answered")]


@pytest.mark.parametrize(
    ("first", "again", "regime", "words"),
    [
        (ALLOWLIST_SEEN, ALLOWLIST_SEEN, Regime.ALLOWLIST, "only listed destinations work"),
        (ALLOWLIST_SEEN, NORMAL_SEEN, Regime.NORMAL, "(a first look said allowlist: "),
        (ALLOWLIST_SEEN, SHUTDOWN_SEEN, Regime.UNKNOWN, "disagree: shutdown (a first look said"),
    ],
    ids=["confirmed", "a slow server abroad: normal", "two regimes: unknown"],
)
def test_a_regime_that_blocks_stands_only_if_a_second_look_agrees(
    first: list[tuple[str, str, str]],
    again: list[tuple[str, str, str]],
    regime: Regime,
    words: str,
) -> None:
    second = judge_regime([canary(*s) for s in again])
    got, why, evidence = confirmed(judge_regime([canary(*s) for s in first]), second)
    assert (got, evidence) == (regime, second[2]), why
    assert words in why


def test_the_evidence_says_what_each_canary_saw() -> None:
    _, _, evidence = judge_regime(
        [canary(GOV, "inside", "answered"), canary(NEUTRAL, "abroad", "tls_timeout")]
    )
    assert evidence == (
        "https://gov.example.ru/ (inside): HTTP 200",
        "https://example.com/ (abroad): TCP connected, then TLS timeout",
    )


def test_answered_means_an_http_answer_of_any_status() -> None:
    t = Target.parse(NEUTRAL)
    assert not answered(Measurement(t, 0.0))
    failed = HTTPObservation(t.url, 3.0, F.TIMEOUT, "no byte", address=ADDRESS)
    assert not answered(Measurement(t, 0.0, http=failed))
    assert answered(Measurement(t, 0.0, http=HTTPObservation(t.url, 0.1, status=503)))


def test_a_canary_that_resolved_nothing_and_had_no_route_named_is_no_answer() -> None:
    """Nothing resolved and no lookup failed for want of a route (an empty measurement): DNS gave
    no answer, not "no route"."""
    _, _, evidence = judge_regime([Canary("abroad", Measurement(Target.parse(NEUTRAL), 0.0))])
    assert evidence == ("https://example.com/ (abroad): DNS no_answer",)


def test_tls_failing_at_one_address_and_working_at_another_is_an_http_failure() -> None:
    t = Target.parse(NEUTRAL)
    dns = (DNSObservation("system", "system", "A+AAAA", 0.01, "NOERROR", (ADDRESS, "2001:db8::1")),)
    tcp = (TCPObservation(ADDRESS, 443, 0.01), TCPObservation("2001:db8::1", 443, 0.01))
    tls = (
        TLSObservation(ADDRESS, 443, t.host, 0.02, F.RESET),
        TLSObservation("2001:db8::1", 443, t.host, 0.02),
    )
    http = HTTPObservation(t.url, 3.0, F.TIMEOUT, "no byte", address="2001:db8::1")
    _, _, evidence = judge_regime([Canary("abroad", Measurement(t, 0.0, dns, tcp, tls, http=http))])
    assert evidence == ("https://example.com/ (abroad): TCP connected, then HTTP timeout",)
