"""The big CDNs' and WAFs' own challenge and bot-defence pages, recognised by what they carry: a
status, a header that names the vendor, a marker of the page. A site behind one may challenge a
vantage's address (a datacenter, a country's carrier-grade NAT) while serving the control the
page: that is the site's doing, not the network's (OONI's QA suite has the case; its pipeline
calls it `http-diff`). These markers only ever lower a verdict — from a diff to `accessible` —
and never outweigh a blockpage fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.model import HTTPObservation

# what a challenge or a bot-defence refusal answers with (AWS WAF's are its own)
STATUSES = frozenset({403, 429, 503})


@dataclass(frozen=True, slots=True)
class Vendor:
    name: str
    statuses: frozenset[int]
    # a header that says the response is a challenge, whatever the page: (name, value)
    definitive: tuple[tuple[str, str], ...]
    # headers that name the vendor (name, a part of the value, "" for any)
    headers: tuple[tuple[str, str], ...]
    markers: tuple[str, ...]  # parts of the page's title or body


VENDORS = (
    Vendor(
        "Cloudflare's browser check",
        STATUSES,
        (("cf-mitigated", "challenge"),),
        (("server", "cloudflare"), ("cf-ray", "")),
        (
            "Just a moment...",
            "Attention Required! | Cloudflare",
            "_cf_chl_opt",
            "cf-browser-verification",
            "/cdn-cgi/challenge-platform/",
        ),
    ),
    Vendor(
        "Akamai's bot manager",
        STATUSES,
        (),
        (("server", "akamaighost"),),
        ("Reference&#32;&#35;", "Reference #", "errors.edgesuite.net"),
    ),
    Vendor(
        "Imperva's Incapsula",
        STATUSES,
        (),
        (("x-iinfo", ""), ("x-cdn", "incapsula")),
        ("Incapsula incident ID", "_Incapsula_Resource"),
    ),
    Vendor(
        "Sucuri's firewall",
        STATUSES,
        (),
        (("x-sucuri-id", ""), ("server", "sucuri")),
        ("Sucuri WebSite Firewall", "sucuri.net/"),
    ),
    Vendor(
        "DDoS-Guard's check",
        STATUSES,
        (),
        (("server", "ddos-guard"),),
        ("DDoS-Guard", "ddos-guard.net"),
    ),
    Vendor(
        "AWS WAF's challenge",
        frozenset({202, 403, 405}),
        (("x-amzn-waf-action", "challenge"), ("x-amzn-waf-action", "captcha")),
        (),
        (),
    ),
)


def challenge(h: HTTPObservation) -> str | None:
    """What challenge page `h` is ("Cloudflare's browser check (server: cloudflare, 'Just a
    moment...')"), or None."""
    for v in VENDORS:
        if h.status not in v.statuses:
            continue
        for name, value in v.definitive:
            if value in h.headers.get(name, "").lower():
                return f"{v.name} ({name}: {h.headers[name]})"
        header = next(
            (n for n, part in v.headers if n in h.headers and part in h.headers[n].lower()), None
        )
        text = f"{h.title}\n{h.body_sample}"
        marker = next((m for m in v.markers if m in text), None)
        if header is not None and marker is not None:
            return f"{v.name} ({header}: {h.headers[header][:40]}, '{marker}')"
    return None
