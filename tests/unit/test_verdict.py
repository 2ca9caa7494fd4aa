"""The verdict without a control, as a table of observations and what a user must be told."""

from __future__ import annotations

import pytest

from probe.model import (
    Certificate,
    DNSObservation,
    DNSResponse,
    HTTPObservation,
    Measurement,
    Target,
    TCPObservation,
    TLSObservation,
)
from probe.verdict import judge

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
