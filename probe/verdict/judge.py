"""The verdict: a pure function of (observations, control, fingerprints). No I/O, no asyncio.

The probe's and the control's observations are joined first (`join`: rows per hop, host,
address and family), then read root cause first — DNS, then TCP, TLS, HTTP — so a forged DNS
answer that then fails TLS is a DNS block. Each layer is a room of its own (`dns`, `transport`,
`http`, `families`); this module orders them. A false "blocked" is worse than a miss:

- Without a control only what the vantage alone proves is `blocked`: two different answers to
  one UDP query, or an answer from an address that runs no resolver (injection); the real SNI
  failing while a harmless SNI to the same address completes (SNI filtering); a known blockpage
  fingerprint; a known censor's DNS answer. Everything else is `inconclusive`.
- With a control, a failure is censorship only where the control succeeds, at the same address
  where the control tried it; where the control fails the same way, the target is `down` — and
  what everyone sees is `down` too (a name that points to loopback for the control as well, a
  redirect loop the control is sent round too).
- An address is genuine for a host when a TLS handshake there validates a certificate for the
  host (from the vantage or the control): CDNs answer other addresses in other countries, and
  comparing address sets alone gave ~72% false positives in one study. An answer for a name the
  control finds does not exist is forged, whatever is served there.
- The site's own doing is never a block: its challenge pages, its 403/429/451.
- A redirect chain's root cause is the first failing step of the first failing hop, each hop
  judged by the same rooms against the control's steps for that hop; a hop's lying resolver
  (a forged answer, an NXDOMAIN where another resolver's genuine answer got through) blocks the
  target even where the chain went on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from probe.model import Control, Diagnosis, HTTPObservation, Measurement
from probe.verdict.dns import injection, judge_dns
from probe.verdict.explain import inconclusive
from probe.verdict.families import Transport, by_family
from probe.verdict.fingerprints import BUILTIN, Fingerprint
from probe.verdict.http import at_hop, blockpage, compared, failed_hop, http_failure, reached
from probe.verdict.join import Hop, View, join
from probe.verdict.transport import judge_tcp, judge_tls
from probe.vocabulary import Verdict


class _Judge:
    """One decision: the fingerprints and ranges it reads, and the fingerprints set aside."""

    def __init__(self, fingerprints: Sequence[Fingerprint], public_ranges: Sequence[str]) -> None:
        self.fingerprints = fingerprints
        self.public_ranges = public_ranges
        self.ignored: list[str] = []  # fingerprints that matched but do not count, and why

    def hop(self, x: View, transport: Transport) -> Diagnosis:
        """A hop root cause first: its lookups, then each family's connections (and, for the
        target's own hop, its HTTP exchange)."""
        return self.lookups(x) or by_family(x, transport)

    def lookups(self, x: View) -> Diagnosis | None:
        return injection(x.hop.probe.dns, x.host) or judge_dns(
            x, self.fingerprints, self.public_ranges
        )

    def target(self, x: View) -> Diagnosis:
        return judge_tcp(x) or judge_tls(x) or self.http(x) or inconclusive(x)

    def redirect(self, x: View) -> Diagnosis:
        return judge_tcp(x) or judge_tls(x) or inconclusive(x)

    def http(self, x: View) -> Diagnosis | None:
        h = x.http
        if h is None:
            return None
        for hop in x.chain:  # a hop's lying resolver, even where another's answer got through
            lied = self.lookups(x.at(hop))
            if lied is not None and lied.verdict.is_block:
                return at_hop(lied, h, hop)
        page = blockpage(x, h, self.fingerprints, self.ignored)
        if page is not None:
            return page
        if h.failure is not None:
            stopped = failed_hop(x)
            return self.failed(x, h, stopped) if stopped else http_failure(x, h)
        return compared(x, h) or reached(x, h)

    def failed(self, x: View, h: HTTPObservation, hop: Hop) -> Diagnosis | None:
        """The hop the chain failed at, judged as a target's own hop is — against the control's
        steps for it, where its chain went there too (a chain the control did not follow is
        evidence, not a block by itself)."""
        d = self.hop(x.at(hop), self.redirect)
        return None if d.verdict == Verdict.INCONCLUSIVE else at_hop(d, h, hop)


def judge(
    m: Measurement,
    control: Control | None = None,
    fingerprints: Sequence[Fingerprint] = BUILTIN,
    public_ranges: Sequence[str] = (),
) -> Diagnosis:
    """The verdict for one measurement; see the module docstring for the rules."""
    j = _Judge(fingerprints, public_ranges)
    joined = join(m, control)
    d = j.hop(View(joined, joined.top), j.target)
    if not j.ignored:
        return d
    why = "; ".join(j.ignored)
    return replace(
        d, explanation=f"{d.explanation} (fingerprint ignored: {why})", ignored=tuple(j.ignored)
    )
