"""The words of a verdict: the diagnoses the rules return, the failures that can be a block of
each layer, and the sentences every room shares (sizes, rates, what arrived, the first failure
of an inconclusive measurement)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from probe.model import Blocking, Diagnosis, DNSObservation, HTTPObservation
from probe.verdict.join import View
from probe.vocabulary import Failure, Layer, Method, Verdict

F = Failure
# the step failures that are a block of that layer where the control shows the site works
DNS_FAILURES = (F.NXDOMAIN, F.SERVFAIL, F.REFUSED, F.NO_ANSWER, F.TIMEOUT)
TCP_FAILURES = (F.TIMEOUT, F.RESET, F.REFUSED, F.UNREACHABLE)
TLS_FAILURES = (F.RESET, F.TIMEOUT, F.EOF, F.ALERT, F.PROTOCOL)
HTTP_FAILURES = (F.RESET, F.TIMEOUT, F.EOF, F.STALL)


def blocked(layer: Layer, method: Method | Failure, explanation: str, summary: str) -> Diagnosis:
    """A block; a step's failure names its method (the two vocabularies share those words)."""
    return Diagnosis(Verdict.BLOCKED, Blocking(layer, Method(method)), explanation, summary)


def down(explanation: str, summary: str) -> Diagnosis:
    return Diagnosis(Verdict.DOWN, None, f"{explanation}: not censorship", summary)


def most_common(failures: Iterable[Failure | None]) -> Failure:
    """The failure most steps had (the first by name among equals)."""
    counts = Counter(f for f in failures if f is not None)
    return max(sorted(counts), key=lambda f: counts[f])


def final(h: HTTPObservation) -> str:
    """Where the chain ended (the URL itself when nothing redirected)."""
    return h.final_url if h.final_url is not None else h.url


def after_redirects(h: HTTPObservation) -> str:
    return f" after {len(h.hops)} redirect(s) to {h.final_url}" if h.hops else ""


def size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def seconds(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def rate(bps: float) -> str:
    return f"{bps * 8 / 1000:.0f} kbit/s" if bps * 8 < 10_000_000 else f"{bps * 8 / 1e6:.0f} Mbit/s"


def inconclusive(x: View) -> Diagnosis:
    """The first failing step, root cause first, named with its evidence."""
    reason, summary = _first_failure(x)
    m = x.m
    if m.ran_out is not None:
        reason += f" (the target's deadline of {m.deadline:g}s ran out during {m.ran_out})"
    return Diagnosis(Verdict.INCONCLUSIVE, None, f"{reason}; {x.control_missing()}", summary)


def _dns_why(o: DNSObservation) -> str:
    """A DNS failure, with why where nothing could be asked (no resolver, no route)."""
    return f"{o.failure} ({o.error})" if o.failure == F.UNREACHABLE else str(o.failure)


def _first_failure(x: View) -> tuple[str, str]:
    host, steps = x.host, x.hop.probe
    if steps.dns and not any(o.addresses for o in steps.dns):
        failures = sorted({f"{o.resolver} {o.qtype} {_dns_why(o)}" for o in steps.dns})
        return f"DNS for {host} failed: {', '.join(failures)}", f"DNS {steps.dns[0].failure}"
    tcp = [r.tcp for r in x.rows if r.tcp is not None]
    if tcp and all(o.failure for o in tcp):
        kinds = sorted({str(o.failure) for o in tcp})
        return (
            f"TCP connect to {len(tcp)} address(es) of {host} failed: {', '.join(kinds)}",
            f"TCP {kinds[0]}",
        )
    tls = [r.tls for r in x.rows if r.tls is not None]
    if tls and all(o.failure for o in tls):
        o = tls[0]
        cert = ""
        if o.certificate is not None:
            cert = f" (certificate for {o.certificate.subject} issued by {o.certificate.issuer})"
        return f"TLS with SNI {host} failed: {o.failure}: {o.error}{cert}", f"TLS {o.failure}"
    h = x.http
    if h is not None:  # a page that loaded would have been `accessible`
        return f"HTTP GET {h.url} failed: {h.failure}: {h.error}", f"HTTP {h.failure}"
    if x.m.notes:
        return x.m.notes[-1], "not measured"
    return "no step completed", "nothing measured"
