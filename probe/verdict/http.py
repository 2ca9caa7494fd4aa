"""The HTTP room: the exchange of a hop-0 view against the control's in the same family —
blockpages (and the fingerprints that cry wolf), the site's own challenge pages, failures and
stalls, throttling, pages that differ, and what loaded.

Pages are compared only over plain HTTP (a validated HTTPS page came from the site) and with
tolerances: a body-length proportion under `BODY_PROPORTION` *and* another title, or another
status that is not the site's own (403/429/451 are reported as what they are); a redirect by the
site to another of its own hosts (a regional edition) is not a diff. Throttled: data flows, at
under `THROTTLE_RATIO` of the control's rate and under `THROTTLE_CEILING`, over at least
`THROTTLE_MIN_BYTES` or the whole throughput window (a vantage's own slow link is above the
ceiling; a policer in the wild holds ~130-150 kbit/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from probe.model import Blocking, Diagnosis, HTTPObservation, url_parts
from probe.verdict.challenges import challenge
from probe.verdict.explain import (
    HTTP_FAILURES,
    F,
    after_redirects,
    blocked,
    down,
    final,
    rate,
    seconds,
    size,
)
from probe.verdict.fingerprints import Fingerprint, match_http
from probe.verdict.join import Hop, View
from probe.vocabulary import Layer, Method, Verdict

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


def failed_hop(x: View) -> Hop | None:
    """The hop whose connection the chain failed at (DNS, TCP or TLS), if it did."""
    if not x.chain:
        return None
    hop = x.chain[-1]  # a chain that failed at a hop's connection ended there
    connected = hop.probe.tls if hop.probe.tls else hop.probe.tcp
    return None if any(t.failure is None for t in connected) else hop


def at_hop(d: Diagnosis, h: HTTPObservation, hop: Hop) -> Diagnosis:
    """A hop's diagnosis, saying which hop it is."""
    return replace(
        d,
        explanation=f"redirect {hop.index} of {h.url} to {hop.url} (host {hop.host}): "
        f"{d.explanation}",
        summary=f"hop {hop.index}: {d.summary}",
    )


def blockpage(
    x: View, h: HTTPObservation, fingerprints: Sequence[Fingerprint], ignored: list[str]
) -> Diagnosis | None:
    """The first fingerprint that counts. Shared lists have false positives (a pattern matching
    ordinary pages, news quoting a blockpage): a match on a page that came over the site's own
    validated TLS, or that the control's page matches too, is the site's content (noted in
    `ignored`)."""
    control = x.c_http_ok()
    for fp, where in match_http(fingerprints, h):
        if where == "body" and _over_validated_tls(x, h):
            _note(ignored, f"{fp.label}: it matched a page that came over validated TLS")
        elif control is not None and any(match_http((fp,), control)):
            _note(ignored, f"{fp.label}: {CONTROL_MATCHES_TOO}")
        else:
            return blocked(
                Layer.HTTP,
                Method.BLOCKPAGE,
                f"GET {h.url} got a known blockpage ({fp.label}, matched in {where})"
                f"{after_redirects(h)}",
                f"blockpage {fp.name}",
            )
    return None


def _note(ignored: list[str], why: str) -> None:
    if why not in ignored:
        ignored.append(why)


def http_failure(x: View, h: HTTPObservation) -> Diagnosis | None:
    """A request that failed past its connection: a block where the control loads the page, down
    where the control's fails too (the same protocol failure too: a redirect loop everyone is
    sent round)."""
    assert h.failure is not None
    c_http = x.c_http  # where it failed, or the control would have loaded the page
    if h.failure not in HTTP_FAILURES:
        if c_http is not None and c_http.failure == h.failure == F.PROTOCOL:
            return down(
                f"GET {_where(h)} failed: {h.error}; the control's fails the same way "
                f"({c_http.error})",
                "HTTP protocol failure everywhere",
            )
        return None
    if x.c is None:
        return None
    control = x.c_http_ok()
    if control is not None:
        arrived = h.received or (h.received_wire if h.failure == F.STALL else 0)
        return blocked(
            Layer.HTTP,
            h.failure,
            f"HTTP {h.failure} for GET {_where(h)} {_what_arrived(h)}; the control gets "
            f"HTTP {control.status} ({control.body_length} bytes)",
            f"HTTP {h.failure}{f' after {arrived} B' if arrived else ''}; control loads",
        )
    if c_http is not None:
        return down(
            f"HTTP {h.failure} for GET {_where(h)}, and the control fails too ({c_http.failure})",
            f"HTTP {h.failure} everywhere",
        )
    return None


def _where(h: HTTPObservation) -> str:
    """The URL a failed request was for, and which hop of the redirect chain it was."""
    if not h.hops:
        return h.url
    return f"{h.final_url} (redirect {len(h.hops)} of {h.url})"


def _over_validated_tls(x: View, h: HTTPObservation) -> bool:
    """The page came over the target's validated TLS: the site sent it (a censor cannot)."""
    return x.m.target.scheme == "https" and final(h).startswith("https://")


def _what_arrived(h: HTTPObservation) -> str:
    """How far the response got: what a user needs to tell a freeze from a refusal."""
    if h.failure == F.STALL and h.last_byte is not None:
        arrived = (
            f"{h.received} bytes of the response arrived"
            if h.received
            else f"the response began ({h.received_wire} bytes of TLS records arrived, none whole)"
        )
        return (
            f"stalled: {arrived}, the last {seconds(h.last_byte)} after the request, then "
            "nothing, with neither FIN nor RST"
        )
    if h.received:
        return f"after {h.received} bytes of the response"
    return "after the connection was set up, before any byte of the response"


def compared(x: View, h: HTTPObservation) -> Diagnosis | None:
    """A page that loaded, against the control's: the site's own challenge, throttling, or a
    page that differs."""
    control = x.c_http_ok()
    if control is None:
        return None
    return _challenged(x, h, control) or _throttled(h, control) or _diff(x, h, control)


def _challenged(x: View, h: HTTPObservation, control: HTTPObservation) -> Diagnosis | None:
    """The site's own bot defence challenged this vantage while the control got the page: its
    doing, never the network's (these markers only ever lower a verdict)."""
    seen = challenge(h)
    if seen is None or challenge(control) is not None:
        return None
    return Diagnosis(
        Verdict.ACCESSIBLE,
        None,
        f"GET {h.url} got HTTP {h.status} '{h.title[:40]}': {seen} — the site's own bot defence "
        f"challenged this vantage, while the control gets HTTP {control.status} "
        f"'{control.title[:40]}': the site's doing, not censorship",
        f"site's challenge ({seen.split(' (')[0]})",
    )


def _throttled(h: HTTPObservation, control: HTTPObservation) -> Diagnosis | None:
    if h.throughput is None or control.throughput is None:
        return None
    if h.body_length < THROTTLE_MIN_BYTES and h.truncated != "window":
        return None  # a small page that completed says nothing about the rate
    if h.throughput < THROTTLE_RATIO * control.throughput and h.throughput < THROTTLE_CEILING:
        return Diagnosis(
            Verdict.THROTTLED,
            Blocking(Layer.HTTP, Method.THROTTLED),
            f"data flows at {rate(h.throughput)} over {h.body_length} bytes, while the control "
            f"downloads the same URL at {rate(control.throughput)}",
            f"{rate(h.throughput)} vs {rate(control.throughput)}",
        )
    return None


def _diff(x: View, h: HTTPObservation, control: HTTPObservation) -> Diagnosis | None:
    if _over_validated_tls(x, h):
        return None  # a page over validated TLS came from the site itself
    if h.status in SITE_STATUSES and h.status != control.status:
        return None  # reported by `reached` as what it is
    if same_page(h, control) or _localized(x.host, h, control):
        return None
    return blocked(
        Layer.HTTP,
        Method.DIFF,
        f"GET {h.url} got HTTP {h.status} '{h.title[:40]}' ({h.body_length} bytes); the "
        f"control gets HTTP {control.status} '{control.title[:40]}' "
        f"({control.body_length} bytes)",
        "page differs from the control's",
    )


def _localized(host: str, h: HTTPObservation, control: HTTPObservation) -> bool:
    """The site itself redirected this vantage to another of its own hosts than the control's
    (a regional edition): another page, but the site's choice, not the network's."""
    here, there = url_parts(final(h)).host, url_parts(final(control)).host
    site = host.removeprefix("www.")
    return bool(h.hops) and here != there and (here == site or here.endswith("." + site))


def same_page(h: HTTPObservation, control: HTTPObservation | None) -> bool:
    """The same status, and the same body, or one of a similar length, or the same title."""
    if control is None or h.status != control.status:
        return False
    longer = max(h.body_length, control.body_length)  # the same body is the same length
    similar = longer == 0 or min(h.body_length, control.body_length) / longer > BODY_PROPORTION
    return similar or (bool(h.title) and h.title == control.title)


def reached(x: View, h: HTTPObservation) -> Diagnosis:
    """The page loaded, and nothing above called it otherwise."""
    what = f"HTTP {h.status}" + (f" '{h.title[:40]}'" if h.title else "")
    how = "a validated TLS connection" if x.m.target.scheme == "https" else "plain HTTP"
    site = f"; the site {SITE_STATUSES[h.status]}" if h.status in SITE_STATUSES else ""
    seen = challenge(h)
    if seen is not None:
        site += f"; it is {seen}: the site's own bot defence, not censorship"
    return Diagnosis(
        Verdict.ACCESSIBLE,
        None,
        f"{what} from {h.address or 'the server'} over {how}, {h.body_length} bytes"
        f"{after_redirects(h)}{site}",
        f"{what} · {size(h.body_length)}",
    )
