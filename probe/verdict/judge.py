"""The verdict: a pure function of (observations, control, fingerprints). No I/O, no asyncio.

Root cause first — DNS, then TCP, TLS, HTTP — so a forged DNS answer that then fails TLS is a
DNS block. A false "blocked" is worse than a miss:

- Without a control only what the vantage alone proves is `blocked`: two different answers to
  one UDP query, or an answer from an address that runs no resolver (injection); the real SNI
  failing while a harmless SNI to the same address completes (SNI filtering); a known blockpage
  fingerprint; a known censor's DNS answer. Everything else is `inconclusive`.
- With a control, a failure is censorship only where the control succeeds, at the same address
  where the control tried it; where the control fails the same way, the target is `down`.
- An address is genuine for a host when a TLS handshake there validates a certificate for the
  host (from the vantage or the control): CDNs answer other addresses in other countries, and
  comparing address sets alone gave ~72% false positives in one study.
- HTTP pages are compared only over plain HTTP (a validated HTTPS page came from the site) and
  with tolerances: a body-length proportion under `BODY_PROPORTION` *and* another title, or
  another status that is not the site's own (403/429/451 are reported as what they are); a
  redirect by the site to another of its own hosts (a regional edition) is not a diff.
- Throttled: data flows, at under `THROTTLE_RATIO` of the control's rate and under
  `THROTTLE_CEILING`, over at least `THROTTLE_MIN_BYTES` or the whole throughput window (a
  vantage's own slow link is above the ceiling; a policer in the wild holds ~130-150 kbit/s).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

from probe.model import (
    Blocking,
    Control,
    Diagnosis,
    DNSObservation,
    Hop,
    HTTPObservation,
    Measurement,
    Target,
    TCPObservation,
    TLSObservation,
    url_parts,
)
from probe.policy import family, is_special
from probe.verdict.fingerprints import BUILTIN, Fingerprint, match_dns, match_http
from probe.vocabulary import Failure, Layer, Method, Verdict

F = Failure
# the step failures that are a block of that layer where the control shows the site works
DNS_FAILURES = (F.NXDOMAIN, F.SERVFAIL, F.REFUSED, F.NO_ANSWER, F.TIMEOUT)
TCP_FAILURES = (F.TIMEOUT, F.RESET, F.REFUSED, F.UNREACHABLE)
TLS_FAILURES = (F.RESET, F.TIMEOUT, F.EOF, F.ALERT)
HTTP_FAILURES = (F.RESET, F.TIMEOUT, F.EOF, F.STALL)
BODY_PROPORTION = 0.7  # OONI's threshold for "the same page"
THROTTLE_RATIO = 0.1
THROTTLE_CEILING = 250_000.0  # bytes/s (2 Mbit/s)
THROTTLE_MIN_BYTES = 32_768
CONTROL_MATCHES_TOO = "the control's page matches it too"
SITE_STATUSES = {
    403: "forbids this client (geoblocking by the site?)",
    429: "rate-limits this client",
    451: "refuses for legal reasons",
}


class _Context:
    """The inputs of one decision, with the derived facts every layer asks about."""

    def __init__(
        self,
        m: Measurement,
        control: Control | None,
        fingerprints: Sequence[Fingerprint],
        public_ranges: Sequence[str],
    ) -> None:
        self.m = m
        self.host = m.target.host
        self.control = control
        self.c = control.measurement if control is not None else None
        self.fingerprints = tuple(fingerprints)
        self.public_ranges = tuple(public_ranges)
        self.ignored: list[str] = []  # fingerprints that matched but do not count, and why

    def control_missing(self) -> str:
        """Why the control did not decide it."""
        if self.control is None:
            return "a control (--control) is needed to tell censorship from an outage"
        if self.c is None:
            return f"the control helper did not answer ({self.control.error})"
        return "what the control saw does not tell censorship from an outage here"

    def control_addresses(self) -> list[str]:
        return self.c.addresses() if self.c is not None else []

    def control_http_ok(self) -> HTTPObservation | None:
        h = self.c.http if self.c is not None else None
        return h if h is not None and h.failure is None else None

    def genuine(self, address: str) -> bool:
        """A certificate valid for the host was seen at `address`, by the vantage or the control."""
        seen: list[TLSObservation] = [*self.m.tls]
        if self.control is not None:
            seen += self.control.validation
        if self.c is not None:
            seen += self.c.tls
        # `verified` says the handshake completed and validated the name it was given
        return any(t.address == address and t.sni == self.host and t.verified for t in seen)

    def control_tcp(self, address: str) -> TCPObservation | None:
        return next((t for t in (self.c.tcp if self.c else ()) if t.address == address), None)

    def control_tls(self, address: str) -> TLSObservation | None:
        return next((t for t in (self.c.tls if self.c else ()) if t.address == address), None)


def judge(
    m: Measurement,
    control: Control | None = None,
    fingerprints: Sequence[Fingerprint] = BUILTIN,
    public_ranges: Sequence[str] = (),
) -> Diagnosis:
    """The verdict for one measurement; see the module docstring for the rules."""
    x = _Context(m, control, fingerprints, public_ranges)
    d = _dns_injection(x) or _dns(x) or _by_family(x)
    if not x.ignored:
        return d
    why = "; ".join(x.ignored)
    return replace(
        d, explanation=f"{d.explanation} (fingerprint ignored: {why})", ignored=tuple(x.ignored)
    )


def _transport(x: _Context) -> Diagnosis:
    """Past DNS: TCP, TLS, HTTP, in that order, for the addresses of `x`."""
    return _tcp(x) or _tls(x) or _http(x) or _reached(x) or _inconclusive(x)


# --- IP families ----------------------------------------------------------------------------


def _families(m: Measurement) -> set[int]:
    """The IP families in play: those the resolvers answered, or a connection tried."""
    return {family(a) for a in m.addresses()} | {t.family for t in m.tcp}


def _by_family(x: _Context) -> Diagnosis:
    """Where both families are in play, each is judged on its own (against the control's steps in
    the same family) and the verdicts combined: a censor may act on one family only."""
    if len(_families(x.m)) < 2:
        return _transport(x)
    judged = []
    for f in (4, 6):
        fx = _Context(_only(x.m, f), _control_only(x.control, f), x.fingerprints, x.public_ranges)
        judged.append((f, fx, _transport(fx)))
        x.ignored += [i for i in fx.ignored if i not in x.ignored]
    return _combine(judged)


def _only(m: Measurement, f: int) -> Measurement:
    """The steps of `m` in family `f` (DNS is shared: it is judged before families split)."""
    h = m.http_ipv6 if f == 6 and m.http_ipv6 is not None else m.http
    return replace(
        m,
        tcp=tuple(t for t in m.tcp if t.family == f),
        tls=tuple(t for t in m.tls if t.family == f),
        sni_check=tuple(t for t in m.sni_check if t.family == f),
        http=h if h is not None and h.family == f else None,
        http_ipv6=None,
    )


def _control_only(control: Control | None, f: int) -> Control | None:
    """The control's steps in family `f`; a family it did not measure is not compared."""
    if control is None or control.measurement is None:
        return control
    if not any(t.family == f for t in control.measurement.tcp):
        return Control(None, error=f"the control did not measure IPv{f}")
    return Control(_only(control.measurement, f), control.validation, control.error)


def _combine(judged: list[tuple[int, _Context, Diagnosis]]) -> Diagnosis:
    """One verdict from each family's: a block in one family only blocks the target, with the
    family named; otherwise the best outcome, the other family's said beside it."""
    blocks = [(f, d) for f, _, d in judged if d.verdict.is_block]
    if len(blocks) == 2:
        (_, d4), (_, d6) = blocks
        return replace(d4, explanation=f"over IPv4: {d4.explanation}; over IPv6: {d6.explanation}")
    if blocks:
        f, d = blocks[0]
        assert d.blocking is not None
        if not next(gx for g, gx, _ in judged if g != f).m.tcp:  # one family seen: not "only"
            return replace(d, explanation=f"{d.explanation}; {_beside(judged, f)}")
        return replace(
            d,
            blocking=replace(d.blocking, ip_version=f),
            explanation=f"over IPv{f} only: {d.explanation}; {_beside(judged, f)}",
            summary=f"IPv{f}: {d.summary}",
        )
    for verdict in (Verdict.ACCESSIBLE, Verdict.DOWN, Verdict.INCONCLUSIVE):
        for f, _, d in judged:
            if d.verdict == verdict:
                return replace(d, explanation=f"{d.explanation}; {_beside(judged, f)}")
    raise AssertionError("every verdict is one of the above")


def _beside(judged: list[tuple[int, _Context, Diagnosis]], f: int) -> str:
    """What the other family than `f` came to."""
    g, gx, gd = next(j for j in judged if j[0] != f)
    if not gx.m.tcp:
        return f"IPv{g} not measured"
    if gd.verdict == Verdict.INCONCLUSIVE and gx.control is not None and gx.c is None:
        return f"over IPv{g}: not compared ({gx.control.error}; {gd.summary})"
    return f"over IPv{g}: {gd.verdict} ({gd.summary})"


def _blocked(layer: Layer, method: Method | Failure, explanation: str, summary: str) -> Diagnosis:
    """A block; a step's failure names its method (the two vocabularies share those words)."""
    return Diagnosis(Verdict.BLOCKED, Blocking(layer, Method(method)), explanation, summary)


def _down(explanation: str, summary: str) -> Diagnosis:
    return Diagnosis(Verdict.DOWN, None, f"{explanation}: not censorship", summary)


def most_common(failures: Iterable[Failure | None]) -> Failure:
    """The failure most steps had (the first by name among equals)."""
    counts = Counter(f for f in failures if f is not None)
    return max(sorted(counts), key=lambda f: counts[f])


# --- DNS ------------------------------------------------------------------------------------


QTYPE_FAMILY = {"A": 4, "AAAA": 6}


def _dns_injection(x: _Context) -> Diagnosis | None:
    """The first forged answer; named with its family where the other family's answers are
    clean (the GFW forges AAAA answers too, a censor may forge one type only)."""
    injected = [(obs, d) for obs in x.m.dns if (d := _injected(x, obs)) is not None]
    if not injected:
        return None
    obs, d = injected[0]
    if {o.qtype for o, _ in injected} not in ({"A"}, {"AAAA"}):
        return d  # both types forged (or by a resolver asked for both at once)
    other_type = "AAAA" if obs.qtype == "A" else "A"
    clean = [o for o in x.m.dns if o.qtype == other_type and o.addresses]
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


def _injected(x: _Context, obs: DNSObservation) -> Diagnosis | None:
    answers = obs.distinct_answers()
    if len(answers) >= 2:
        shown = " then ".join(",".join(a) for a in answers[:3])
        return _blocked(
            Layer.DNS,
            Method.INJECTED,
            f"{obs.resolver} answered one {obs.qtype} query for {x.host} {len(answers)} times "
            f"with different addresses ({shown}): a forged answer raced the real one",
            f"{len(answers)} different answers to one query",
        )
    if obs.port_unreachable and answers:
        return _blocked(
            Layer.DNS,
            Method.INJECTED,
            f"an answer for {x.host} ({','.join(answers[0])}) arrived from {obs.resolver}, "
            "which runs no resolver (ICMP port unreachable): something on the path answered",
            "answer from a host with no resolver",
        )
    return None


def _by_resolver(dns: Sequence[DNSObservation]) -> dict[str, list[DNSObservation]]:
    out: dict[str, list[DNSObservation]] = {}
    for obs in dns:
        out.setdefault(obs.resolver, []).append(obs)
    return out


def _dns(x: _Context) -> Diagnosis | None:
    resolvers = _by_resolver(x.m.dns)
    for resolver, observations in resolvers.items():
        addresses = [a for o in observations for a in o.addresses]
        for a in addresses:
            fp = match_dns(x.fingerprints, a)
            if fp is not None:
                return _blocked(
                    Layer.DNS,
                    Method.INCONSISTENT,
                    f"{resolver} answered {a} for {x.host}, a known censor's address ({fp.name})",
                    f"known censor address {a}",
                )
        if not addresses:
            verdict = _dns_failure(x, resolver, observations, resolvers)
        else:
            verdict = _dns_answer(x, resolver, addresses)
        if verdict is not None:
            return verdict
    return None


def _dns_failure(
    x: _Context,
    resolver: str,
    observations: list[DNSObservation],
    resolvers: dict[str, list[DNSObservation]],
) -> Diagnosis | None:
    first = next((o for o in observations if o.qtype != "AAAA"), observations[0])
    failure = first.failure  # an observation without addresses always says why
    if failure not in DNS_FAILURES:
        return None
    answered_elsewhere = any(
        o.addresses for r, obs in resolvers.items() if r != resolver for o in obs
    )
    if resolver != "system" and failure == F.TIMEOUT and answered_elsewhere:
        return (
            None  # that resolver is unreachable from here, for every name: not this target's block
        )
    # another resolver of this vantage answering with a genuine address is as good as a control
    elsewhere = [
        a
        for r, obs in resolvers.items()
        if r != resolver
        for o in obs
        for a in o.addresses
        if x.genuine(a)
    ]
    if elsewhere:
        return _blocked(
            Layer.DNS,
            failure,
            f"{resolver} says {failure} for {x.host}, while another resolver answers "
            f"{elsewhere[0]}, where a certificate valid for {x.host} is served",
            f"DNS {failure}; other resolver genuine",
        )
    if x.c is None:
        return None
    control = x.control_addresses()
    if control:
        return _blocked(
            Layer.DNS,
            failure,
            f"{resolver} says {failure} for {x.host}; the control resolves it to "
            f"{', '.join(control[:3])}",
            f"DNS {failure}; control resolves",
        )
    c_failures = sorted({str(o.failure) for o in x.c.dns})
    return _down(
        f"{x.host} does not resolve from the control either ({', '.join(c_failures)})",
        f"DNS {failure} everywhere",
    )


def _dns_answer(x: _Context, resolver: str, addresses: list[str]) -> Diagnosis | None:
    if any(x.genuine(a) for a in addresses):
        return None
    control = x.control_addresses()
    if not control:
        return None
    if all(is_special(a, x.public_ranges) for a in addresses) and not all(
        is_special(a, x.public_ranges) for a in control
    ):
        return _blocked(
            Layer.DNS,
            Method.BOGON,
            f"{resolver} answered {', '.join(addresses[:3])} for {x.host}: "
            f"special-purpose addresses, where the control resolves {control[0]}",
            f"bogon answer {addresses[0]}",
        )
    if set(addresses) & set(control):
        return None
    h = x.m.http
    if h is not None and h.address in addresses and _same_page(h, x.control_http_ok()):
        return None  # other addresses, same page: a CDN without HTTPS
    return _blocked(
        Layer.DNS,
        Method.INCONSISTENT,
        f"{resolver} answered {', '.join(addresses[:3])} for {x.host}; the control "
        f"resolves {', '.join(control[:3])}, and no certificate valid for {x.host} "
        "is served at the vantage's addresses",
        f"DNS answer {addresses[0]} not genuine",
    )


# --- TCP and TLS ----------------------------------------------------------------------------


def _tcp(x: _Context) -> Diagnosis | None:
    tcp = x.m.tcp
    if not tcp or any(t.failure is None for t in tcp):
        return None
    failure = most_common(t.failure for t in tcp)
    if failure not in TCP_FAILURES:
        return None
    tried = [(t, x.control_tcp(t.address)) for t in tcp]
    reached = [t.address for t, c in tried if c is not None and c.failure is None]
    if reached:
        return _blocked(
            Layer.TCP,
            failure,
            f"TCP {failure} connecting to {', '.join(t.address for t in tcp[:3])}:"
            f"{tcp[0].port}; the control connects to {reached[0]}",
            f"TCP {failure}; control connects",
        )
    if all(c is not None for _, c in tried):
        c_fail = most_common(c.failure for _, c in tried if c is not None)
        return _down(
            f"TCP {failure} to {tcp[0].address}:{tcp[0].port}, and the control fails "
            f"too ({c_fail})",
            f"TCP {failure} everywhere",
        )
    return None


def _tls(x: _Context) -> Diagnosis | None:
    tls = x.m.tls
    if not tls or any(t.failure is None for t in tls):
        return None
    failure = most_common(t.failure for t in tls)
    if failure == F.INVALID_CERTIFICATE:
        return _interception(x, tls)
    if failure not in TLS_FAILURES:
        return None
    sni_ok = next((t for t in x.m.sni_check if t.failure is None), None)
    other_sni = (
        (
            f"; {sni_ok.address} completes a handshake with SNI {sni_ok.sni}: the name is "
            "filtered, not the address"
        )
        if sni_ok
        else ""
    )
    head = f"TLS {failure} after the ClientHello with SNI {x.host} at {len(tls)} address(es)"
    if x.c is None:
        if sni_ok is None:
            return None
        return _blocked(Layer.TLS, failure, head + other_sni, f"SNI {failure}; other SNI completes")
    same = [c for c in (x.control_tls(t.address) for t in tls) if c is not None]
    completes = [c for c in same if c.failure is None] or (
        [] if same else [t for t in x.c.tls if t.failure is None]
    )
    if completes:
        where = "there" if same else f"at {completes[0].address}"
        residual = _residual_note(x)
        return _blocked(
            Layer.TLS,
            failure,
            f"{head}{other_sni}; the control completes {where}{residual}",
            f"TLS {failure}" + ("; other SNI completes" if sni_ok else "; control completes"),
        )
    if same:
        return _down(
            f"{head}, and the control's handshake fails too "
            f"({most_common(c.failure for c in same)})",
            f"TLS {failure} everywhere",
        )
    return None


def _residual_note(x: _Context) -> str:
    boxed = [t for t in x.m.sni_check if not t.connected]
    if not boxed:
        return ""
    return (
        f"; afterwards even a new connection to {boxed[0].address} failed ({boxed[0].failure}): "
        "residual blocking of this client and server"
    )


def _interception(x: _Context, tls: Sequence[TLSObservation]) -> Diagnosis | None:
    t = next((t for t in tls if t.certificate is not None), tls[0])
    cert = t.certificate
    shown = f"issued by {cert.issuer} to {cert.subject}" if cert is not None else "unreadable"
    if x.c is None:
        return None
    valid = [c for c in x.c.tls if c.verified]
    if valid:
        return _blocked(
            Layer.TLS,
            Method.INVALID_CERTIFICATE,
            f"the certificate for {x.host} at {t.address} does not validate ({t.error}); "
            f"it is {shown}; the control gets a valid certificate at {valid[0].address}: "
            "the connection is intercepted",
            "untrusted certificate (interception)",
        )
    if any(c.failure == F.INVALID_CERTIFICATE for c in x.c.tls):
        return _down(
            f"the certificate for {x.host} does not validate from the control either",
            "invalid certificate everywhere",
        )
    return None


# --- HTTP -----------------------------------------------------------------------------------


def _http(x: _Context) -> Diagnosis | None:
    h = x.m.http
    if h is None:
        return None
    control = x.control_http_ok()
    forged = _forged_hop(x, h)
    if forged is not None:
        return forged
    blockpage = _blockpage(x, h, control)
    if blockpage is not None:
        return blockpage
    if h.failure is not None:
        hop = _failed_hop(h)
        if hop is not None:
            return _hop(x, h, hop)
        if h.failure not in HTTP_FAILURES or x.c is None:
            return None
        if control is not None:
            arrived = h.received or (h.received_wire if h.failure == F.STALL else 0)
            return _blocked(
                Layer.HTTP,
                h.failure,
                f"HTTP {h.failure} for GET {_where(h)} {_what_arrived(h)}; the control gets "
                f"HTTP {control.status} ({control.body_length} bytes)",
                f"HTTP {h.failure}{f' after {arrived} B' if arrived else ''}; control loads",
            )
        c_http = x.c.http  # here it failed, or the control would have loaded the page
        if c_http is not None:
            return _down(
                f"HTTP {h.failure} for GET {_where(h)}, and the control fails too "
                f"({c_http.failure})",
                f"HTTP {h.failure} everywhere",
            )
        return None
    if control is None:
        return None
    return _throttled(h, control) or _diff(x, h, control)


def _where(h: HTTPObservation) -> str:
    """The URL a failed request was for, and which hop of the redirect chain it was."""
    if not h.hops:
        return h.url
    return f"{h.final_url} (redirect {len(h.hops)} of {h.url})"


def _failed_hop(h: HTTPObservation) -> Hop | None:
    """The hop whose connection the chain failed at (DNS, TCP or TLS), if it did."""
    if not h.connections:
        return None
    hop = h.connections[-1]  # a chain that failed at a hop's connection ended there
    connected = hop.tls if hop.tls else hop.tcp
    return None if any(t.failure is None for t in connected) else hop


def _hop(x: _Context, h: HTTPObservation, hop: Hop) -> Diagnosis | None:
    """Judge a failed hop's steps as a target's — with the control's steps for the same hop,
    where its chain went there too — so the root cause is the first failing step of the first
    failing hop. A chain the control did not follow is evidence, not a block by itself."""
    target = Target.parse(hop.url, x.m.target.service)
    steps = Measurement(target, x.m.started, hop.dns, hop.tcp, hop.tls, hop.sni_check)
    c_http = x.c.http if x.c is not None else None
    theirs = next((c for c in c_http.connections if c.url == hop.url), None) if c_http else None
    control = None
    if theirs is not None:
        seen = Measurement(
            target, x.m.started, theirs.dns, theirs.tcp, theirs.tls, theirs.sni_check
        )
        control = Control(seen)
    d = judge(steps, control, x.fingerprints, x.public_ranges)
    if d.verdict == Verdict.INCONCLUSIVE:
        return None
    return _at_hop(d, h, len(h.hops), hop)


def _forged_hop(x: _Context, h: HTTPObservation) -> Diagnosis | None:
    """A forged DNS answer for a hop's host is censorship even where the probe went on with the
    real answer (a browser takes the first)."""
    for n, hop in enumerate(h.connections, 1):
        steps = Measurement(Target.parse(hop.url, x.m.target.service), x.m.started, hop.dns)
        d = _dns_injection(_Context(steps, None, x.fingerprints, x.public_ranges))
        if d is not None:
            return _at_hop(d, h, n, hop)
    return None


def _at_hop(d: Diagnosis, h: HTTPObservation, n: int, hop: Hop) -> Diagnosis:
    """A hop's diagnosis, saying which hop it is."""
    return replace(
        d,
        explanation=f"redirect {n} of {h.url} to {hop.url} (host {url_parts(hop.url).host}): "
        f"{d.explanation}",
        summary=f"hop {n}: {d.summary}",
    )


def _blockpage(
    x: _Context, h: HTTPObservation, control: HTTPObservation | None
) -> Diagnosis | None:
    """The first fingerprint that counts. Shared lists have false positives (a pattern matching
    ordinary pages, news quoting a blockpage): a match on a page that came over the site's own
    validated TLS, or that the control's page matches too, is the site's content."""
    for fp, where in match_http(x.fingerprints, h):
        if where == "body" and _over_validated_tls(x, h):
            x.ignored.append(f"{fp.label}: it matched a page that came over validated TLS")
        elif control is not None and any(match_http((fp,), control)):
            x.ignored.append(f"{fp.label}: {CONTROL_MATCHES_TOO}")
        else:
            return _blocked(
                Layer.HTTP,
                Method.BLOCKPAGE,
                f"GET {h.url} got a known blockpage ({fp.label}, matched in {where})"
                f"{_after_redirects(h)}",
                f"blockpage {fp.name}",
            )
    return None


def _final(h: HTTPObservation) -> str:
    """Where the chain ended (the URL itself when nothing redirected)."""
    return h.final_url if h.final_url is not None else h.url


def _over_validated_tls(x: _Context, h: HTTPObservation) -> bool:
    """The page came over the target's validated TLS: the site sent it (a censor cannot)."""
    return x.m.target.scheme == "https" and _final(h).startswith("https://")


def _what_arrived(h: HTTPObservation) -> str:
    """How far the response got: what a user needs to tell a freeze from a refusal."""
    if h.failure == F.STALL and h.last_byte is not None:
        arrived = (
            f"{h.received} bytes of the response arrived"
            if h.received
            else f"the response began ({h.received_wire} bytes of TLS records arrived, none whole)"
        )
        return (
            f"stalled: {arrived}, the last {_seconds(h.last_byte)} after the request, then "
            "nothing, with neither FIN nor RST"
        )
    if h.received:
        return f"after {h.received} bytes of the response"
    return "after the connection was set up, before any byte of the response"


def _throttled(h: HTTPObservation, control: HTTPObservation) -> Diagnosis | None:
    if h.throughput is None or control.throughput is None:
        return None
    if h.body_length < THROTTLE_MIN_BYTES and h.truncated != "window":
        return None  # a small page that completed says nothing about the rate
    if h.throughput < THROTTLE_RATIO * control.throughput and h.throughput < THROTTLE_CEILING:
        return Diagnosis(
            Verdict.THROTTLED,
            Blocking(Layer.HTTP, Method.THROTTLED),
            f"data flows at {_rate(h.throughput)} over {h.body_length} bytes, while the control "
            f"downloads the same URL at {_rate(control.throughput)}",
            f"{_rate(h.throughput)} vs {_rate(control.throughput)}",
        )
    return None


def _diff(x: _Context, h: HTTPObservation, control: HTTPObservation) -> Diagnosis | None:
    if _over_validated_tls(x, h):
        return None  # a page over validated TLS came from the site itself
    if h.status in SITE_STATUSES and h.status != control.status:
        return None  # reported by _reached as what it is
    if _same_page(h, control) or _localized(x.host, h, control):
        return None
    return _blocked(
        Layer.HTTP,
        Method.DIFF,
        f"GET {h.url} got HTTP {h.status} '{h.title[:40]}' ({h.body_length} bytes); the "
        f"control gets HTTP {control.status} '{control.title[:40]}' "
        f"({control.body_length} bytes)",
        "page differs from the control's",
    )


def _site(host: str) -> str:
    return host.removeprefix("www.")


def _localized(host: str, h: HTTPObservation, control: HTTPObservation) -> bool:
    """The site itself redirected this vantage to another of its own hosts than the control's
    (a regional edition): another page, but the site's choice, not the network's."""
    final, other = url_parts(_final(h)).host, url_parts(_final(control)).host
    site = _site(host)
    return bool(h.hops) and final != other and (final == site or final.endswith("." + site))


def _same_page(h: HTTPObservation, control: HTTPObservation | None) -> bool:
    """The same status, and the same body, or one of a similar length, or the same title."""
    if control is None or h.status != control.status:
        return False
    longer = max(h.body_length, control.body_length)  # the same body is the same length
    similar = longer == 0 or min(h.body_length, control.body_length) / longer > BODY_PROPORTION
    return similar or (bool(h.title) and h.title == control.title)


def _reached(x: _Context) -> Diagnosis | None:
    h = x.m.http
    if h is None or h.failure is not None:
        return None
    what = f"HTTP {h.status}" + (f" '{h.title[:40]}'" if h.title else "")
    how = "a validated TLS connection" if x.m.target.scheme == "https" else "plain HTTP"
    site = f"; the site {SITE_STATUSES[h.status]}" if h.status in SITE_STATUSES else ""
    return Diagnosis(
        Verdict.ACCESSIBLE,
        None,
        f"{what} from {h.address or 'the server'} over {how}, {h.body_length} bytes"
        f"{_after_redirects(h)}{site}",
        f"{what} · {_size(h.body_length)}",
    )


def _after_redirects(h: HTTPObservation) -> str:
    return f" after {len(h.hops)} redirect(s) to {h.final_url}" if h.hops else ""


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def _seconds(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def _rate(bps: float) -> str:
    return f"{bps * 8 / 1000:.0f} kbit/s" if bps * 8 < 10_000_000 else f"{bps * 8 / 1e6:.0f} Mbit/s"


# --- inconclusive ---------------------------------------------------------------------------


def _inconclusive(x: _Context) -> Diagnosis:
    """The first failing step, root cause first, named with its evidence."""
    reason, summary = _first_failure(x.m)
    if x.m.ran_out is not None:
        reason += f" (the target's deadline of {x.m.deadline:g}s ran out during {x.m.ran_out})"
    return Diagnosis(Verdict.INCONCLUSIVE, None, f"{reason}; {x.control_missing()}", summary)


def _dns_why(o: DNSObservation) -> str:
    """A DNS failure, with why where nothing could be asked (no resolver, no route)."""
    return f"{o.failure} ({o.error})" if o.failure == F.UNREACHABLE else str(o.failure)


def _first_failure(m: Measurement) -> tuple[str, str]:
    host = m.target.host
    if m.dns and not any(o.addresses for o in m.dns):
        failures = sorted({f"{o.resolver} {o.qtype} {_dns_why(o)}" for o in m.dns})
        return f"DNS for {host} failed: {', '.join(failures)}", f"DNS {m.dns[0].failure}"
    if m.tcp and all(o.failure for o in m.tcp):
        kinds = sorted({str(o.failure) for o in m.tcp})
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
    if m.http is not None:  # a page that loaded would have been `accessible`
        return (
            f"HTTP GET {m.http.url} failed: {m.http.failure}: {m.http.error}",
            f"HTTP {m.http.failure}",
        )
    if m.notes:
        return m.notes[-1], "not measured"
    return "no step completed", "nothing measured"
