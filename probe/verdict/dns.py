"""The DNS room: forged answers racing real ones, resolvers that fail or lie, and what the
control's resolvers say of the same name. Judged for a hop before its families split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from probe.model import Diagnosis, DNSObservation
from probe.policy import is_special
from probe.verdict.explain import DNS_FAILURES, F, blocked, down
from probe.verdict.fingerprints import Fingerprint, match_dns
from probe.verdict.http import same_page
from probe.verdict.join import View
from probe.vocabulary import Layer, Method

QTYPE_FAMILY = {"A": 4, "AAAA": 6}


def injection(lookups: Sequence[DNSObservation], host: str) -> Diagnosis | None:
    """The first forged answer; named with its family where the other family's answers are
    clean (the GFW forges AAAA answers too, a censor may forge one type only)."""
    injected = [(obs, d) for obs in lookups if (d := _injected(obs, host)) is not None]
    if not injected:
        return None
    obs, d = injected[0]
    if {o.qtype for o, _ in injected} not in ({"A"}, {"AAAA"}):
        return d  # both types forged (or by a resolver asked for both at once)
    other_type = "AAAA" if obs.qtype == "A" else "A"
    clean = [o for o in lookups if o.qtype == other_type and o.addresses]
    if not clean:
        return d  # nothing to compare with: the name may have no records of the other type
    f = QTYPE_FAMILY[obs.qtype]
    assert d.blocking is not None
    other = clean[0]
    return replace(
        d,
        blocking=replace(d.blocking, ip_version=f),
        explanation=f"{d.explanation}; its {other.qtype} answers ({other.addresses[0]}) are not "
        f"forged: IPv{f} only",
        summary=f"IPv{f}: {d.summary}",
    )


def _injected(obs: DNSObservation, host: str) -> Diagnosis | None:
    answers = obs.distinct_answers()
    if len(answers) >= 2:
        shown = " then ".join(",".join(a) for a in answers[:3])
        return blocked(
            Layer.DNS,
            Method.INJECTED,
            f"{obs.resolver} answered one {obs.qtype} query for {host} {len(answers)} times "
            f"with different addresses ({shown}): a forged answer raced the real one",
            f"{len(answers)} different answers to one query",
        )
    if obs.port_unreachable and answers:
        return blocked(
            Layer.DNS,
            Method.INJECTED,
            f"an answer for {host} ({','.join(answers[0])}) arrived from {obs.resolver}, "
            "which runs no resolver (ICMP port unreachable): something on the path answered",
            "answer from a host with no resolver",
        )
    return None


def judge_dns(
    x: View, fingerprints: Sequence[Fingerprint], public_ranges: Sequence[str]
) -> Diagnosis | None:
    """Each resolver's answer (or failure) for the hop's host, against the vantage's other
    resolvers, known censors' addresses and the control's resolvers."""
    resolvers: dict[str, list[DNSObservation]] = {}
    for obs in x.hop.probe.dns:
        resolvers.setdefault(obs.resolver, []).append(obs)
    for resolver, observations in resolvers.items():
        addresses = [a for o in observations for a in o.addresses]
        for a in addresses:
            fp = match_dns(fingerprints, a)
            if fp is not None:
                return blocked(
                    Layer.DNS,
                    Method.INCONSISTENT,
                    f"{resolver} answered {a} for {x.host}, a known censor's address ({fp.name})",
                    f"known censor address {a}",
                )
        if not addresses:
            verdict = _failure(x, resolver, observations, resolvers)
        else:
            verdict = _answer(x, resolver, addresses, public_ranges)
        if verdict is not None:
            return verdict
    return None


def _failure(
    x: View,
    resolver: str,
    observations: list[DNSObservation],
    resolvers: dict[str, list[DNSObservation]],
) -> Diagnosis | None:
    first = next((o for o in observations if o.qtype != "AAAA"), observations[0])
    failure = first.failure  # an observation without addresses always says why
    if failure not in DNS_FAILURES:
        return None
    elsewhere = [
        a for r, obs in resolvers.items() if r != resolver for o in obs for a in o.addresses
    ]
    if resolver != "system" and failure == F.TIMEOUT and elsewhere:
        return None  # that resolver is unreachable from here, for every name: not this block
    after = f" after {first.elapsed:.1f} s" if failure == F.TIMEOUT else ""
    # another resolver of this vantage answering with a genuine address is as good as a control
    genuine = [a for a in elsewhere if a in x.hop.genuine]
    if genuine:
        return blocked(
            Layer.DNS,
            failure,
            f"{resolver} says {failure} for {x.host}{after}, while another resolver answers "
            f"{genuine[0]}, where a certificate valid for {x.host} is served",
            f"DNS {failure}; other resolver genuine",
        )
    if x.c is None:
        return None
    control = x.control_addresses()
    if control:
        return blocked(
            Layer.DNS,
            failure,
            f"{resolver} says {failure} for {x.host}{after}; the control resolves it to "
            f"{', '.join(control[:3])}",
            f"DNS {failure}; control resolves",
        )
    c_failures = sorted({str(o.failure) for o in x.c.dns})
    return down(
        f"{x.host} does not resolve from the control either ({', '.join(c_failures)})",
        f"DNS {failure} everywhere",
    )


def _answer(
    x: View, resolver: str, addresses: list[str], public_ranges: Sequence[str]
) -> Diagnosis | None:
    if any(a in x.hop.genuine for a in addresses):
        return None
    if x.c is not None and x.c.dns and all(o.failure == F.NXDOMAIN for o in x.c.dns):
        return blocked(
            Layer.DNS,
            Method.INCONSISTENT,
            f"{resolver} answered {', '.join(addresses[:3])} for {x.host}, a name that does not "
            "exist: the control's resolvers say NXDOMAIN (whatever is served at that address "
            "is not the site's)",
            f"answer {addresses[0]} for a name that does not exist",
        )
    control = x.control_addresses()
    if not control:
        return None
    special = all(is_special(a, public_ranges) for a in addresses)
    if special and all(is_special(a, public_ranges) for a in control):
        if x.http is not None and x.http.failure is None:
            return None  # an intranet's page, loaded from here: judged as any page is
        return down(
            f"{x.host} resolves to special-purpose addresses ({', '.join(addresses[:3])}) here, "
            f"and to {', '.join(control[:3])} for the control too: the name points nowhere on "
            "the internet",
            "special-purpose address everywhere",
        )
    if special:
        return blocked(
            Layer.DNS,
            Method.BOGON,
            f"{resolver} answered {', '.join(addresses[:3])} for {x.host}: "
            f"special-purpose addresses, where the control resolves {control[0]}",
            f"bogon answer {addresses[0]}",
        )
    if set(addresses) & set(control):
        return None
    return _unvalidated(x, resolver, addresses, control)


def _unvalidated(
    x: View, resolver: str, addresses: list[str], control: list[str]
) -> Diagnosis | None:
    h = x.http
    if h is not None and h.address in addresses and same_page(h, x.c_http_ok()):
        return None  # other addresses, same page: a CDN without HTTPS
    return blocked(
        Layer.DNS,
        Method.INCONSISTENT,
        f"{resolver} answered {', '.join(addresses[:3])} for {x.host}; the control "
        f"resolves {', '.join(control[:3])}, and no certificate valid for {x.host} "
        "is served at the vantage's addresses",
        f"DNS answer {addresses[0]} not genuine",
    )
