"""Every tolerance of the verdict, from just inside and just outside: moving a constant across its
boundary, or dropping a comparison, fails a row here (scripts/mutation checks that it does)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from probe.model import (
    Control,
    Diagnosis,
    DNSObservation,
    DNSResponse,
    Hop,
    HTTPHop,
    HTTPObservation,
    Measurement,
    Target,
    TLSObservation,
)
from probe.verdict import judge, settle
from probe.verdict.explain import rate as _rate
from probe.verdict.explain import size as _size
from probe.verdict.fingerprints import Fingerprint
from probe.vocabulary import Layer, Method, Verdict
from tests.unit.test_verdict import (
    CONTROL,
    HTTP_T,
    PUBLIC,
    WITH_CONTROL,
    A,
    B,
    T,
    ctl,
    m,
    page,
    system,
    tcp,
    tls,
)

# The documented tolerances, written out here: a test that imported the module's constants would
# move with them.
THROTTLE_RATIO = 0.1  # of the control's rate
THROTTLE_CEILING = 250_000  # bytes/s, 2 Mbit/s
THROTTLE_MIN_BYTES = 32_768
BODY_PROPORTION = 0.7

# --- throttling: under THROTTLE_RATIO of the control's rate, under THROTTLE_CEILING, over at
# least THROTTLE_MIN_BYTES (or the whole window)


def throttle(rate: float, control_rate: float, length: int = 1 << 20, window: bool = False) -> str:
    mine = page(throughput=rate, length=length)
    if window:
        mine = replace(mine, truncated="window")
    v = judge(m([system(A)], [tcp()], [tls()], [], mine), ctl(http_=page(throughput=control_rate)))
    return str(v.blocking) if v.blocking else v.verdict


@pytest.mark.parametrize(
    ("rate", "control", "length", "window", "expected"),
    [
        # the ratio, well under the ceiling
        (THROTTLE_RATIO * 200_000 - 1, 200_000, 1 << 20, False, "http/throttled"),
        (THROTTLE_RATIO * 200_000, 200_000, 1 << 20, False, "accessible"),  # "under": strictly
        (THROTTLE_RATIO * 200_000 + 1, 200_000, 1 << 20, False, "accessible"),
        # the ceiling, at a ratio well under
        (THROTTLE_CEILING - 1, 10_000_000, 1 << 20, False, "http/throttled"),
        (THROTTLE_CEILING, 10_000_000, 1 << 20, False, "accessible"),
        (THROTTLE_CEILING + 1, 10_000_000, 1 << 20, False, "accessible"),
        # enough bytes to say anything about a rate
        (1_000, 200_000, THROTTLE_MIN_BYTES, False, "http/throttled"),
        (1_000, 200_000, THROTTLE_MIN_BYTES - 1, False, "accessible"),
        # ...or a download the window cut: it was still flowing
        (1_000, 200_000, 5_000, True, "http/throttled"),
    ],
)
def test_throttling_boundaries(
    rate: float, control: float, length: int, window: bool, expected: str
) -> None:
    assert throttle(rate, control, length, window) == expected


def test_a_slow_vantage_with_a_slow_control_is_not_throttled() -> None:
    """Both slow alike: congestion, not a policer (the comparison with the control matters)."""
    assert throttle(50_000, 60_000) == "accessible"


def test_without_a_rate_on_either_side_there_is_no_throttling() -> None:
    """One chunk then the end gives no rate: nothing to compare."""
    mine, theirs = page(throughput=1_000, length=1 << 20), page(throughput=None)
    v = judge(m([system(A)], [tcp()], [tls()], [], mine), ctl(http_=theirs))
    assert v.verdict == "accessible"
    v = judge(m([system(A)], [tcp()], [tls()], [], page()), ctl(http_=page(throughput=1e6)))
    assert v.verdict == "accessible"


# --- pages over plain HTTP: the same page when the status is the same and the body-length
# proportion is over BODY_PROPORTION, or the title is the same


def diff(length: int, title: str = "Elsewhere", status: int = 200) -> str:
    mine = page(url=HTTP_T.url, title=title, length=length, sha="b" * 64, status=status)
    v = judge(
        m([system(A)], [tcp()], [], [], mine, target=HTTP_T),
        ctl(target=HTTP_T, http_=page(url=HTTP_T.url, title="News", length=10_000)),
        public_ranges=PUBLIC,
    )
    return str(v.blocking) if v.blocking else v.verdict


@pytest.mark.parametrize(
    ("length", "title", "status", "expected"),
    [
        (int(10_000 * BODY_PROPORTION) + 1, "Elsewhere", 200, "accessible"),
        (int(10_000 * BODY_PROPORTION), "Elsewhere", 200, "http/diff"),  # "over": strictly
        (int(10_000 * BODY_PROPORTION) - 1, "Elsewhere", 200, "http/diff"),
        (3_000, "News", 200, "accessible"),  # another length, the same title: the same page
        (3_000, "", 200, "http/diff"),  # no title is no evidence of sameness
        (10_000, "News", 500, "http/diff"),  # the same page, but another status
        (10_000, "News", 403, "accessible"),  # the site's own refusal is reported as what it is
        (10_000, "News", 429, "accessible"),
        (10_000, "News", 451, "accessible"),
    ],
)
def test_page_comparison_boundaries(length: int, title: str, status: int, expected: str) -> None:
    assert diff(length, title, status) == expected


# --- an address is genuine where a certificate valid for the host is served: by the vantage's
# own handshake, or the control's (a CDN answers other addresses elsewhere)


def test_the_vantages_own_valid_certificate_makes_its_address_genuine() -> None:
    """A CDN node the control never saw: the vantage validated the certificate there itself."""
    v = judge(m([system(B)], [tcp(B)], [tls(B)], [], page(address=B)), ctl(), public_ranges=PUBLIC)
    assert v.verdict == "accessible"


def test_the_controls_handshake_at_the_vantages_address_makes_it_genuine() -> None:
    """The vantage's handshake at B timed out, but the control validated a certificate there:
    B is the site's, so the block is the handshake's, not DNS's."""
    control = ctl(tls_=[tls(), tls(B)])  # the control tried the vantage's address too
    v = judge(m([system(B)], [tcp(B)], [tls(B, failure="timeout")]), control, public_ranges=PUBLIC)
    assert str(v.blocking) == "tls/timeout", v.explanation


def test_the_controls_validation_of_a_plain_http_targets_address() -> None:
    """For http:// the control validates the vantage's addresses on 443: the site's regional
    node redirects to its regional edition, which is the site's choice, not a block."""
    hop = (HTTPHop(HTTP_T.url, 302, "http://ru.news.example/", B),)
    mine = page(
        url=HTTP_T.url,
        title="Новости",
        length=2_000,
        sha="b" * 64,
        hops=hop,
        address=B,
        final="http://ru.news.example/",
    )
    valid = TLSObservation(B, 443, HTTP_T.host, 0.02, verified=True)
    measured = m([system(B)], [tcp(B)], [], [], mine, target=HTTP_T)
    with_cert = judge(measured, ctl(target=HTTP_T, validation=[valid]), public_ranges=PUBLIC)
    without = judge(measured, ctl(target=HTTP_T), public_ranges=PUBLIC)
    assert with_cert.verdict == "accessible"
    assert str(without.blocking) == "dns/inconsistent"


# --- settling: a block stands only if every measurement saw one; the first says how


def d(verdict: Verdict, how: tuple[Layer, Method] | None = None) -> Diagnosis:
    from probe.model import Blocking

    return Diagnosis(verdict, Blocking(*how) if how else None, f"{verdict}", f"{verdict}")


RESET = (Layer.TLS, Method.RESET)
REFUSED = (Layer.TCP, Method.REFUSED)


@pytest.mark.parametrize(
    ("attempts", "verdict", "blocking", "agreed", "words"),
    [
        ([d(Verdict.BLOCKED, RESET)], "blocked", "tls/reset", 1, ""),
        ([d(Verdict.BLOCKED, RESET)] * 2, "blocked", "tls/reset", 2, "seen in 2 of 2"),
        (
            [d(Verdict.BLOCKED, RESET), d(Verdict.BLOCKED, REFUSED)],
            "blocked",
            "tls/reset",
            1,
            "seen in 1 of 2",
        ),
        (
            [d(Verdict.BLOCKED, RESET), d(Verdict.ACCESSIBLE)],
            "accessible",
            None,
            1,
            "not confirmed",
        ),
        (
            [d(Verdict.THROTTLED, (Layer.HTTP, Method.THROTTLED))] * 3,
            "throttled",
            "http/throttled",
            3,
            "3 of 3",
        ),
        (
            [d(Verdict.BLOCKED, RESET), d(Verdict.INCONCLUSIVE)],
            "inconclusive",
            None,
            1,
            "looked blocked",
        ),
    ],
)
def test_settling(
    attempts: list[Diagnosis], verdict: str, blocking: str | None, agreed: int, words: str
) -> None:
    settled, used = settle(attempts)
    assert settled.verdict == verdict
    assert (str(settled.blocking) if settled.blocking else None) == blocking
    assert (settled.attempts, settled.agreed) == (len(attempts), agreed)
    assert words in settled.explanation
    assert used == (0 if settled.verdict.is_block else len(attempts) - 1)


def test_a_control_that_answered_nothing_decides_nothing() -> None:
    v = judge(m([system(A)], [tcp(failure="timeout")]), Control(error="refused"))
    assert v.verdict == "inconclusive"


# --- every condition of every rule: a row where it decides


def row(
    meas: Measurement, control: Control | None = None, public: tuple[str, ...] = PUBLIC
) -> tuple[str, Diagnosis]:
    v = judge(meas, control, public_ranges=public)
    return (str(v.blocking) if v.blocking else str(v.verdict)), v


def udp(resolver: str, qtype: str, *addresses: str, failure: str | None = None) -> DNSObservation:
    rcode = "NOERROR" if not failure else failure.upper()
    return DNSObservation(resolver, "udp", qtype, 0.02, rcode, addresses, failure=failure)  # type: ignore[arg-type]


def test_a_resolvers_a_record_failure_is_its_failure_not_the_aaaa_one() -> None:
    dns = [
        udp("192.0.2.53", "A", failure="servfail"),
        udp("192.0.2.53", "AAAA", failure="no_answer"),
    ]
    assert row(m(dns), CONTROL)[0] == "dns/servfail"


def test_the_system_resolver_timing_out_while_another_answers_genuinely_is_a_block() -> None:
    """Another resolver's answer, validated by a certificate, is as good as a control; the
    sentence says how long the silent one was waited for."""
    dns = [replace(system(failure="timeout"), elapsed=2.004), udp("8.8.8.8", "A", A)]
    blocking, v = row(m(dns, [tcp()], [tls()], [], page()))
    assert blocking == "dns/timeout"
    assert v.explanation.startswith("system says timeout for www.clubhouse.com after 2.0 s, while")


def test_an_extra_resolver_timing_out_alone_is_judged_with_the_control() -> None:
    assert row(m([udp("8.8.8.8", "A", failure="timeout")]), CONTROL)[0] == "dns/timeout"


def test_another_resolvers_genuine_answer_proves_a_lie_without_a_control() -> None:
    dns = [system(failure="nxdomain"), udp("8.8.8.8", "A", A)]
    assert row(m(dns, [tcp()], [tls()], [], page()))[0] == "dns/nxdomain"


def test_special_purpose_answers_on_both_sides_are_no_bogon_but_down() -> None:
    """An intranet name: the control gets private addresses too, so nobody on the internet
    reaches it — what everyone sees is `down`, not a block (OONI's localhost cases)."""
    intranet = ctl(dns_=[system("10.0.0.2")], tcp_=[], tls_=[])
    verdict, v = row(m([system("10.0.0.1")], [tcp("10.0.0.1", "timeout")]), intranet, ())
    assert verdict == "down" and "for the control too" in v.explanation
    public = ctl(dns_=[system(A)], tcp_=[], tls_=[])  # the control's is public: a bogon
    assert row(m([system("10.0.0.1")], [tcp("10.0.0.1", "timeout")]), public)[0] == "dns/bogon"


def test_the_same_page_from_another_host_does_not_vouch_for_the_vantages_address() -> None:
    via = replace(page(url=HTTP_T.url), address="192.0.2.99")  # fetched after a redirect
    meas = m([system(B)], [tcp(B)], [], [], via, target=HTTP_T)
    assert row(meas, ctl(target=HTTP_T))[0] == "dns/inconsistent"


def test_a_page_the_control_could_not_fetch_does_not_vouch_either() -> None:
    meas = m([system(B)], [tcp(B)], [], [], page(url=HTTP_T.url, address=B), target=HTTP_T)
    failed = ctl(target=HTTP_T, http_=page(url=HTTP_T.url, failure="timeout"))
    assert row(meas, failed)[0] == "dns/inconsistent"


def test_one_unreachable_address_of_two_is_nothing_while_the_page_loads() -> None:
    meas = m([system(A, B)], [tcp(), tcp(B, "timeout")], [tls()], [], page())
    assert row(meas, ctl(tcp_=[tcp(), tcp(B)]))[0] == "accessible"


def test_failures_that_are_no_censors_method_decide_nothing() -> None:
    """A bug (`unknown`) at TCP, junk at HTTP: inconclusive, whatever the control saw."""
    verdict, v = row(m([system(A)], [tcp(failure="unknown")]), CONTROL)
    assert verdict == "inconclusive"
    assert "what the control saw" in v.explanation and "did not answer" not in v.explanation
    junk = page(failure="protocol")
    assert row(m([system(A)], [tcp()], [tls()], [], junk), CONTROL)[0] == "inconclusive"


def test_a_penalty_box_is_told_from_a_filter_that_resets_every_name() -> None:
    boxed = TLSObservation(A, 443, "example.com", 0.01, "refused", "refused", connected=False)  # type: ignore[arg-type]
    also_reset = TLSObservation(A, 443, "example.com", 0.01, "reset", "reset")  # type: ignore[arg-type]
    _, v = row(m([system(A)], [tcp()], [tls(failure="reset")], [boxed]), CONTROL)
    assert "residual blocking" in v.explanation
    _, v = row(m([system(A)], [tcp()], [tls(failure="reset")], [also_reset]), CONTROL)
    assert str(v.blocking) == "tls/reset" and "residual" not in v.explanation


def test_interception_shows_the_interceptors_certificate() -> None:
    unreadable = TLSObservation(B, 443, T.host, 0.01, "invalid_certificate", "x")  # type: ignore[arg-type]
    tls_ = [unreadable, tls(failure="invalid_certificate")]
    _, v = row(m([system(A, B)], [tcp(), tcp(B)], tls_), CONTROL)
    assert str(v.blocking) == "tls/invalid_certificate" and "CN=Rogue CA" in v.explanation


def test_validation_for_another_name_proves_nothing() -> None:
    other = TLSObservation(B, 443, "other.example", 0.02, verified=True)
    mine = page(url=HTTP_T.url, address=B, sha="b" * 64, length=10, title="x")
    meas = m([system(B)], [tcp(B)], [], [], mine, target=HTTP_T)
    assert row(meas, ctl(target=HTTP_T, validation=[other]))[0] == "dns/inconsistent"


@pytest.mark.parametrize(
    ("target", "final", "expected"),
    [
        ("https://news.example/", "https://news.example/other", "accessible"),  # validated TLS
        ("https://news.example/", "http://news.example/plain", "http/diff"),  # downgraded
        ("http://news.example/", "https://elsewhere.example/", "http/diff"),  # a censor's hop?
    ],
)
def test_only_a_page_over_the_targets_validated_tls_is_never_a_diff(
    target: str, final: str, expected: str
) -> None:
    t = Target.parse(target)
    hop = (HTTPHop(t.url, 302, final, A),)
    mine = page(url=t.url, title="Other", length=100, sha="b" * 64, hops=hop, final=final)
    tls_ = [tls(sni=t.host)] if t.scheme == "https" else []
    meas = m([system(A)], [tcp()], tls_, [], mine, target=t)
    theirs = page(url=t.url)
    assert row(meas, ctl(target=t, tls_=[tls(sni=t.host)], http_=theirs))[0] == expected


def test_the_same_refusal_for_both_is_compared_as_pages() -> None:
    mine = page(url=HTTP_T.url, status=403, title="Forbidden by your ISP", length=100, sha="b" * 64)
    theirs = page(url=HTTP_T.url, status=403, title="Forbidden", length=5000)
    meas = m([system(A)], [tcp()], [], [], mine, target=HTTP_T)
    assert row(meas, ctl(target=HTTP_T, http_=theirs))[0] == "http/diff"


WWW = Target.parse("http://www.news.example/")


@pytest.mark.parametrize(
    ("hops", "final", "control_final", "expected"),
    [
        # the site sends this region to its bare domain: its choice
        (
            (HTTPHop(WWW.url, 302, "http://news.example/", A),),
            "http://news.example/",
            WWW.url,
            "accessible",
        ),
        # not redirected here while the control was: another page, not the site's choice here
        ((), WWW.url, "http://en.news.example/", "http/diff"),
    ],
)
def test_a_regional_edition_is_the_sites_own_redirect(
    hops: tuple[HTTPHop, ...], final: str, control_final: str, expected: str
) -> None:
    mine = page(url=WWW.url, title="Региональная", length=100, sha="b" * 64, hops=hops, final=final)
    theirs = page(url=WWW.url, title="News", length=5000, final=control_final)
    meas = m([system(A)], [tcp()], [], [], mine, target=WWW)
    assert row(meas, ctl(target=WWW, http_=theirs))[0] == expected


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        (
            {"status": 500, "length": 0, "sha": None, "title": ""},
            {"length": 0, "sha": None, "title": ""},
        ),
        ({"length": 3_000, "title": "", "sha": "b" * 64}, {"length": 10_000, "title": ""}),
    ],
)
def test_empty_pages_and_empty_titles_are_no_evidence_of_sameness(
    mine: dict[str, object], theirs: dict[str, object]
) -> None:
    meas = m([system(A)], [tcp()], [], [], page(url=HTTP_T.url, **mine), target=HTTP_T)  # type: ignore[arg-type]
    control = ctl(target=HTTP_T, http_=page(url=HTTP_T.url, **theirs))  # type: ignore[arg-type]
    assert row(meas, control)[0] == "http/diff"


def test_sizes_and_rates_read_as_people_write_them() -> None:
    assert (_size(1023), _size(1024), _size(1536)) == ("1023 B", "1.0 KiB", "1.5 KiB")
    assert _rate(16_000) == "128 kbit/s" and _rate(1_249_999) == "10000 kbit/s"
    assert _rate(1_250_000) == "10 Mbit/s"


def test_a_deadline_that_ran_out_is_named_and_only_then() -> None:
    cut = replace(m([system(A)], [tcp(failure="timeout")]), ran_out="tcp_tls", deadline=50.0)
    assert "deadline of 50s ran out during tcp_tls" in judge(cut).explanation
    assert "deadline" not in judge(m([system(A)], [tcp(failure="timeout")])).explanation


@pytest.mark.parametrize(
    ("meas", "words", "summary"),
    [
        (
            m([], [tcp(failure="refused")], target=Target.parse("http://192.0.2.1/")),
            "TCP connect",
            "TCP refused",
        ),
        (
            m([system(A)], notes=("not contacted (special-purpose addresses): 10.0.0.1",)),
            "not contacted",
            "not measured",
        ),
        (m([system(A)], [tcp()], [tls(failure="reset")]), "TLS with SNI", "TLS reset"),
        (m([system(A)], [tcp()], [tls()], [], page(failure="eof")), "HTTP GET", "HTTP eof"),
        (m(), "no step completed", "nothing measured"),
    ],
)
def test_an_undecided_result_names_the_first_step_that_failed(
    meas: Measurement, words: str, summary: str
) -> None:
    v = judge(meas)
    assert v.verdict == "inconclusive" and words in v.explanation and v.summary == summary


def test_one_measurement_is_reported_as_it_is() -> None:
    for alone in (d(Verdict.ACCESSIBLE), d(Verdict.BLOCKED, RESET)):
        settled, used = settle([alone])
        assert settled.explanation == alone.explanation and used == 0


# --- blockpage fingerprints that cry wolf (OONI probe#2495; news quoting blockpages)

REGISTRY = "<p>Реестр: <a href='http://eais.rkn.gov.ru/'>eais.rkn.gov.ru</a></p>"


def quoted(url: str = HTTP_T.url, sample: str = REGISTRY, sha: str = "a" * 64) -> HTTPObservation:
    return page(url=url, title="News", sample=sample, sha=sha)


def test_a_fingerprint_the_controls_page_matches_too_is_the_sites_own_content() -> None:
    meas = m([system(A)], [tcp()], [], [], quoted(), target=HTTP_T)
    verdict, v = row(meas, ctl(target=HTTP_T, http_=quoted()))
    assert verdict == "accessible"
    assert v.ignored == ("builtin.ru_rkn_registry (built-in): the control's page matches it too",)
    assert "fingerprint ignored: builtin.ru_rkn_registry (built-in)" in v.explanation


def test_a_body_match_on_a_validated_https_page_never_counts() -> None:
    https = Target.parse("https://news.example/")
    meas = m([system(A)], [tcp()], [tls(sni=https.host)], [], quoted(https.url), target=https)
    verdict, v = row(meas)
    assert verdict == "accessible" and "came over validated TLS" in v.ignored[0]


def test_a_real_blockpage_counts_and_names_its_fingerprint_and_source() -> None:
    meas = m([system(A)], [tcp()], [], [], quoted(sha="b" * 64), target=HTTP_T)
    for control in (None, ctl(target=HTTP_T)):  # the control's page has no such text
        verdict, v = row(meas, control)
        assert verdict == "http/blockpage", v.explanation
        assert "builtin.ru_rkn_registry (built-in)" in v.explanation and not v.ignored


def test_a_redirect_to_a_known_blockpage_stays_strong_evidence() -> None:
    hop = (HTTPHop(HTTP_T.url, 302, "http://warning.rt.ru/?id=1", A),)
    meas = m([system(A)], [tcp()], [], [], page(url=HTTP_T.url, hops=hop), target=HTTP_T)
    assert row(meas, ctl(target=HTTP_T))[0] == "http/blockpage"


# --- redirect chains: the first failing step of the first failing hop, named

CHAIN = Target.parse("http://chain.example/")
NEXT = "https://other.example/"


def chain(hop: Hop, failure: str = "reset") -> Measurement:
    """chain.example answers a 302 to https://other.example/, whose connection fails."""
    redirect = (HTTPHop(CHAIN.url, 302, NEXT, A),)
    h = replace(
        page(url=CHAIN.url, hops=redirect, final=NEXT, failure=failure),
        error=f"redirect: {failure}",
        connections=(hop,),
    )
    return m([system(A)], [tcp()], [], [], h, target=CHAIN)


def other(addr: str = B, failure: str | None = None) -> TLSObservation:
    return replace(tls(addr, sni="other.example", failure=failure), port=443)


def control_chain(hop: Hop) -> Control:
    return ctl(target=CHAIN, http_=replace(page(url=CHAIN.url, final=NEXT), connections=(hop,)))


def test_an_sni_reset_on_the_https_hop_of_an_http_url_is_tls_reset() -> None:
    harmless = replace(other(), sni="example.com", verified=False)
    hop = Hop(NEXT, (system(B),), (tcp(B),), (other(failure="reset"),), (harmless,))
    verdict, v = row(chain(hop))
    assert verdict == "tls/reset"
    assert v.explanation.startswith(f"redirect 1 of {CHAIN.url} to {NEXT} (host other.example)")


FORGED = DNSObservation(
    "192.0.2.53",
    "udp",
    "A",
    0.02,
    "NOERROR",
    ("198.51.100.66",),
    responses=(
        DNSResponse(0.01, "NOERROR", ("198.51.100.66",)),
        DNSResponse(0.05, "NOERROR", (B,)),
    ),
)


def test_a_forged_answer_for_the_hops_host_is_a_dns_block() -> None:
    hop = Hop(NEXT, (FORGED,), (tcp("198.51.100.66", "timeout"),))
    assert row(chain(hop, "timeout"))[0] == "dns/injected"


def test_a_forged_answer_for_a_hop_is_a_block_even_where_the_real_one_got_through() -> None:
    """The probe went on with the real answer and got the page; a browser takes the first."""
    hop = Hop(NEXT, (FORGED,), (tcp("198.51.100.66", "timeout"), tcp(B)), (other(),))
    h = page(url=CHAIN.url, hops=(HTTPHop(CHAIN.url, 302, NEXT, A),), final=NEXT, address=B)
    meas = m([system(A)], [tcp()], [], [], replace(h, connections=(hop,)), target=CHAIN)
    verdict, v = row(meas, control_chain(Hop(NEXT, (system(B),), (tcp(B),), (other(),))))
    assert verdict == "dns/injected"
    assert v.explanation.startswith(f"redirect 1 of {CHAIN.url} to {NEXT} (host other.example)")
    assert v.summary.startswith("hop 1: ")


def test_an_unreachable_hop_the_control_reaches_is_a_tcp_block() -> None:
    hop = Hop(NEXT, (system(B),), (tcp(B, "timeout"),))
    theirs = Hop(NEXT, (system(B),), (tcp(B),), (other(),))
    verdict, v = row(chain(hop, "timeout"), control_chain(theirs))
    assert verdict == "tcp/timeout" and "(host other.example)" in v.explanation


def test_a_chain_the_control_did_not_follow_is_evidence_not_a_block() -> None:
    """The site sends this vantage somewhere the control was not sent: unreachable there, but
    nothing says that is censorship."""
    hop = Hop(NEXT, (system(B),), (tcp(B, "timeout"),))
    assert row(chain(hop, "timeout"), ctl(target=CHAIN))[0] == "inconclusive"


def test_a_reset_after_the_hops_connection_is_the_hops_http() -> None:
    hop = Hop(NEXT, (system(B),), (tcp(B),), (other(),))
    verdict, v = row(chain(hop), CONTROL)
    assert verdict == "http/reset" and f"GET {NEXT} (redirect 1 of {CHAIN.url})" in v.explanation


# --- what the explanations say (a user reads them; a word lost is a rule's output lost)


def test_an_injection_shows_at_most_three_answers() -> None:
    answers = tuple(DNSResponse(0.01 * i, "NOERROR", (f"198.51.100.{i}",)) for i in range(1, 5))
    obs = DNSObservation(
        "192.0.2.53", "udp", "A", 0.1, "NOERROR", ("198.51.100.1",), responses=answers
    )
    _, v = row(m([obs]))
    assert v.explanation.count(" then ") == 2 and "4 times" in v.explanation


def test_no_resolver_at_an_address_without_an_answer_is_no_injection() -> None:
    nobody = DNSObservation(
        "192.0.2.99",
        "udp",
        "A",
        0.1,
        failure="unreachable",
        port_unreachable=True,  # type: ignore[arg-type]
    )
    assert row(m([nobody]))[0] == "inconclusive"


def test_the_control_completing_elsewhere_counts_only_where_it_completed() -> None:
    """The control never tried the vantage's address: its success at another is what counts."""
    mine = m([system(B)], [tcp(B)], [tls(B, failure="reset")])
    works = ctl(dns_=[system(A, B)], tcp_=[tcp()], tls_=[tls()])
    verdict, v = row(mine, works)
    assert verdict == "tls/reset" and "the control completes at 192.0.2.10" in v.explanation
    fails = ctl(dns_=[system(A, B)], tcp_=[tcp()], tls_=[tls(failure="reset")])
    assert row(mine, fails)[0] == "inconclusive"


def test_no_explanation_says_none() -> None:
    """Every rule's words are words: a helper that answered None would show as "None"."""
    for case in WITH_CONTROL:
        v = judge(case[1], case[2], public_ranges=PUBLIC)
        assert "None" not in v.explanation, (case[0], v.explanation)


@pytest.mark.parametrize(
    ("h", "words"),
    [
        (
            replace(page(failure="reset"), received=500, last_byte=0.2),
            "after 500 bytes of the response",
        ),
        (page(failure="reset"), "before any byte of the response"),
        (replace(page(failure="stall"), received=500, last_byte=None), "after 500 bytes"),
        (replace(page(failure="stall"), received=500, last_byte=0.25), "the last 250 ms after"),
        (replace(page(failure="stall"), received=500, last_byte=1.5), "the last 1.50 s after"),
        (replace(page(failure="stall"), received=500, last_byte=1.0), "the last 1.00 s after"),
        (replace(page(failure="stall"), received=500, last_byte=0.999), "the last 999 ms after"),
        (
            replace(page(failure="stall"), received=0, received_wire=4380, last_byte=0.05),
            "the response began (4380 bytes of TLS records arrived, none whole), the last 50 ms",
        ),
    ],
)
def test_how_far_a_failed_response_got(h: HTTPObservation, words: str) -> None:
    _, v = row(m([system(A)], [tcp()], [tls()], [], h), CONTROL)
    assert words in v.explanation and f"GET {T.url} " in v.explanation


def test_a_download_without_its_own_rate_is_not_compared() -> None:
    big = page(length=1 << 20)  # no rate: one chunk, then the end
    v = judge(m([system(A)], [tcp()], [tls()], [], big), ctl(http_=page(throughput=1e6)))
    assert v.verdict == "accessible"


def test_two_empty_pages_with_the_same_status_are_the_same_page() -> None:
    empty = page(url=HTTP_T.url, length=0, sha=None, title="")  # type: ignore[arg-type]
    meas = m([system(A)], [tcp()], [], [], empty, target=HTTP_T)
    assert row(meas, ctl(target=HTTP_T, http_=empty))[0] == "accessible"


def test_a_header_fingerprint_counts_even_on_a_validated_https_page() -> None:
    """Only a body match is the site's own content there; a known censor's header is not."""
    https = Target.parse("https://news.example/")
    stamp = page(url=https.url, headers={"server": "filter-box"})
    meas = m([system(A)], [tcp()], [tls(sni=https.host)], [], stamp, target=https)
    fp = Fingerprint("t.server", "header.server", "full", "filter-box", source="test")
    v = judge(meas, None, (fp,), PUBLIC)
    assert str(v.blocking) == "http/blockpage" and "t.server (test)" in v.explanation


@pytest.mark.parametrize(
    ("h", "summary"),
    [
        (page(failure="reset"), "HTTP reset; control loads"),
        (replace(page(failure="reset"), received_wire=300), "HTTP reset; control loads"),
        (replace(page(failure="reset"), received=1), "HTTP reset after 1 B; control loads"),
        (
            replace(page(failure="stall"), received_wire=4380),
            "HTTP stall after 4380 B; control loads",
        ),
    ],
)
def test_the_summary_counts_the_bytes_of_the_response(h: HTTPObservation, summary: str) -> None:
    """Bytes of TLS records count only for a stall (a reset after session tickets arrived is not
    a response that began)."""
    _, v = row(m([system(A)], [tcp()], [tls()], [], h), CONTROL)
    assert v.summary == summary
