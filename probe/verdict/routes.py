"""`check --routes`: for one target, which ways to it get through from this vantage — TLS, TLS
with a post-quantum key share, ECH, a split ClientHello, HTTP/3, DNS over HTTPS — read from a
result whose ClientHello variants and HTTP/3 path were measured. Availability only: which
handshakes are answered from here, not a way around anything (censorprobe carries no one's
traffic). Pure, like `judge`.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.model import Diagnosis, HelloPath, Result
from probe.vocabulary import Failure, Verdict

# the routes, in the matrix's order, with their column titles
ROUTES = {
    "tls": "TLS",
    "tls_pq": "TLS+PQ",
    "ech": "ECH",
    "split": "SPLIT",
    "http3": "HTTP/3",
    "doh": "DoH",
}
THROUGH, FAILS, UNSUPPORTED, NOT_MEASURED = "through", "fails", "unsupported", "not_measured"


@dataclass(frozen=True, slots=True)
class Route:
    outcome: str  # through, fails, unsupported (the site does not offer it), not_measured
    detail: str  # what was seen, in a few words


def routes(r: Result) -> dict[str, Route]:
    """Every route of `ROUTES` for the result's target."""
    m = r.measurement
    if m.target.scheme != "https":
        plain = Route(NOT_MEASURED, "an http:// target: no TLS")
        return {**dict.fromkeys(ROUTES, plain), "doh": _doh(r)}
    done = next((t for t in m.tls if t.failure is None), None)
    if done is not None:
        tls = Route(THROUGH, f"handshake with {done.address}")
    else:
        failed = next((t for t in m.tls if t.failure is not None), None)
        seen = f"TLS {failed.failure}" if failed is not None else r.diagnosis.summary
        tls = Route(FAILS, seen)
    return {
        "tls": tls,
        "tls_pq": _variants(m.hello, ("pq",)),
        "ech": _path(r.ech),
        "split": _variants(m.hello, ("split_record", "split_segment")),
        "http3": _path(r.quic),
        "doh": _doh(r),
    }


def _variants(path: HelloPath | None, names: tuple[str, ...]) -> Route:
    """Through where one of the variants is answered."""
    sent = [] if path is None else [v for v in map(path.of, names) if v is not None]
    if not sent:
        why = path.skipped if path is not None and path.skipped else "not sent"
        return Route(NOT_MEASURED, why)
    answered = [v for v in sent if v.failure is None]
    if answered:
        return Route(THROUGH, ", ".join(f"{v.variant}: {v.answer}" for v in answered))
    return Route(FAILS, ", ".join(f"{v.variant}: {v.failure}" for v in sent))


def _path(d: Diagnosis | None) -> Route:
    """A path with a verdict of its own (HTTP/3, ECH)."""
    if d is None or d.verdict == Verdict.NOT_MEASURED:
        return Route(NOT_MEASURED, d.explanation if d is not None else "not measured")
    if d.verdict == Verdict.ACCESSIBLE:
        return Route(THROUGH, d.summary)
    if d.verdict == Verdict.UNSUPPORTED:
        return Route(UNSUPPORTED, d.summary)
    return Route(FAILS, f"{d.verdict} {d.summary}" if d.verdict.is_block else d.explanation)


def _doh(r: Result) -> Route:
    """The DoH resolvers of the settings: any of them answering for the target's name."""
    doh = [o for o in r.measurement.dns if o.transport == "doh"]
    if not doh:
        return Route(NOT_MEASURED, "no DoH resolver configured")
    answered = [o for o in doh if o.failure in (None, Failure.NXDOMAIN, Failure.NO_ANSWER)]
    if answered:
        return Route(THROUGH, f"{answered[0].resolver} answered")
    return Route(FAILS, f"{doh[0].resolver}: {doh[0].failure}")
