"""The verdict of a remote measurement: pure, like the local one.

A remote measurement sees only the censors on the path that act on traffic from abroad (the GFW
acts in both directions; Russia's TSPU boxes only on their subscribers' traffic). So it claims a
block only where a destination's harmless exchange went through and the target's did not, or an
open resolver in the country lies, and where nothing interfered it says exactly that — "no
interference on this path" (verdict `accessible`, perspective `remote`) — never that the
service is accessible in the country. A destination that proves nothing (an address that answers
the harmless name, a server that fails the harmless exchange too, a resolver that does not
answer) is reported as unusable, not as a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from probe.model import (
    Blocking,
    Diagnosis,
    DNSObservation,
    Measurement,
    NameCheck,
    RemotePath,
    SilentCheck,
)
from probe.policy import family, is_special
from probe.verdict.explain import DNS_FAILURES, HTTP_FAILURES, TLS_FAILURES, most_common
from probe.verdict.fingerprints import BUILTIN, Fingerprint, match_http
from probe.vocabulary import Failure, Layer, Method, Verdict

SCOPE = "a remote measurement sees only censors that act on traffic from abroad"


@dataclass(frozen=True, slots=True)
class _Finding:
    """What one destination showed: a block, a clear path, or nothing usable (`unusable`)."""

    text: str
    blocking: Blocking | None = None
    summary: str = ""
    unusable: bool = False


def judge_remote(
    m: Measurement,
    fingerprints: Sequence[Fingerprint] = BUILTIN,
    public_ranges: Sequence[str] = (),
) -> Diagnosis:
    """The verdict on one target seen from abroad toward `m.remote.country`."""
    assert m.remote is not None
    r = m.remote
    host = m.target.host
    findings = [
        *(_silent(c, m) for c in r.silent),
        *(_resolver(o, m, r, public_ranges) for o in r.resolvers),
        *(_name(n, host, fingerprints) for n in r.names),
    ]
    blocks = [f for f in findings if f.blocking is not None]
    usable = [f for f in findings if not f.unusable]
    others = "; ".join(f.text for f in findings if f is not (blocks[0] if blocks else None))
    seen = f"seen from abroad toward {r.country}"
    if blocks:
        first = blocks[0]
        also = f" (also: {others})" if others else ""
        return Diagnosis(
            Verdict.BLOCKED, first.blocking, f"{first.text}, {seen}{also}", first.summary
        )
    if usable:
        return Diagnosis(
            Verdict.ACCESSIBLE,
            None,
            f"No interference on this path, {seen}: {others} ({SCOPE}: this does not say "
            f"whether users in {r.country} reach {host})",
            "no interference on this path",
        )
    why = others or "no destination listed for it"
    return Diagnosis(
        Verdict.INCONCLUSIVE,
        None,
        f"No usable destination, {seen}: {why}",
        "no usable remote destination",
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _silent(c: SilentCheck, m: Measurement) -> _Finding:
    """Technique 1: the harmless name must get no answer; then any answer is forged — unless it
    is the host's own addresses (a server answering for the host's zone, not a forger)."""
    host = m.target.host
    if any(r.error is None for r in c.harmless.responses):
        return _Finding(
            f"{c.destination} answered the harmless name {c.name}: it runs a resolver, "
            "unusable for injection",
            unusable=True,
        )
    silent = "was refused with ICMP" if c.harmless.port_unreachable else "got no answer"
    for q in c.queries:
        replies = [r for r in q.responses if r.error is None]
        if not replies:
            continue
        addresses = [a for r in replies for a in r.addresses]
        if addresses and set(addresses) <= set(m.addresses()):
            return _Finding(
                f"{c.destination} answered {', '.join(dict.fromkeys(addresses))} for {host}, "
                "the addresses it has from here: it answers for the name's zone, unusable for "
                "injection",
                unusable=True,
            )
        answers = addresses or [replies[0].rcode]
        only = 6 if q.qtype == "AAAA" else None  # A is asked first: it got no answer
        return _Finding(
            f"{q.qtype} query for {host} to {c.destination}, which runs no resolver (a query "
            f"for {c.name} {silent}), was answered {', '.join(dict.fromkeys(answers))} after "
            f"{_ms(replies[0].elapsed)}: injected on the path",
            Blocking(Layer.DNS, Method.INJECTED, ip_version=only),
            f"injected DNS answer {answers[0]}",
        )
    return _Finding(f"no answer for {host} from {c.destination}, which runs no resolver")


def _resolver(
    o: DNSObservation, m: Measurement, r: RemotePath, public_ranges: Sequence[str]
) -> _Finding:
    """Technique 2: an open resolver in the country against this vantage's own resolution."""
    who = f"the open resolver {o.resolver}"
    if not o.responses:
        return _Finding(f"{who} did not answer ({o.failure}: {o.error})", unusable=True)
    resolved = [a for d in m.dns if d.failure is None for a in d.addresses]
    if not resolved:
        failure = most_common(d.failure for d in m.dns)
        return _Finding(f"{m.target.host} does not resolve from here either ({failure})")
    own = list(dict.fromkeys(a for a in resolved if family(a) == 4))  # it was asked for A
    if not own:
        return _Finding(f"{m.target.host} has only IPv6 addresses from here: not compared")
    if o.failure in (Failure.SERVFAIL, Failure.REFUSED):
        return _Finding(
            f"{who} answered {o.rcode or o.failure} for {m.target.host}: a resolver refuses or "
            "fails a name for reasons of its own (its access list, the name's servers out of its "
            "reach), not claimed",
            unusable=True,
        )
    if o.failure in DNS_FAILURES:
        return _Finding(
            f"{who} answered {o.rcode or o.failure} for {m.target.host}, which resolves to "
            f"{own[0]} from here",
            Blocking(Layer.DNS, Method(o.failure)),
            f"DNS {o.failure} from {o.resolver}",
        )
    addresses = list(o.addresses)
    if not addresses:  # a reply without addresses is NO_ANSWER above; an unparsable one here
        return _Finding(f"{who} answered nothing usable ({o.error})", unusable=True)
    special = [a for a in addresses if is_special(a, public_ranges)]
    if len(special) == len(addresses) and not all(is_special(a, public_ranges) for a in own):
        return _Finding(
            f"{who} answered {', '.join(addresses[:3])} for {m.target.host}: special-purpose "
            f"addresses, where it resolves to {own[0]} from here",
            Blocking(Layer.DNS, Method.BOGON),
            f"bogon answer {addresses[0]} from {o.resolver}",
        )
    genuine = {t.address for t in r.validation if t.verified and t.sni == m.target.host}
    if set(addresses) & (set(own) | genuine):
        return _Finding(f"{who} answered {', '.join(addresses[:3])}, genuine")
    if not r.answers_verified:
        return _Finding(
            f"{who} answered {', '.join(addresses[:3])} for {m.target.host}, where it resolves "
            f"to {', '.join(own[:3])} from here; the check of the answer was skipped "
            "(remote_verify_answers: false), so it cannot be called forged: not claimed",
            unusable=True,
        )
    if not genuine & set(own):
        return _Finding(
            f"{who} answered {', '.join(addresses[:3])} for {m.target.host}, where it resolves "
            f"to {', '.join(own[:3])} from here; no certificate valid for it is served at "
            f"{own[0]} either, so the answer cannot be checked: not claimed",
            unusable=True,
        )
    return _Finding(
        f"{who} answered {', '.join(addresses[:3])} for {m.target.host}, where it resolves to "
        f"{', '.join(own[:3])} from here, and no certificate valid for it is served there",
        Blocking(Layer.DNS, Method.INCONSISTENT),
        f"DNS answer {addresses[0]} from {o.resolver} not genuine",
    )


def _name(n: NameCheck, host: str, fingerprints: Sequence[Fingerprint]) -> _Finding:
    """Technique 3: the target's name against a harmless one, to the same server."""
    if n.target is not None:
        h, t = n.harmless, n.target
        assert h is not None  # the two are made together
        if h.failure is not None:
            return _Finding(
                f"{n.destination}:443 failed the harmless SNI {h.sni} too ({h.failure}): unusable",
                unusable=True,
            )
        if t.failure is None:
            return _Finding(f"a ClientHello for {host} to {n.destination} completed")
        if not t.connected or t.failure not in TLS_FAILURES:
            return _Finding(
                f"{n.destination}:443 failed the SNI {host} with {t.failure} ({t.error}), which "
                "no censor on the path needs to explain: not claimed",
                unusable=True,
            )
        return _Finding(
            f"a ClientHello with SNI {host} to {n.destination}:443 got {t.failure} after "
            f"{_ms(t.elapsed)} ({t.error}), where the harmless SNI {h.sni} completed",
            Blocking(Layer.TLS, Method(t.failure)),
            f"SNI {host}: {t.failure}",
        )
    hh, th = n.harmless_http, n.target_http
    assert hh is not None and th is not None  # an http target's: made together
    if hh.failure is not None:
        return _Finding(
            f"{n.destination}:80 failed a request for a harmless Host too ({hh.failure}): unusable",
            unusable=True,
        )
    if th.failure is not None and th.failure not in HTTP_FAILURES:
        return _Finding(
            f"{n.destination}:80 failed a request with Host {host} with {th.failure} "
            f"({th.error}), which no censor on the path needs to explain: not claimed",
            unusable=True,
        )
    if th.failure is not None:
        return _Finding(
            f"a request with Host {host} to {n.destination}:80 got {th.failure} ({th.error}), "
            f"where a harmless Host got HTTP {hh.status}",
            Blocking(Layer.HTTP, Method(th.failure)),
            f"Host {host}: {th.failure}",
        )
    theirs = {fp.name for fp, _ in match_http(fingerprints, hh)}
    for fp, where in match_http(fingerprints, th):
        if fp.name not in theirs:
            return _Finding(
                f"a request with Host {host} to {n.destination}:80 got a known blockpage "
                f"({fp.label}, matched in {where}), a harmless Host did not",
                Blocking(Layer.HTTP, Method.BLOCKPAGE),
                f"blockpage {fp.name}",
            )
    return _Finding(f"a request with Host {host} to {n.destination} got HTTP {th.status}")
