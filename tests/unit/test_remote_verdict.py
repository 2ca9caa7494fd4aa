"""The remote verdict as a table: what a vantage abroad saw toward a country's destinations, and
what a user must be told — interference on the path (with how), no interference on this path
(never access in the country), or no usable destination."""

from __future__ import annotations

from dataclasses import replace

import pytest

from probe.model import (
    DNSObservation,
    DNSResponse,
    HTTPObservation,
    Measurement,
    NameCheck,
    RemotePath,
    SilentCheck,
    Target,
    TLSObservation,
)
from probe.verdict import judge_remote
from probe.vocabulary import Failure

T = Target.parse("https://www.clubhouse.com/")
H = Target.parse("http://www.clubhouse.com/")
HOST = "www.clubhouse.com"
SILENT = "198.51.100.7"
RESOLVER = "198.51.100.53"
SERVER = "198.51.100.80"
REAL = "192.0.2.10"
FORGED = "203.0.113.66"
OWN = (DNSObservation("system", "system", "A+AAAA", 0.01, addresses=(REAL,)),)
PUBLIC = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")  # documentation: public here


def nothing(qtype: str = "A", icmp: bool = False) -> DNSObservation:
    failure = Failure.UNREACHABLE if icmp else Failure.TIMEOUT
    return DNSObservation(SILENT, "udp", qtype, 2.0, failure=failure, port_unreachable=icmp)


def answered(qtype: str, *addresses: str, rcode: str = "NOERROR") -> DNSObservation:
    reply = DNSResponse(0.031, rcode, addresses)
    return DNSObservation(SILENT, "udp", qtype, 2.0, rcode, addresses, responses=(reply,))


def silent(harmless: DNSObservation | None = None, *queries: DNSObservation) -> SilentCheck:
    return SilentCheck(
        SILENT, "example.com", harmless or nothing(), queries or (nothing(), nothing("AAAA"))
    )


def resolver(*addresses: str, rcode: str = "NOERROR") -> DNSObservation:
    failure = {
        "NXDOMAIN": Failure.NXDOMAIN,
        "SERVFAIL": Failure.SERVFAIL,
        "REFUSED": Failure.REFUSED,
    }.get(rcode)
    if rcode == "NOERROR" and not addresses:
        failure = Failure.NO_ANSWER
    reply = DNSResponse(0.02, rcode, addresses)
    return DNSObservation(
        RESOLVER, "udp", "A", 0.02, rcode, addresses, failure=failure, responses=(reply,)
    )


def hello(sni: str, failure: Failure | None = None, connected: bool = True) -> TLSObservation:
    error = f"{failure} error" if failure else None
    return TLSObservation(SERVER, 443, sni, 0.04, failure, error, connected=connected)


def get(failure: Failure | None = None, body: str = "<title>Institute</title>") -> HTTPObservation:
    status = None if failure else 200
    return HTTPObservation(
        "http://x/", 0.03, failure, f"{failure}" if failure else None, status, body_sample=body
    )


PROOF = replace(hello(HOST), address=REAL, verified=True)  # a valid certificate at our address
SNI_OK = NameCheck(SERVER, hello("example.com"), hello(HOST))
HOST_OK = NameCheck(SERVER, harmless_http=get(), target_http=get())
BLOCKPAGE = "<title>Доступ ограничен</title> Доступ к информационному ресурсу ограничен"


def m(
    target: Target = T,
    silent_checks: tuple[SilentCheck, ...] = (),
    resolvers: tuple[DNSObservation, ...] = (),
    names: tuple[NameCheck, ...] = (),
    validation: tuple[TLSObservation, ...] = (),
    own: tuple[DNSObservation, ...] = OWN,
    verified: bool = True,
) -> Measurement:
    path = RemotePath("CN", silent_checks, resolvers, validation, names, verified)
    return Measurement(replace(target, remote="CN"), 0.0, dns=own, remote=path)


ROWS = [
    # (id, measurement, verdict, layer/method (and family), words)
    (
        "an answer from an address that runs no resolver is injected",
        m(silent_checks=(silent(None, answered("A", FORGED), nothing("AAAA")),)),
        "blocked",
        "dns/injected",
        f"was answered {FORGED} after 31 ms: injected on the path",
    ),
    (
        "a forged AAAA alone names the family",
        m(silent_checks=(silent(None, nothing(), answered("AAAA", "2001::1")),)),
        "blocked",
        "dns/injected (IPv6 only)",
        "AAAA query for www.clubhouse.com",
    ),
    (
        "a forged A and AAAA: both families",
        m(silent_checks=(silent(None, answered("A", FORGED), answered("AAAA", "2001::1")),)),
        "blocked",
        "dns/injected",
        "A query for",
    ),
    (
        "a forged NXDOMAIN from an address that runs no resolver is injected too",
        m(silent_checks=(silent(None, answered("A", rcode="NXDOMAIN"), nothing("AAAA")),)),
        "blocked",
        "dns/injected",
        "was answered NXDOMAIN after 31 ms",
    ),
    (
        "an answer with the host's own addresses is a server of its zone, not a forgery",
        m(silent_checks=(silent(None, answered("A", REAL), nothing("AAAA")),)),
        "inconclusive",
        None,
        f"{SILENT} answered {REAL} for {HOST}, the addresses it has from here",
    ),
    (
        "an address refusing with ICMP runs no resolver either: still usable",
        m(silent_checks=(silent(nothing(icmp=True), answered("A", FORGED), nothing("AAAA")),)),
        "blocked",
        "dns/injected",
        "a query for example.com was refused with ICMP",
    ),
    (
        "an address that answers the harmless name runs a resolver: proves nothing",
        m(silent_checks=(silent(answered("A", "192.0.2.99"), answered("A", FORGED)),)),
        "inconclusive",
        None,
        f"{SILENT} answered the harmless name example.com: it runs a resolver",
    ),
    (
        "no answer anywhere: no interference on this path",
        m(silent_checks=(silent(),)),
        "accessible",
        None,
        f"no answer for {HOST} from {SILENT}, which runs no resolver",
    ),
    (
        "an open resolver's NXDOMAIN for a name that resolves here",
        m(resolvers=(resolver(rcode="NXDOMAIN"),)),
        "blocked",
        "dns/nxdomain",
        f"the open resolver {RESOLVER} answered NXDOMAIN for {HOST}, which resolves to {REAL}",
    ),
    (
        "an open resolver's empty answer",
        m(resolvers=(resolver(),)),
        "blocked",
        "dns/no_answer",
        "answered NOERROR",
    ),
    (
        "an NXDOMAIN where the name does not resolve from here either is no block",
        m(
            resolvers=(resolver(rcode="NXDOMAIN"),),
            own=(DNSObservation("system", "system", "A+AAAA", 0.01, failure=Failure.NXDOMAIN),),
        ),
        "accessible",
        None,
        f"{HOST} does not resolve from here either (nxdomain)",
    ),
    (
        "an open resolver that refuses the name proves nothing without a control",
        m(resolvers=(resolver(rcode="REFUSED"),)),
        "inconclusive",
        None,
        f"the open resolver {RESOLVER} answered REFUSED for {HOST}: a resolver refuses or fails",
    ),
    (
        "an open resolver's SERVFAIL may be the name's servers out of its reach: not claimed",
        m(resolvers=(resolver(rcode="SERVFAIL"),), silent_checks=(silent(),)),
        "accessible",
        None,
        "answered SERVFAIL for www.clubhouse.com: a resolver refuses or fails a name",
    ),
    (
        "a resolver that does not answer is unusable",
        m(resolvers=(DNSObservation(RESOLVER, "udp", "A", 2.0, failure=Failure.TIMEOUT),)),
        "inconclusive",
        None,
        f"the open resolver {RESOLVER} did not answer (timeout",
    ),
    (
        "a garbled reply from a resolver is unusable",
        m(
            resolvers=(
                DNSObservation(
                    RESOLVER,
                    "udp",
                    "A",
                    0.02,
                    failure=Failure.PROTOCOL,
                    error="not DNS",
                    responses=(DNSResponse(0.02, error="not DNS"),),
                ),
            )
        ),
        "inconclusive",
        None,
        f"the open resolver {RESOLVER} answered nothing usable (not DNS)",
    ),
    (
        "the same address as here",
        m(resolvers=(resolver(REAL),)),
        "accessible",
        None,
        f"answered {REAL}, genuine",
    ),
    (
        "another address with a valid certificate is a CDN's node, not a lie",
        m(
            resolvers=(resolver("192.0.2.77"),),
            validation=(replace(hello(HOST), address="192.0.2.77", verified=True),),
        ),
        "accessible",
        None,
        "answered 192.0.2.77, genuine",
    ),
    (
        "a certificate valid for another name proves nothing",
        m(
            resolvers=(resolver("192.0.2.77"),),
            validation=(
                PROOF,
                replace(hello("other.example"), address="192.0.2.77", verified=True),
            ),
        ),
        "blocked",
        "dns/inconsistent",
        "no certificate valid for it is served there",
    ),
    (
        "another address without a valid certificate is inconsistent",
        m(
            resolvers=(resolver("192.0.2.77"),),
            validation=(PROOF, replace(hello(HOST), address="192.0.2.77")),  # completed, not valid
        ),
        "blocked",
        "dns/inconsistent",
        f"answered 192.0.2.77 for {HOST}, where it resolves to {REAL} from here",
    ),
    (
        "no valid certificate at this vantage's own address either (a site without HTTPS): "
        "another answer cannot be checked",
        m(resolvers=(resolver("192.0.2.77"),), validation=(replace(PROOF, verified=False),)),
        "inconclusive",
        None,
        f"no certificate valid for it is served at {REAL} either, so the answer cannot be checked",
    ),
    (
        "with the answers' check skipped, another address is not claimed",
        m(resolvers=(resolver("192.0.2.77"),), verified=False),
        "inconclusive",
        None,
        "the check of the answer was skipped (remote_verify_answers: false)",
    ),
    (
        "with the answers' check skipped, the host's own address is still genuine",
        m(resolvers=(resolver(REAL),), verified=False),
        "accessible",
        None,
        f"answered {REAL}, genuine",
    ),
    (
        "with the answers' check skipped, a bogon is still a bogon",
        m(resolvers=(resolver("10.10.34.35"),), verified=False),
        "blocked",
        "dns/bogon",
        "special-purpose addresses",
    ),
    (
        "a host with only IPv6 addresses here: its A answer is not compared",
        m(
            resolvers=(resolver(rcode="NOERROR"),),
            own=(DNSObservation("system", "system", "A+AAAA", 0.01, addresses=("2001:db8::10",)),),
        ),
        "accessible",
        None,
        f"{HOST} has only IPv6 addresses from here: not compared",
    ),
    (
        "a special-purpose answer is a bogon",
        m(resolvers=(resolver("10.10.34.35"),)),
        "blocked",
        "dns/bogon",
        "special-purpose addresses",
    ),
    (
        "a special-purpose answer for a name that is special-purpose here too is no bogon",
        m(
            resolvers=(resolver("10.10.34.35"),),
            own=(DNSObservation("system", "system", "A", 0.01, addresses=("10.1.1.1",)),),
            validation=(replace(PROOF, address="10.1.1.1"),),
        ),
        "blocked",
        "dns/inconsistent",
        "answered 10.10.34.35",
    ),
    (
        "one public address among the answers: no bogon",
        m(resolvers=(resolver("10.10.34.35", "192.0.2.77"),), validation=(PROOF,)),
        "blocked",
        "dns/inconsistent",
        "answered 10.10.34.35, 192.0.2.77",
    ),
    (
        "the target's SNI reset where the harmless one completes",
        m(names=(NameCheck(SERVER, hello("example.com"), hello(HOST, Failure.RESET)),)),
        "blocked",
        "tls/reset",
        f"a ClientHello with SNI {HOST} to {SERVER}:443 got reset after 40 ms",
    ),
    (
        "the target's SNI dropped",
        m(names=(NameCheck(SERVER, hello("example.com"), hello(HOST, Failure.TIMEOUT)),)),
        "blocked",
        "tls/timeout",
        "where the harmless SNI example.com completed",
    ),
    (
        "a server that fails the harmless SNI too is unusable",
        m(
            names=(
                NameCheck(
                    SERVER, hello("example.com", Failure.TIMEOUT), hello(HOST, Failure.TIMEOUT)
                ),
            )
        ),
        "inconclusive",
        None,
        "failed the harmless SNI example.com too (timeout): unusable",
    ),
    (
        "a connection that did not open for the target's SNI is not claimed",
        m(
            names=(
                NameCheck(
                    SERVER, hello("example.com"), hello(HOST, Failure.TIMEOUT, connected=False)
                ),
            )
        ),
        "inconclusive",
        None,
        "no censor on the path needs to explain: not claimed",
    ),
    (
        "a failure no censor causes is not claimed",
        m(names=(NameCheck(SERVER, hello("example.com"), hello(HOST, Failure.UNKNOWN)),)),
        "inconclusive",
        None,
        "not claimed",
    ),
    (
        "the target's SNI answered with something that is not TLS, the harmless one completing",
        m(names=(NameCheck(SERVER, hello("example.com"), hello(HOST, Failure.PROTOCOL)),)),
        "blocked",
        "tls/protocol",
        "got protocol after 40 ms",
    ),
    (
        "the SNI completes: no interference",
        m(names=(SNI_OK,)),
        "accessible",
        None,
        f"a ClientHello for {HOST} to {SERVER} completed",
    ),
    (
        "the target's Host reset where a harmless one gets a page",
        m(H, names=(NameCheck(SERVER, harmless_http=get(), target_http=get(Failure.RESET)),)),
        "blocked",
        "http/reset",
        "where a harmless Host got HTTP 200",
    ),
    (
        "a blockpage for the target's Host only",
        m(H, names=(NameCheck(SERVER, harmless_http=get(), target_http=get(body=BLOCKPAGE)),)),
        "blocked",
        "http/blockpage",
        "got a known blockpage",
    ),
    (
        "the server's own page matches a fingerprint for any Host: not a blockpage",
        m(
            H,
            names=(
                NameCheck(
                    SERVER, harmless_http=get(body=BLOCKPAGE), target_http=get(body=BLOCKPAGE)
                ),
            ),
        ),
        "accessible",
        None,
        "got HTTP 200",
    ),
    (
        "a server that fails a harmless Host too is unusable",
        m(H, names=(NameCheck(SERVER, harmless_http=get(Failure.RESET), target_http=get()),)),
        "inconclusive",
        None,
        "failed a request for a harmless Host too (reset): unusable",
    ),
    (
        "a garbled answer to the target's Host is not claimed",
        m(H, names=(NameCheck(SERVER, harmless_http=get(), target_http=get(Failure.PROTOCOL)),)),
        "inconclusive",
        None,
        "not claimed",
    ),
    (
        "the root cause comes first: DNS before the SNI, the others listed",
        m(
            silent_checks=(silent(None, answered("A", FORGED), nothing("AAAA")),),
            names=(NameCheck(SERVER, hello("example.com"), hello(HOST, Failure.RESET)),),
        ),
        "blocked",
        "dns/injected",
        f"(also: a ClientHello with SNI {HOST} to {SERVER}:443 got reset",
    ),
    (
        "one usable destination is enough for a clear path",
        m(silent_checks=(silent(answered("A", "192.0.2.99")),), names=(SNI_OK,)),
        "accessible",
        None,
        "No interference on this path, seen from abroad toward CN",
    ),
    (
        "nothing listed",
        m(),
        "inconclusive",
        None,
        "No usable destination, seen from abroad toward CN: no destination listed for it",
    ),
]


@pytest.mark.parametrize(
    ("case", "measurement", "verdict", "how", "words"), ROWS, ids=[r[0] for r in ROWS]
)
def test_remote_verdict(
    case: str, measurement: Measurement, verdict: str, how: str | None, words: str
) -> None:
    d = judge_remote(measurement, public_ranges=PUBLIC)
    assert d.verdict == verdict, d.explanation
    assert (str(d.blocking) if d.blocking else None) == how, d.explanation
    assert words in d.explanation


def test_a_clear_path_never_claims_access_in_the_country() -> None:
    d = judge_remote(m(names=(SNI_OK,)))
    assert d.summary == "no interference on this path"
    assert d.explanation.startswith("No interference on this path")
    assert "this does not say whether users in CN reach www.clubhouse.com" in d.explanation


def test_a_blocked_remote_result_says_where_it_was_seen_from() -> None:
    d = judge_remote(m(names=(NameCheck(SERVER, hello("example.com"), hello(HOST, Failure.EOF)),)))
    assert "seen from abroad toward CN" in d.explanation
    assert d.summary == f"SNI {HOST}: eof"
