"""The verdict without a control, as a table of observations and what a user must be told."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from probe.model import (
    Blocking,
    Certificate,
    Control,
    DNSObservation,
    DNSResponse,
    Hop,
    HTTPHop,
    HTTPObservation,
    Measurement,
    Target,
    TCPObservation,
    TLSObservation,
)
from probe.verdict import judge, settle
from probe.verdict.challenges import challenge
from probe.verdict.fingerprints import Fingerprint
from probe.vocabulary import METHODS

REPO = Path(__file__).resolve().parents[2]
T = Target.parse("https://www.clubhouse.com/")
A = "192.0.2.10"
B = "192.0.2.11"


def dns_ok(*addresses: str, responses: tuple[DNSResponse, ...] = ()) -> DNSObservation:
    return DNSObservation(
        "192.0.2.53",
        "udp",
        "A",
        0.02,
        "NOERROR",
        addresses,
        60,
        responses=responses or (DNSResponse(0.02, "NOERROR", addresses, 60),),
    )


def system(*addresses: str, failure: str | None = None) -> DNSObservation:
    return DNSObservation(
        "system",
        "system",
        "A+AAAA",
        0.01,
        "NOERROR" if not failure else "",
        addresses,
        failure=failure,
    )


def tcp(addr: str = A, failure: str | None = None) -> TCPObservation:
    return TCPObservation(addr, 443, 0.01, failure)


def tls(
    addr: str = A, sni: str = "www.clubhouse.com", failure: str | None = None
) -> TLSObservation:
    cert = (
        Certificate("CN=x", "CN=Rogue CA", ("x",), "", "", "0" * 64)
        if failure == "invalid_certificate"
        else None
    )
    return TLSObservation(
        addr,
        443,
        sni,
        0.02,
        failure,
        failure and f"{failure} error",
        certificate=cert,
        verified=failure is None and sni == "www.clubhouse.com",
    )


def http(status: int | None = 200, failure: str | None = None) -> HTTPObservation:
    return HTTPObservation(
        T.url,
        0.1,
        failure,
        failure and "error",
        status,
        T.url,
        A,
        title="Clubhouse",
        body_length=5000,
    )


def m(dns=(), tcp_=(), tls_=(), sni=(), http_=None, target=T, notes=()) -> Measurement:  # type: ignore[no-untyped-def]
    return Measurement(
        target, 0.0, tuple(dns), tuple(tcp_), tuple(tls_), tuple(sni), http_, notes=notes
    )


CASES = [
    # (id, measurement, verdict, layer/method, words the explanation must contain)
    (
        "everything works",
        m([system(A)], [tcp()], [tls()], [], http()),
        "accessible",
        None,
        ["HTTP 200", "validated TLS"],
    ),
    (
        "site's own 403 over validated TLS is not censorship",
        m([system(A)], [tcp()], [tls()], [], http(403)),
        "accessible",
        None,
        ["HTTP 403"],
    ),
    (
        "forged answer raced the real one",
        m(
            [
                dns_ok(
                    B,
                    responses=(
                        DNSResponse(0.01, "NOERROR", (B,)),
                        DNSResponse(0.05, "NOERROR", (A,)),
                    ),
                )
            ]
        ),
        "blocked",
        "dns/injected",
        ["192.0.2.11 then 192.0.2.10", "forged"],
    ),
    (
        "an answer from an address with no resolver",
        m(
            [
                DNSObservation(
                    "198.51.100.1",
                    "udp",
                    "A",
                    0.02,
                    "NOERROR",
                    (B,),
                    responses=(DNSResponse(0.01, "NOERROR", (B,)),),
                    port_unreachable=True,
                )
            ]
        ),
        "blocked",
        "dns/injected",
        ["runs no resolver"],
    ),
    (
        "duplicate identical answers",
        m(
            [
                dns_ok(
                    A,
                    responses=(
                        DNSResponse(0.01, "NOERROR", (A,)),
                        DNSResponse(0.02, "NOERROR", (A,)),
                    ),
                )
            ],
            [tcp()],
            [tls()],
            [],
            http(),
        ),
        "accessible",
        None,
        [],
    ),
    (
        "SNI reset, harmless SNI completes",
        m([system(A)], [tcp()], [tls(failure="reset")], [tls(sni="example.com")]),
        "blocked",
        "tls/reset",
        ["SNI www.clubhouse.com", "example.com"],
    ),
    (
        "SNI drop, harmless SNI completes",
        m(
            [system(A, B)],
            [tcp(), tcp(B)],
            [tls(failure="timeout"), tls(B, failure="timeout")],
            [tls(sni="example.com"), tls(B, sni="example.com", failure="timeout")],
        ),
        "blocked",
        "tls/timeout",
        ["timeout"],
    ),
    (
        "every SNI reset: the address, or the server, not the name",
        m([system(A)], [tcp()], [tls(failure="reset")], [tls(sni="example.com", failure="reset")]),
        "inconclusive",
        None,
        ["TLS", "reset", "control"],
    ),
    (
        "one address SNI-reset but another completes and the page loads",
        m(
            [system(A, B)],
            [tcp(), tcp(B)],
            [tls(failure="reset"), tls(B)],
            [tls(sni="example.com")],
            http(),
        ),
        "accessible",
        None,
        [],
    ),
    (
        "untrusted certificate without a control",
        m([system(A)], [tcp()], [tls(failure="invalid_certificate")]),
        "inconclusive",
        None,
        ["invalid_certificate", "Rogue CA"],
    ),
    (
        "NXDOMAIN without a control",
        m([system(failure="nxdomain")]),
        "inconclusive",
        None,
        ["DNS", "nxdomain", "control"],
    ),
    ("no network at all", m([system(failure="timeout")]), "inconclusive", None, ["DNS", "timeout"]),
    (
        "TCP timeout on every address: one lost SYN or a blackhole, only a control can tell",
        m([system(A)], [tcp(failure="timeout")]),
        "inconclusive",
        None,
        ["TCP", "timeout"],
    ),
    (
        "HTTP reset without a control",
        m([system(A)], [tcp()], [tls()], [], http(None, "reset")),
        "inconclusive",
        None,
        ["HTTP", "reset"],
    ),
    (
        "an unmapped error is a bug, not censorship",
        m([system(A)], [tcp()], [tls(failure="unknown")], []),
        "inconclusive",
        None,
        ["unknown"],
    ),
    (
        "IPv6 unreachable but IPv4 works",
        m(
            [system(A, "2001:db8::1")],
            [tcp(), tcp("2001:db8::1", "unreachable")],
            [tls()],
            [],
            http(),
        ),
        "accessible",
        None,
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "meas", "verdict", "blocking", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_local_verdict(
    name: str, meas: Measurement, verdict: str, blocking: str | None, words: list[str]
) -> None:
    v = judge(meas)
    assert v.verdict == verdict
    assert (f"{v.blocking.layer}/{v.blocking.method}" if v.blocking else None) == blocking
    for word in words:
        assert word in v.explanation
    assert v.summary


def test_plain_http_page_is_accessible_without_tls() -> None:
    target = Target.parse("http://example.test/")
    v = judge(m([system(A)], [TCPObservation(A, 80, 0.01)], [], [], http(), target=target))
    assert v.verdict == "accessible"
    assert "plain HTTP" in v.explanation


# --- with a control: every row of the docs' method table, and the false-positive traps ---------

C_ADDR = "198.51.100.7"
HTTP_T = Target.parse("http://news.example/")


def page(
    status: int = 200,
    title: str = "News",
    length: int = 5000,
    sha: str = "a" * 64,
    throughput: float | None = None,
    url: str = T.url,
    failure: str | None = None,
    address: str = A,
    headers: dict[str, str] | None = None,
    sample: str = "",
    hops: tuple[HTTPHop, ...] = (),
    final: str | None = None,
) -> HTTPObservation:
    return HTTPObservation(
        url,
        0.1,
        failure,
        failure and "error",
        None if failure else status,
        final or url,
        address,
        headers or {},
        title if not failure else "",
        length,
        sha,
        ttfb=0.05,
        throughput=throughput,
        hops=hops,
        body_sample=sample,
    )


def ctl(  # type: ignore[no-untyped-def]
    dns_=None,
    tcp_=None,
    tls_=None,
    http_=None,
    target=T,
    validation=(),
    error=None,
) -> Control:
    """The control's view; by default everything works at address A."""
    dns_ = (system(A),) if dns_ is None else dns_
    tcp_ = (tcp(),) if tcp_ is None else tcp_
    tls_ = (tls(),) if tls_ is None else tls_
    http_ = http_ if http_ is not None else page(url=target.url)
    return Control(
        Measurement(target, 0.0, tuple(dns_), tuple(tcp_), tuple(tls_), (), http_),
        tuple(validation),
        error,
    )


def dns_fail(failure: str, resolver: str = "system") -> DNSObservation:
    return DNSObservation(resolver, "system", "A+AAAA", 0.01, "", (), failure=failure)


OK = m([system(A)], [tcp()], [tls()], [], page())
CONTROL = ctl()
STALLED = replace(
    page(), failure="stall", error="nothing for 5s", received=16_384, last_byte=0.31, title=""
)
PUBLIC = ("192.0.2.0/24",)  # this table's addresses are from TEST-NET-1: public for its purpose
BLOCKPAGE = "<p>Доступ к информационному ресурсу ограничен</p>"  # a built-in fingerprint's words
CHALLENGE = page(
    503,
    "Just a moment...",
    length=7000,
    url=HTTP_T.url,
    headers={"server": "cloudflare", "cf-ray": "68013f3b0c7d498b-SIN"},
    sample='<title>Just a moment...</title><script>window._cf_chl_opt={cvId: "2"}</script>',
)
LOOP = replace(
    page(failure="protocol"),
    error="more than 10 redirects",
    hops=tuple(HTTPHop(f"{T.url}r/{i}", 302, f"/r/{i + 1}") for i in range(11)),
)

WITH_CONTROL = [
    # (id, measurement, control, verdict, layer/method)
    ("accessible", OK, CONTROL, "accessible", None),
    *[
        (f"dns {f}", m([dns_fail(f)]), CONTROL, "blocked", f"dns/{f}")
        for f in ("nxdomain", "servfail", "refused", "no_answer", "timeout")
    ],
    (
        "dns bogon",
        m([system("10.10.34.35")], [tcp("10.10.34.35", "timeout")]),
        CONTROL,
        "blocked",
        "dns/bogon",
    ),
    (
        "dns injected",
        m(
            [
                dns_ok(
                    B,
                    responses=(
                        DNSResponse(0.01, "NOERROR", (B,)),
                        DNSResponse(0.05, "NOERROR", (A,)),
                    ),
                )
            ]
        ),
        CONTROL,
        "blocked",
        "dns/injected",
    ),
    (
        "dns inconsistent: other address, no valid certificate there",
        m([system(B)], [tcp(B)], [tls(B, failure="invalid_certificate")]),
        ctl(tls_=(tls(), tls(B, failure="invalid_certificate"))),
        "blocked",
        "dns/inconsistent",
    ),
    *[
        (f"tcp {f}", m([system(A)], [tcp(failure=f)]), CONTROL, "blocked", f"tcp/{f}")
        for f in ("timeout", "reset", "refused", "unreachable")
    ],
    *[
        (f"tls {f}", m([system(A)], [tcp()], [tls(failure=f)]), CONTROL, "blocked", f"tls/{f}")
        for f in ("reset", "timeout", "eof", "alert")
    ],
    (
        "tls protocol: the ClientHello answered with HTTP, the control completes there",
        m([system(A)], [tcp()], [tls(failure="protocol")]),
        CONTROL,
        "blocked",
        "tls/protocol",
    ),
    (
        "a non-TLS answer the control gets too is the server's: down",
        m([system(A)], [tcp()], [tls(failure="protocol")]),
        ctl(tls_=(tls(failure="protocol"),)),
        "down",
        None,
    ),
    (
        "a name that exists nowhere, answered here: the answer is forged",
        m(
            [system(B)],
            [tcp(B)],
            [],
            [],
            page(url=HTTP_T.url, address=B, title="Blocked", sample=BLOCKPAGE),
            target=HTTP_T,
        ),
        ctl(
            dns_=(dns_fail("nxdomain"),),
            tcp_=(tcp(B),),
            tls_=(),
            http_=page(url=HTTP_T.url, address=B, title="Blocked", sample=BLOCKPAGE),
            target=HTTP_T,
        ),
        "blocked",
        "dns/inconsistent",
    ),
    (
        "a name that resolves to loopback for the control too: down",
        m([system("127.0.0.1")]),
        ctl(dns_=(system("127.0.0.1"),), tcp_=(), tls_=()),
        "down",
        None,
    ),
    (
        "a redirect loop the control is sent round too: down",
        m([system(A)], [tcp()], [tls()], [], LOOP),
        ctl(http_=LOOP),
        "down",
        None,
    ),
    (
        "the site's own challenge (Cloudflare's 503) to this vantage, the page to the control",
        m([system(A)], [tcp()], [], [], CHALLENGE, target=HTTP_T),
        ctl(target=HTTP_T),
        "accessible",
        None,
    ),
    (
        "challenge markers without the vendor's header lower nothing: a diff",
        m([system(A)], [tcp()], [], [], replace(CHALLENGE, headers={}), target=HTTP_T),
        ctl(target=HTTP_T),
        "blocked",
        "http/diff",
    ),
    (
        "a blockpage fingerprint on a challenge-looking page still counts",
        m(
            [system(A)],
            [tcp()],
            [],
            [],
            replace(CHALLENGE, body_sample=CHALLENGE.body_sample + BLOCKPAGE),
            target=HTTP_T,
        ),
        ctl(target=HTTP_T),
        "blocked",
        "http/blockpage",
    ),
    (
        "a redirect loop here only is no block",
        m([system(A)], [tcp()], [tls()], [], LOOP),
        CONTROL,
        "inconclusive",
        None,
    ),
    (
        "tls invalid_certificate (interception)",
        m([system(A)], [tcp()], [tls(failure="invalid_certificate")]),
        CONTROL,
        "blocked",
        "tls/invalid_certificate",
    ),
    *[
        (
            f"http {f}",
            m([system(A)], [tcp()], [tls()], [], page(failure=f)),
            CONTROL,
            "blocked",
            f"http/{f}",
        )
        for f in ("reset", "timeout", "eof")
    ],
    (
        "http stall: headers and 16 KB, then silence (Russia's freeze)",
        m([system(A)], [tcp()], [tls()], [], STALLED),
        CONTROL,
        "blocked",
        "http/stall",
    ),
    (
        "the response stalls for the control too: down",
        m([system(A)], [tcp()], [tls()], [], STALLED),
        ctl(http_=STALLED),
        "down",
        None,
    ),
    (
        "a slow server (first byte late, then the whole page) is no stall",
        m([system(A)], [tcp()], [tls()], [], replace(page(), ttfb=4.0)),
        CONTROL,
        "accessible",
        None,
    ),
    (
        "a body cut at the probe's own cap is no stall",
        m([system(A)], [tcp()], [tls()], [], replace(page(length=1 << 20), truncated="cap")),
        CONTROL,
        "accessible",
        None,
    ),
    (
        "http blockpage by body",
        m(
            [system(A)],
            [tcp()],
            [],
            [],
            page(url=HTTP_T.url, sample='<iframe src="http://10.10.34.34?type=Invalid Site">'),
            target=HTTP_T,
        ),
        ctl(target=HTTP_T),
        "blocked",
        "http/blockpage",
    ),
    (
        "http blockpage by redirect",
        m(
            [system(A)],
            [tcp()],
            [],
            [],
            page(url=HTTP_T.url, hops=(HTTPHop(HTTP_T.url, 302, "http://warning.rt.ru/?id=1"),)),
            target=HTTP_T,
        ),
        ctl(target=HTTP_T),
        "blocked",
        "http/blockpage",
    ),
    (
        "http diff over plain HTTP",
        m(
            [system(A)],
            [tcp()],
            [],
            [],
            page(url=HTTP_T.url, title="Access denied", length=300, sha="b" * 64),
            target=HTTP_T,
        ),
        ctl(target=HTTP_T),
        "blocked",
        "http/diff",
    ),
    (
        "throttled",
        m([system(A)], [tcp()], [tls()], [], page(length=60_000, throughput=16_000.0)),
        ctl(http_=page(length=1 << 20, throughput=50_000_000.0)),
        "throttled",
        "http/throttled",
    ),
    # --- false-positive traps: none of these is censorship
    (
        "CDN: another address that serves a valid certificate",
        m([system(B)], [tcp(B)], [tls(B)], [], page(address=B)),
        CONTROL,
        "accessible",
        None,
    ),
    (
        "CDN over plain HTTP: other address, same page",
        m([system(B)], [tcp(B)], [], [], page(url=HTTP_T.url, address=B), target=HTTP_T),
        ctl(target=HTTP_T),
        "accessible",
        None,
    ),
    (
        "down: NXDOMAIN from the control too",
        m([dns_fail("nxdomain")]),
        ctl(dns_=(dns_fail("nxdomain"),), tcp_=(), tls_=()),
        "down",
        None,
    ),
    (
        "down: TCP refused from the control too",
        m([system(A)], [tcp(failure="refused")]),
        ctl(tcp_=(tcp(failure="refused"),), tls_=()),
        "down",
        None,
    ),
    (
        "down: TLS fails from the control too",
        m([system(A)], [tcp()], [tls(failure="eof")]),
        ctl(tls_=(tls(failure="eof"),)),
        "down",
        None,
    ),
    (
        "down: certificate broken everywhere",
        m([system(A)], [tcp()], [tls(failure="invalid_certificate")]),
        ctl(tls_=(tls(failure="invalid_certificate"),)),
        "down",
        None,
    ),
    (
        "down: HTTP fails from the control too",
        m([system(A)], [tcp()], [tls()], [], page(failure="reset")),
        ctl(http_=page(failure="timeout")),
        "down",
        None,
    ),
    (
        "the control reached other addresses only",
        m([system(A)], [tcp(failure="timeout")]),
        ctl(dns_=(system(C_ADDR),), tcp_=(tcp(C_ADDR),)),
        "inconclusive",
        None,
    ),
    (
        "site's own 451 over plain HTTP",
        m(
            [system(A)],
            [tcp()],
            [],
            [],
            page(url=HTTP_T.url, status=451, title="Unavailable", length=200, sha="c" * 64),
            target=HTTP_T,
        ),
        ctl(target=HTTP_T),
        "accessible",
        None,
    ),
    (
        "regional edition: the site redirects this country to another of its own hosts",
        m(
            [system(A)],
            [tcp()],
            [],
            [],
            page(
                url=HTTP_T.url,
                title="Новости",
                length=900,
                sha="f" * 64,
                hops=(HTTPHop(HTTP_T.url, 302, "http://ru.news.example/"),),
                final="http://ru.news.example/",
            ),
            target=HTTP_T,
        ),
        ctl(target=HTTP_T),
        "accessible",
        None,
    ),
    (
        "localized page: same title, other length",
        m(
            [system(A)],
            [tcp()],
            [],
            [],
            page(url=HTTP_T.url, length=3000, sha="d" * 64),
            target=HTTP_T,
        ),
        ctl(target=HTTP_T),
        "accessible",
        None,
    ),
    (
        "HTTPS page differing from the control's is never a diff",
        m([system(A)], [tcp()], [tls()], [], page(title="Другой", length=100, sha="e" * 64)),
        CONTROL,
        "accessible",
        None,
    ),
    (
        "slow vantage link is not throttling",
        m([system(A)], [tcp()], [tls()], [], page(length=1 << 20, throughput=600_000.0)),
        ctl(http_=page(throughput=50_000_000.0)),
        "accessible",
        None,
    ),
    (
        "too little data to call a rate",
        m([system(A)], [tcp()], [tls()], [], page(length=5000, throughput=2000.0)),
        ctl(http_=page(throughput=50_000_000.0)),
        "accessible",
        None,
    ),
    (
        "AAAA empty while A answers",
        m(
            [
                dns_ok(A),
                DNSObservation("192.0.2.53", "udp", "AAAA", 0.01, "NOERROR", failure="no_answer"),
            ],
            [tcp()],
            [tls()],
            [],
            page(),
        ),
        CONTROL,
        "accessible",
        None,
    ),
    (
        "the control helper is unreachable",
        m([system(A)], [tcp(failure="timeout")]),
        Control(error="connection refused"),
        "inconclusive",
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "meas", "control", "verdict", "blocking"),
    WITH_CONTROL,
    ids=[c[0] for c in WITH_CONTROL],
)
def test_verdict_with_control(
    name: str, meas: Measurement, control: Control, verdict: str, blocking: str | None
) -> None:
    v = judge(meas, control, public_ranges=PUBLIC)
    assert (v.verdict, f"{v.blocking.layer}/{v.blocking.method}" if v.blocking else None) == (
        verdict,
        blocking,
    ), v.explanation
    assert v.explanation and v.summary


def documented_methods() -> set[str]:
    """The table of layers and methods in docs/vocabulary.md, read from the page itself."""
    text = (REPO / "docs" / "vocabulary.md").read_text(encoding="utf-8")
    table = text.split("| layer | methods |")[1].split("\n\n")[0]
    out: set[str] = set()
    for row in table.splitlines()[2:]:
        layer_cell, methods_cell = (c.strip() for c in row.strip().strip("|").split("|", 1))
        if layer_cell == "(throttled)":
            out.add("http/throttled")
            continue
        layer = layer_cell.strip("`")
        said = re.sub(r"\([^)]*\)", "", methods_cell.split(" — ")[0])  # not what explains them
        out |= {f"{layer}/{m}" for m in re.findall(r"`([a-z_]+)`", said)}
    return out


def test_the_vocabulary_is_the_documented_table() -> None:
    """The typed vocabulary and the users' table in docs/ name the same methods: a method added
    to the docs must be added to the probe (and a verdict path for it), and the reverse."""
    ours = {f"{layer}/{method}" for layer, methods in METHODS.items() for method in methods}
    assert ours == documented_methods()


def test_every_method_of_the_tcp_path_has_a_verdict_row() -> None:
    """Every (layer, method) the TCP path can give comes out of some row above."""
    rows = {c[4] for c in WITH_CONTROL if c[4]}
    tcp_path = {f"{layer}/{m}" for layer, ms in METHODS.items() if layer != "quic" for m in ms}
    assert tcp_path - rows == set()


def test_unreachable_control_says_so() -> None:
    v = judge(m([system(A)], [tcp(failure="timeout")]), Control(error="connection refused"))
    assert "control helper did not answer (connection refused)" in v.explanation


def test_a_known_censor_dns_answer_needs_no_control() -> None:
    fp = Fingerprint("ooni.cn_0", "dns", "full", "8.7.198.45")
    v = judge(m([system("8.7.198.45")], [tcp("8.7.198.45", "timeout")]), None, (fp,))
    assert (v.verdict, v.blocking) == ("blocked", Blocking("dns", "inconsistent"))
    assert "ooni.cn_0" in v.explanation


def test_a_single_failure_that_a_retry_does_not_confirm_is_not_a_block() -> None:
    """One lost packet: the first measurement times out, the re-measurement loads."""
    blocked = judge(m([system(A)], [tcp(failure="timeout")]), CONTROL)
    fine = judge(OK, CONTROL)
    verdict, used = settle([blocked, fine])
    assert (verdict.verdict, verdict.attempts, verdict.agreed) == ("accessible", 2, 1)
    assert "not confirmed" in verdict.explanation and used == 1  # the evidence of the last
    confirmed, used = settle([blocked, blocked])
    assert used == 0  # the first measurement says how: later ones may see a residual penalty
    assert (confirmed.verdict, confirmed.attempts, confirmed.agreed) == ("blocked", 2, 2)


def test_measurements_that_disagree_say_what_each_saw() -> None:
    """Blocked twice, but not the same way: the explanation names what the other measurement
    saw, and each measurement's diagnosis is kept for the JSON."""
    reset = judge(m([system(A)], [tcp()], [tls(failure="reset")]), CONTROL)
    timeout = judge(m([system(A)], [tcp()], [tls(failure="timeout")]), CONTROL)
    settled, used = settle([reset, timeout])
    assert (settled.verdict, str(settled.blocking), settled.agreed, used) == (
        "blocked",
        "tls/reset",
        1,
        0,
    )
    assert settled.explanation.endswith(
        f"(seen in 1 of 2 measurements; the other: blocked tls/timeout ({timeout.summary}))"
    )
    assert [(str(x.verdict), str(x.blocking)) for x in settled.seen] == [
        ("blocked", "tls/reset"),
        ("blocked", "tls/timeout"),
    ]
    assert [x.explanation for x in settled.seen] == [reset.explanation, timeout.explanation]
    assert [x.explanation for x in settle([reset])[0].seen] == [""]  # the result's own says it
    fine = judge(OK, CONTROL)
    three, _ = settle([reset, fine, reset])
    assert three.explanation.endswith(f"; the other: accessible ({fine.summary}))")
    assert [str(x.verdict) for x in three.seen] == ["blocked", "accessible", "blocked"]


def test_an_unreachable_extra_resolver_is_not_the_targets_block() -> None:
    """8.8.8.8 blocked in the country says nothing about the target the system resolver finds."""
    silent = DNSObservation("8.8.8.8", "udp", "A", 2.0, failure="timeout")
    v = judge(m([system(A), silent], [tcp()], [tls()], [], page()), CONTROL, public_ranges=PUBLIC)
    assert v.verdict == "accessible"
    nx = DNSObservation("8.8.8.8", "udp", "A", 0.01, "NXDOMAIN", failure="nxdomain")
    lie = judge(m([system(A), nx], [tcp()], [tls()], [], page()), CONTROL, public_ranges=PUBLIC)
    assert (lie.verdict, lie.blocking) == ("blocked", Blocking("dns", "nxdomain"))


def test_a_redirect_to_another_site_is_still_a_diff() -> None:
    """Only the site's own hosts count as a regional edition; an unknown ISP page does not."""
    hop = (HTTPHop(HTTP_T.url, 302, "http://filter.isp.example/denied"),)
    denied = page(
        url=HTTP_T.url,
        title="Denied",
        length=300,
        sha="b" * 64,
        hops=hop,
        final="http://filter.isp.example/denied",
    )
    v = judge(
        m([system(A)], [tcp()], [], [], denied, target=HTTP_T),
        ctl(target=HTTP_T),
        public_ranges=PUBLIC,
    )
    assert (v.verdict, v.blocking) == ("blocked", Blocking("http", "diff"))


def test_a_stall_says_how_many_bytes_came_and_when() -> None:
    v = judge(m([system(A)], [tcp()], [tls()], [], STALLED), CONTROL)
    assert "16384 bytes of the response arrived, the last 310 ms after the request" in v.explanation
    assert "neither FIN nor RST" in v.explanation and "after 16384 B" in v.summary
    assert judge(m([system(A)], [tcp()], [tls()], [], STALLED)).verdict == "inconclusive"


def test_a_stall_inside_the_first_tls_record_counts_the_bytes_on_the_wire() -> None:
    frozen = replace(STALLED, received=0, received_wire=4380)
    v = judge(m([system(A)], [tcp()], [tls()], [], frozen), CONTROL)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("http", "stall"))
    assert "after 4380 B" in v.summary


@pytest.mark.parametrize(
    ("status", "headers", "sample", "seen"),
    [
        (503, {"server": "cloudflare"}, "<title>Just a moment...</title>", "Cloudflare"),
        (403, {"cf-mitigated": "challenge"}, "", "Cloudflare's browser check (cf-mitigated"),
        (403, {"server": "AkamaiGHost"}, "Access Denied ... Reference #18.2b", "Akamai"),
        (403, {"x-iinfo": "1-2-3"}, "Incapsula incident ID: 123", "Incapsula"),
        (403, {"x-sucuri-id": "1"}, "Sucuri WebSite Firewall - Access Denied", "Sucuri"),
        (403, {"server": "ddos-guard"}, "<title>DDoS-Guard</title>", "DDoS-Guard"),
        (202, {"x-amzn-waf-action": "challenge"}, "", "AWS WAF"),
        (403, {"x-amzn-waf-action": "captcha"}, "", "AWS WAF"),
        (405, {"x-amzn-waf-action": "challenge"}, "", "AWS WAF"),
        (429, {"server": "cloudflare"}, "<title>Just a moment...</title>", "Cloudflare"),
        (200, {"server": "cloudflare"}, "<title>Just a moment...</title>", None),  # a page
        (503, {"server": "nginx"}, "<title>Just a moment...</title>", None),  # no vendor
        (503, {"server": "cloudflare"}, "<title>Service unavailable</title>", None),  # no marker
    ],
)
def test_challenge_pages_are_recognised_by_what_they_carry(
    status: int, headers: dict[str, str], sample: str, seen: str | None
) -> None:
    got = challenge(replace(page(status, headers=headers, sample=sample), title=""))
    assert (got is None) if seen is None else (got is not None and seen in got), got


def test_the_sites_challenge_is_named_in_the_explanation() -> None:
    v = judge(
        m([system(A)], [tcp()], [], [], CHALLENGE, target=HTTP_T),
        ctl(target=HTTP_T),
        public_ranges=PUBLIC,
    )
    assert "Cloudflare's browser check (server: cloudflare, 'Just a moment...')" in v.explanation
    assert "the site's doing, not censorship" in v.explanation
    assert v.summary == "site's challenge (Cloudflare's browser check)"
    https = judge(
        m([system(A)], [tcp()], [tls()], [], replace(CHALLENGE, url=T.url)),
        CONTROL,
        public_ranges=PUBLIC,
    )
    assert https.verdict == "accessible" and "challenged this vantage" in https.explanation


# --- rows that hold the rules' every condition (found by scripts/mutation) ----------------------


def test_a_hops_dns_that_is_down_is_no_block_where_the_chain_went_on() -> None:
    """The hop's host does not resolve for the control either, but another resolver of the
    vantage answered and the chain loaded its page: that hop's DNS is not the verdict."""
    hop_url = "https://cdn.example/"
    hop = Hop(hop_url, (dns_fail("nxdomain"), dns_ok(B)), (tcp(B),), (tls(B, sni="cdn.example"),))
    loaded = replace(page(), hops=(HTTPHop(T.url, 302, hop_url),), connections=(hop,))
    control = ctl(http_=replace(page(), connections=(Hop(hop_url, (dns_fail("nxdomain"),)),)))
    v = judge(m([system(A)], [tcp()], [tls()], [], loaded), control, public_ranges=PUBLIC)
    assert v.verdict == "accessible", v.explanation


def test_a_control_that_looked_nothing_up_says_nothing_of_the_name() -> None:
    """An answer beside a control without lookups (a helper that sent none) is not "a name that
    does not exist"."""
    empty = Control(Measurement(T, 0.0, (), (tcp(),), (tls(),), (), page()))
    reset = tls(B, failure="reset")  # nothing proves B genuine
    v = judge(m([system(B)], [tcp(B)], [reset]), empty, public_ranges=PUBLIC)
    assert v.blocking != Blocking("dns", "inconsistent"), v.explanation
    assert "does not exist" not in v.explanation


def test_special_purpose_everywhere_and_a_failed_fetch_is_down() -> None:
    """Loopback for everyone, and what this vantage reached there failed: down (an intranet
    page that loads here is judged as any page)."""
    meas = m([system("127.0.0.1")], [tcp("127.0.0.1")], [], [], page(failure="reset"))
    control = ctl(dns_=(system("127.0.0.1"),), tcp_=(), tls_=(), http_=page(failure="timeout"))
    assert judge(meas, control).verdict == "down"
    # what the control's own loopback serves is no site to compare with: still down, not blocked
    served = ctl(dns_=(system("127.0.0.1"),), tcp_=(), tls_=(), http_=page())
    assert judge(meas, served).verdict == "down"


def test_a_redirect_loop_without_the_controls_exchange_is_not_compared() -> None:
    v = judge(m([system(A)], [tcp()], [tls()], [], LOOP), Control(error="HTTP 503"))
    assert v.verdict == "inconclusive" and "more than 10 redirects" in v.explanation


def test_a_challenge_the_control_gets_too_is_the_sites_page_for_everyone() -> None:
    both = ctl(target=HTTP_T, http_=CHALLENGE)
    v = judge(m([system(A)], [tcp()], [], [], CHALLENGE, target=HTTP_T), both, public_ranges=PUBLIC)
    assert v.verdict == "accessible" and "while the control gets" not in v.explanation
    assert "HTTP 503 'Just a moment...' from 192.0.2.10 over plain HTTP" in v.explanation


def test_a_dns_failure_without_a_route_says_why_others_do_not() -> None:
    no_route = DNSObservation(
        "system", "system", "A+AAAA", 0.0, failure="unreachable", error="no route to any resolver"
    )
    v = judge(m([no_route]))
    assert "system A+AAAA unreachable (no route to any resolver)" in v.explanation
    nx = DNSObservation("system", "system", "A+AAAA", 0.0, failure="nxdomain", error="gai says")
    assert "gai says" not in judge(m([nx])).explanation


def test_the_control_failing_at_one_of_two_failed_addresses_is_not_down() -> None:
    """TCP fails at both addresses here; the control tried one of them, and failed there too:
    the other is unexplained, so neither down nor blocked."""
    meas = m([system(A, B)], [tcp(A, failure="timeout"), tcp(B, failure="timeout")])
    control = ctl(dns_=(system(A, B),), tcp_=(tcp(A, failure="timeout"),), tls_=(), http_=None)
    v = judge(meas, control, public_ranges=PUBLIC)
    assert v.verdict == "inconclusive", v.explanation


def test_a_rate_limit_challenge_is_named_as_the_sites_challenge() -> None:
    """429 with a vendor's challenge page: the site's bot defence, named (not merely a client
    the site rate-limits)."""
    limited = m([system(A)], [tcp()], [], [], replace(CHALLENGE, status=429), target=HTTP_T)
    v = judge(limited, ctl(target=HTTP_T), public_ranges=PUBLIC)
    assert v.verdict == "accessible"
    assert "Cloudflare's browser check" in v.explanation


def test_a_public_answer_beside_a_control_that_resolves_to_loopback_is_not_down() -> None:
    """Only where both sides resolve to special-purpose addresses does the name point nowhere."""
    meas = m([system(B)], [tcp(B)], [tls(B, failure="reset")])
    control = ctl(dns_=(system("127.0.0.1"),), tcp_=(), tls_=(), http_=page())
    v = judge(meas, control, public_ranges=PUBLIC)
    assert "special-purpose" not in v.explanation, v.explanation
