"""The verdict: a pure function of what was observed. No I/O, no asyncio.

Root cause first: a forged DNS answer that then fails TLS is a DNS block. A false "blocked" is
worse than a miss, so without a control only what the vantage alone can prove is called
`blocked`:

- two different answers to one UDP query, or an answer from an address that runs no resolver
  (DNS injection: an honest resolver answers once);
- the real SNI fails (reset, timeout, EOF) on every address while a harmless SNI to the same
  address completes (SNI filtering: an honest server does not care which name is asked first).

Every other failure is `inconclusive` with the reason: without a control it cannot be told from
an outage.
"""

from __future__ import annotations

from probe.model import Blocking, DNSObservation, HTTPObservation, Measurement, Verdict

SNI_BLOCK_FAILURES = ("reset", "timeout", "eof")
_NEEDS_CONTROL = "a control (--control) is needed to tell censorship from an outage"


def judge(m: Measurement) -> Verdict:
    """Decide what the observations alone can decide."""
    return _dns_injection(m) or _sni_filtering(m) or _reached(m) or _inconclusive(m)


def _blocked(layer: str, method: str, explanation: str, summary: str) -> Verdict:
    return Verdict("blocked", Blocking(layer, method), explanation, summary)


def _dns_injection(m: Measurement) -> Verdict | None:
    host = m.target.host
    for obs in m.dns:
        answers = obs.distinct_answers()
        if len(answers) >= 2:
            shown = " then ".join(",".join(a) for a in answers[:3])
            return _blocked(
                "dns",
                "injected",
                f"{obs.resolver} answered one {obs.qtype} query for {host} {len(answers)} times "
                f"with different addresses ({shown}): a forged answer raced the real one",
                f"{len(answers)} different answers to one query",
            )
        if obs.port_unreachable and answers:
            return _blocked(
                "dns",
                "injected",
                f"an answer for {host} ({','.join(answers[0])}) arrived from {obs.resolver}, which "
                f"runs no resolver (ICMP port unreachable): something on the path answered",
                "answer from a host with no resolver",
            )
    return None


def _sni_filtering(m: Measurement) -> Verdict | None:
    if m.target.scheme != "https" or not m.tls:
        return None
    if any(o.failure not in SNI_BLOCK_FAILURES for o in m.tls):
        return None
    completed = [o for o in m.sni_check if o.failure is None]
    if not completed:
        return None
    # every real-SNI handshake failed; the most common failure is the method
    methods = [o.failure or "" for o in m.tls]
    failure = max(sorted(set(methods)), key=methods.count)
    ok = completed[0]
    return _blocked(
        "tls",
        failure,
        f"TLS {failure} after the ClientHello with SNI {m.target.host} at {len(m.tls)} "
        f"address(es); {ok.address} completes a handshake with SNI {ok.sni}: the name is "
        "filtered, not the address",
        f"SNI {failure}; other SNI completes",
    )


def _reached(m: Measurement) -> Verdict | None:
    h = m.http
    if h is None or h.failure is not None or h.status is None:
        return None
    what = f"HTTP {h.status}" + (f" '{h.title[:40]}'" if h.title else "")
    how = "a validated TLS connection" if m.target.scheme == "https" else "plain HTTP"
    return Verdict(
        "accessible",
        None,
        f"{what} from {h.address or 'the server'} over {how}, {h.body_length} bytes"
        f"{_after_redirects(h)}",
        f"{what} · {_size(h.body_length)}",
    )


def _after_redirects(h: HTTPObservation) -> str:
    return f" after {len(h.hops)} redirect(s) to {h.final_url}" if h.hops else ""


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def _inconclusive(m: Measurement) -> Verdict:
    """The first failing step, root cause first, named with its evidence."""
    reason, summary = _first_failure(m)
    return Verdict("inconclusive", None, f"{reason}; {_NEEDS_CONTROL}", summary)


def _first_failure(m: Measurement) -> tuple[str, str]:
    host = m.target.host
    if m.dns and not any(o.addresses for o in m.dns):
        failures = sorted({_dns_failure(o) for o in m.dns})
        return f"DNS for {host} failed: {', '.join(failures)}", f"DNS {m.dns[0].failure}"
    if m.tcp and all(o.failure for o in m.tcp):
        kinds = sorted({o.failure or "" for o in m.tcp})
        return (
            f"TCP connect to {len(m.tcp)} address(es) of {host} failed: {', '.join(kinds)}",
            f"TCP {kinds[0]}",
        )
    if m.tls and all(o.failure for o in m.tls):
        o = m.tls[0]
        cert = ""
        if o.certificate is not None:
            cert = f" (certificate for {o.certificate.subject} issued by {o.certificate.issuer})"
        return f"TLS with SNI {host} failed: {o.failure}: {o.error}{cert}", f"TLS {o.failure}"
    if m.http is not None and m.http.failure is not None:
        return (
            f"HTTP GET {m.http.url} failed: {m.http.failure}: {m.http.error}",
            f"HTTP {m.http.failure}",
        )
    if m.notes:
        return m.notes[-1], m.notes[-1].split(":")[0]
    return "no step completed", "nothing measured"


def _dns_failure(o: DNSObservation) -> str:
    return f"{o.resolver} {o.qtype} {o.failure}"
