"""IPv4 and IPv6 judged apart: a censor acting on one family blocks the target with the family
named; a family the control did not measure, or the vantage could not, is never a block."""

from __future__ import annotations

from dataclasses import replace

from probe.model import Blocking, Control, DNSObservation, DNSResponse, Measurement
from probe.verdict import judge
from tests.unit.test_verdict import STALLED, A, ctl, m, page, system, tcp, tls

A6 = "2001:db8::10"
PUBLIC = ("192.0.2.0/24", "2001:db8::/32")


def both(
    tcp4: str | None = None,
    tcp6: str | None = None,
    *,
    http6: object = None,
    notes: tuple[str, ...] = (),
) -> Measurement:
    """The vantage: A and AAAA answered; the connection of each family fails as given."""
    tcps = [tcp(A, tcp4), tcp(A6, tcp6)]
    tlss = [t for t, f in ((tls(A), tcp4), (tls(A6), tcp6)) if f is None]
    h4 = page() if tcp4 is None else None
    h6 = http6 if http6 is not None else (page(address=A6) if tcp6 is None else None)
    meas = m([system(A, A6)], tcps, tlss, [], h4 or h6, notes=notes)
    return replace(meas, http_ipv6=h6 if h4 is not None else None)  # type: ignore[arg-type]


CONTROL = ctl(
    dns_=[system(A, A6)],
    tcp_=[tcp(A), tcp(A6)],
    tls_=[tls(A), tls(A6)],
)


def test_one_blocked_family_blocks_the_target_and_is_named() -> None:
    v = judge(both(tcp6="timeout"), CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("tcp", "timeout", 6))
    assert v.explanation.startswith("over IPv6 only: TCP timeout")
    assert "over IPv4: accessible" in v.explanation and v.summary.startswith("IPv6: ")
    assert str(v.blocking) == "tcp/timeout (IPv6 only)"


def test_ipv4_blocked_while_ipv6_loads() -> None:
    """Only IPv6 connected: its fetch is the measurement's `http` (no `http_ipv6`)."""
    v = judge(both(tcp4="reset"), CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("tcp", "reset", 4))
    assert "over IPv6: accessible" in v.explanation


def test_a_stall_over_ipv4_while_ipv6_loads() -> None:
    """Both connected: IPv4's fetch is `http`, IPv6's `http_ipv6`."""
    assert CONTROL.measurement is not None
    theirs = replace(CONTROL.measurement, http_ipv6=page(address=A6))
    meas = replace(both(), http=STALLED)
    v = judge(meas, replace(CONTROL, measurement=theirs), public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("http", "stall", 4))


def test_an_sni_reset_over_ipv6_only_proven_by_the_harmless_sni_there() -> None:
    """No control: the harmless SNI completing at the IPv6 address is the proof, and it must be
    the IPv6 address's check that counts."""
    harmless = replace(tls(A6, sni="example.com"), verified=False)
    meas = m(
        [system(A, A6)],
        [tcp(A), tcp(A6)],
        [tls(A), tls(A6, failure="reset")],
        [harmless],
        page(),
    )
    v = judge(meas, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("tls", "reset", 6))


def test_an_ipv6_tls_failure_is_not_compared_with_the_controls_ipv4_handshake() -> None:
    """The control reached IPv4 only: its handshake there says nothing of IPv6."""
    meas = m([system(A, A6)], [tcp(A), tcp(A6)], [tls(A), tls(A6, failure="reset")], [], page())
    v = judge(meas, ctl(dns_=[system(A, A6)]), public_ranges=PUBLIC)
    assert v.verdict == "accessible", v.explanation
    assert "over IPv6: not compared (the control did not measure IPv6;" in v.explanation


def test_ipv4_blocked_compared_with_a_control_that_measured_ipv4_only() -> None:
    v4_only = ctl(dns_=[system(A, A6)])
    v = judge(both(tcp4="timeout"), v4_only, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("tcp", "timeout", 4))
    assert "over IPv6: accessible" in v.explanation  # loaded: nothing needed comparing


def test_an_inconclusive_family_the_control_measured_is_said_inconclusive() -> None:
    meas = m(
        [system(A, A6)],
        [tcp(A), tcp(A6)],
        [tls(A), tls(A6, failure="unknown")],
        [],
        page(),
    )
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert v.verdict == "accessible"
    assert v.explanation.endswith("over IPv6: inconclusive (TLS unknown)")


def test_a_control_that_did_not_answer_is_said_so_for_each_family() -> None:
    v = judge(both(tcp6="timeout"), Control(None, error="HTTP 503"), public_ranges=PUBLIC)
    assert v.verdict == "accessible"
    assert "over IPv6: not compared (HTTP 503;" in v.explanation


def test_a_fingerprint_ignored_in_both_families_is_listed_once() -> None:
    quoting = "<p>Доступ к информационному ресурсу ограничен</p>"
    meas = replace(both(), http=page(sample=quoting), http_ipv6=page(address=A6, sample=quoting))
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert v.verdict == "accessible"
    assert len(v.ignored) == 1 and "came over validated TLS" in v.ignored[0]


def test_both_families_blocked_name_no_family() -> None:
    v = judge(both(tcp4="timeout", tcp6="timeout"), CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("tcp", "timeout"))
    assert "over IPv4:" in v.explanation and "over IPv6:" in v.explanation


def test_a_stall_over_one_family() -> None:
    stalled6 = replace(STALLED, address=A6)
    assert CONTROL.measurement is not None
    theirs = replace(CONTROL.measurement, http_ipv6=page(address=A6))
    v = judge(both(http6=stalled6), replace(CONTROL, measurement=theirs), public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("http", "stall", 6))


def test_a_family_the_control_did_not_measure_is_not_compared() -> None:
    v4_only = ctl(dns_=[system(A, A6)])  # the control reached A over IPv4 only
    v = judge(both(tcp6="timeout"), v4_only, public_ranges=PUBLIC)
    assert v.verdict == "accessible", v.explanation
    assert "over IPv6: not compared (the control did not measure IPv6; TCP timeout)" in (
        v.explanation
    )


def test_a_family_down_for_the_control_too_is_not_a_block() -> None:
    control = ctl(dns_=[system(A, A6)], tcp_=[tcp(A), tcp(A6, "timeout")], tls_=[tls(A)])
    v = judge(both(tcp6="timeout"), control, public_ranges=PUBLIC)
    assert v.verdict == "accessible" and "over IPv6: down" in v.explanation


def test_a_vantage_without_ipv6_reports_it_not_measured() -> None:
    """The flow did not try IPv6 (no working IPv6 here): accessible, IPv6 not measured."""
    note = "IPv6 not measured: this vantage has no IPv6 route"
    meas = m([system(A, A6)], [tcp(A)], [tls(A)], [], page(), notes=(note,))
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert v.verdict == "accessible" and v.blocking is None
    assert v.explanation.endswith("IPv6 not measured")


def udp(qtype: str, *answers: tuple[str, ...]) -> DNSObservation:
    responses = tuple(DNSResponse(0.01 * (i + 1), "NOERROR", a) for i, a in enumerate(answers))
    return DNSObservation(
        "203.0.113.53", "udp", qtype, 0.05, "NOERROR", answers[0], responses=responses
    )


def test_a_forged_aaaa_answer_alone_is_an_ipv6_dns_block() -> None:
    """The GFW forges AAAA answers (often Teredo, 2001::/32); the A answers are the real ones."""
    forged = udp("AAAA", ("2001::1234",), (A6,))
    meas = m([udp("A", (A,)), forged], [tcp(A)], [tls(A)], [], page())
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("dns", "injected", 6))
    assert "its A answers (192.0.2.10) are not forged: IPv6 only" in v.explanation


def test_a_forged_a_answer_alone_is_an_ipv4_dns_block() -> None:
    meas = m(
        [udp("A", ("198.51.100.1",), (A,)), udp("AAAA", (A6,))], [tcp(A)], [tls(A)], [], page()
    )
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("dns", "injected", 4))


def test_an_empty_aaaa_answer_or_the_system_resolver_is_no_clean_family() -> None:
    """An AAAA query answered with nothing, and the system resolver's mixed answer, say nothing
    about whether IPv6 would be forged."""
    empty = DNSObservation("203.0.113.53", "udp", "AAAA", 0.02, "NOERROR", ())
    meas = m([udp("A", ("198.51.100.1",), (A,)), empty, system(A)], [tcp(A)], [tls(A)], [], page())
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("dns", "injected"))


def test_forged_answers_for_both_types_name_no_family() -> None:
    meas = m(
        [udp("A", ("198.51.100.1",), (A,)), udp("AAAA", ("2001::1234",), (A6,))],
        [tcp(A)],
        [tls(A)],
        [],
        page(),
    )
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("dns", "injected"))


def test_a_forged_a_answer_for_a_name_without_aaaa_names_no_family() -> None:
    """No IPv6 to compare with: the family is not what the censor chose."""
    meas = m([udp("A", ("198.51.100.1",), (A,))], [tcp(A)], [tls(A)], [], page())
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("dns", "injected"))


def test_a_block_where_the_other_family_was_not_measured_names_no_family() -> None:
    """Vantage without IPv6: IPv4 is blocked, and nothing says IPv6 would not be."""
    note = "IPv6 not measured: this vantage has no IPv6 route"
    meas = m([system(A, A6)], [tcp(A, "timeout")], [], [], None, notes=(note,))
    v = judge(meas, CONTROL, public_ranges=PUBLIC)
    assert (v.verdict, v.blocking) == ("blocked", Blocking("tcp", "timeout"))
    assert v.explanation.endswith("IPv6 not measured")
