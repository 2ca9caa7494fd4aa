"""The lab's scenario file and its fixed addresses: one place the lab and the tests both read."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

ZONE = "lab.test"
STATE_DIR = "/run/censorprobe-lab"

# Namespaces and links, all in ranges reserved for documentation and benchmarking.
VANTAGES = {"a": "XA", "b": "XB"}  # vantage -> country label (ISO user-assigned codes)
# vantages whose ISP gives them a network regime of its own: an allowlist (in-country
# destinations only; for the rest the SYN passes, then nothing), a shutdown (nothing leaves the
# country), every connection to port 443 reset. name -> (country label, regime, ISP link /30)
REGIME_VANTAGES = {
    "allow": ("XL", "allowlist", "198.18.7"),
    "shut": ("XS", "shutdown", "198.18.8"),
    "reset": ("XP", "port_reset", "198.18.9"),
}
# a vantage abroad, on the internet's side of the border, measuring the lab's country remotely
ABROAD = "abroad"
ABROAD_COUNTRY = "XZ"  # where the abroad vantage stands
REMOTE_COUNTRY = "XA"  # the country it measures
NS_PREFIX = "cp-"
# The lab's servers, censors and forwarding stand for other machines: the network does not slow
# down when the vantage's CPU is busy (a loaded VM measuring a thousand targets), so they run
# ahead of it, at this priority.
NICE = -10
ISP_RESOLVER = "192.0.2.53"
ISP_BLOCKPAGE = "192.0.2.80"
ISP_REDIRECTOR = "192.0.2.81"
ISP_INTERCEPTOR = "192.0.2.82"
ISP_PROXY = "192.0.2.83"  # a transparent proxy: relays to the site a ClientHello or Host names
ISP_REFUSER = "192.0.2.84"  # an address of the ISP where nothing listens (a RST answers)
ISP_DIFFPAGE = "192.0.2.85"  # serves a blockpage no fingerprint knows ("Access Denied")
BOGON_ANSWER = "10.10.34.35"  # a special-purpose answer, as Iran's resolvers give
# the names an ISP resolver may answer with, for `isp_answer`
ISP_ANSWERS = {
    "blockpage": ISP_BLOCKPAGE,
    "proxy": ISP_PROXY,
    "refuser": ISP_REFUSER,
    "bogon": BOGON_ANSWER,
    "loopback": "127.0.0.1",
}
# in-country destinations for remote measurement: an address that runs no resolver (and, as a
# firewalled host, answers nothing at all), and a web server of an organisation (lab CA)
IN_COUNTRY_SILENT = "192.0.2.7"
IN_COUNTRY_SERVER = "192.0.2.90"
IN_COUNTRY = "192.0.2.0/24"  # the lab's country: its ISP's and its organisations' addresses
# the canaries of the lab's vantages: inside (an organisation's server, which an allowlist keeps
# open), abroad (the honest origin, on two ports; the control helper is one too)
INSIDE_CANARY_HOST = f"gov.{ZONE}"
CANARIES = {
    "inside": [f"https://{INSIDE_CANARY_HOST}/"],
    "abroad": [f"https://ok.{ZONE}/", f"http://ok.{ZONE}/"],
}
INTERNET_RESOLVER = "203.0.113.53"
CONTROL_HOST = f"control.{ZONE}"
CONTROL_ADDRESS = "203.0.113.100"
CONTROL_ADDRESS6 = "2001:db8:113::100"
CONTROL_PORT = 8080
FORGED_ADDRESS = "203.0.113.66"  # what the injector answers: assigned to nothing
FORGED_ADDRESS6 = "2001::cb00:7142"  # its AAAA answer: Teredo (2001::/32), as the GFW's
QUIC_CENSOR = ("198.18.3.2", 4433)  # the border's QUIC relay (see quiccensor.py): port + index
TCP_CENSOR = ("198.18.3.2", 5000)  # the border's TCP relays (see tcpcensor.py): port + index
NATIONAL_BLOCKPAGE_HOST = (
    "warning.rt.ru"  # the 302 target, as Rostelecom's; resolved only in the lab
)
PUBLIC_RANGES = (
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "198.18.0.0/15",
    "2001:db8::/32",
)
RESIDUAL_SECONDS = 3
THROTTLE_BYTES_PER_SECOND = 16_000  # ~128 kbit/s, like Russia's 2021 policing of Twitter
SLOW_DELAY = 1.5
LARGE_OBJECT_BYTES = 4 << 20
LARGE_PAGE_BYTES = 32 << 20  # OONI's QA suite's large file: 32 MiB
REDIRECT_LOOP = 15  # redirects in a loop (the probe follows 10)
DNS_DELAY = 0.04  # the "distant" resolver answers late, so the border's forgery wins the race
# the outer name of the ECH configuration the lab's ECH origins publish (cloudflare-ech.com's
# part), and its config id; the border's ECH censor lists that name, as the TSPU lists Cloudflare's
ECH_PUBLIC_NAME = f"ech-cover.{ZONE}"
ECH_CONFIG_ID = 0x2A
LARGE_PACKET = 1400  # a packet at least this long carries a ClientHello larger than one packet

TECHNIQUES = frozenset(
    {
        "none",
        "isp_nxdomain",
        "isp_redirect",
        "dns_injection",
        "ip_drop",
        "ip_reset",
        "sni_reset",
        "sni_drop",
        "host_reset",
        "http_blockpage",
        "http_redirect",
        "tls_intercept",
        "throttle",
        "residual",
        "cdn",
        "down",
        "slow",
        "freeze",
        "chain",
        "ipv6_drop",
        "ipv4_drop",
        "aaaa_injection",
        "quic",
        "quic_sni",
        "quic_udp",
        "quic_tcp_reset",
        # answers of the ISP's resolver, by name (`isp_answer`)
        "isp_lie",
        # the origin's own doing: a bot-defence challenge to the vantages, a broken redirect for
        # them, a redirect loop for everyone
        "challenge",
        "broken_redirect",
        "redirect_loop",
        # the border resets the vantages' requests to the control helper that name the host
        "control_reset",
        # the ISP DNATs port 80 to a page no fingerprint knows; port 443 to an HTTP server
        "http_diff",
        "tls_http",
        # the border closes (FIN) a connection whose Host or SNI names the host; drops a request
        # whose Host names it
        "fin_host",
        "fin_sni",
        "host_drop",
        # the ISP resolver answers its transparent proxy, and the ISP resets the ClientHellos
        # that reach the proxy from its subscribers, as the border does on the way to the site
        "proxy_sni_reset",
        # ClientHello shapes: the border holds silent a ClientHello with an ECH extension whose
        # outer name it lists (Russia's TSPU); drops ClientHellos larger than one packet
        "ech_drop",
        "large_hello_drop",
    }
)
# origins that speak HTTP/3 (and advertise it)
QUIC_TECHNIQUES = frozenset({"quic", "quic_sni", "quic_udp", "quic_tcp_reset"})
PAGES = frozenset({"quote", "registry", "large"})
CERTIFICATES = frozenset({"expired", "wrong_name", "untrusted"})
RESOLVES_TO = frozenset({"nxdomain", "no_address", "127.0.0.1"})


@dataclass(frozen=True, slots=True)
class Expect:
    verdict: str
    layer: str | None = None
    method: str | None = None
    ip_version: int | None = None
    sni_based: bool | None = None  # for an HTTP/3 block: read from the Initial's SNI, or not

    def __str__(self) -> str:
        if not self.layer:
            return self.verdict
        family = f" (IPv{self.ip_version} only)" if self.ip_version else ""
        how = {True: ", SNI-based", False: ", not SNI-based", None: ""}[self.sni_based]
        return f"{self.verdict} {self.layer}/{self.method}{family}{how}"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    host: str
    address: str
    technique: str
    url: str
    expect: Expect
    other_address: str | None = None
    address6: str | None = None
    threshold: int | None = None
    redirect: str | None = None
    page: str | None = None
    expect_by_vantage: dict[str, Expect] = field(default_factory=dict)
    quic_mode: str | None = None
    expect_quic: Expect | None = None
    # seen from abroad (perspective remote): only the border's censors act on traffic from
    # there; `accessible` means no interference on the path
    expect_remote: Expect = Expect("accessible")
    isp_answer: str | None = None  # isp_lie: the name of ISP_ANSWERS the ISP resolver answers
    certificate: str | None = None  # the origin's certificate, where not the lab's valid one
    resolves_to: str | None = None  # the zone's answer, where not the address (nxdomain…)
    control_fails: bool = False  # the control helper cannot be asked about it
    ooni: tuple[str, ...] = ()  # the cases of OONI's QA suite it stands for
    publishes_ech: bool = False  # its HTTPS record publishes an ECH configuration
    clienthello_mode: str | None = None  # the target's own `clienthello:`
    expect_ech: Expect | None = None  # the ECH verdict (see `expected_ech`)
    # `check --routes`: each route's outcome (through, fails, unsupported, not_measured)
    expect_routes: dict[str, str] = field(default_factory=dict)

    def expected(self, vantage: str) -> Expect:
        return self.expect_by_vantage.get(vantage, self.expect)


@cache
def scenarios() -> tuple[Scenario, ...]:
    """Every scenario of `scenarios.yaml`, checked."""
    text = resources.files("probe.lab").joinpath("scenarios.yaml").read_text(encoding="utf-8")
    out = []
    for row in yaml.safe_load(text)["scenarios"]:
        by_vantage = {v: Expect(**e) for v, e in row.get("expect_by_vantage", {}).items()}
        quic = Expect(**row["expect_quic"]) if "expect_quic" in row else None
        ech = Expect(**row["expect_ech"]) if "expect_ech" in row else None
        remote = Expect(**row.get("expect_remote", {"verdict": "accessible"}))
        s = Scenario(
            **{
                **row,
                "expect": Expect(**row["expect"]),
                "expect_by_vantage": by_vantage,
                "expect_quic": quic,
                "expect_ech": ech,
                "expect_remote": remote,
                "ooni": tuple(row.get("ooni", ())),
            }
        )
        if s.technique not in TECHNIQUES:
            raise ValueError(f"scenarios.yaml: {s.name}: unknown technique {s.technique!r}")
        if s.page is not None and s.page not in PAGES:
            raise ValueError(f"scenarios.yaml: {s.name}: unknown page {s.page!r}")
        if s.certificate is not None and s.certificate not in CERTIFICATES:
            raise ValueError(f"scenarios.yaml: {s.name}: unknown certificate {s.certificate!r}")
        if s.resolves_to is not None and s.resolves_to not in RESOLVES_TO:
            raise ValueError(f"scenarios.yaml: {s.name}: unknown resolves_to {s.resolves_to!r}")
        lies = s.technique in ("isp_lie", "proxy_sni_reset")
        if (lies and s.isp_answer is None) or s.isp_answer not in (None, *ISP_ANSWERS):
            raise ValueError(f"scenarios.yaml: {s.name}: isp_answer: one of {list(ISP_ANSWERS)}")
        if set(by_vantage) - set(VANTAGES):
            raise ValueError(f"scenarios.yaml: {s.name}: unknown vantage in expect_by_vantage")
        freeze, chain = s.technique == "freeze", s.technique == "chain"
        if freeze != (s.threshold is not None) or chain != (s.redirect is not None):
            raise ValueError(
                f"scenarios.yaml: {s.name}: a freeze needs a threshold, a chain a redirect"
            )
        out.append(s)
    return tuple(out)


def quic_censored() -> list[tuple[Scenario, tuple[str, int]]]:
    """The scenarios the border's QUIC censor relays, each with the relay's address."""
    host, port = QUIC_CENSOR
    quic_sni = [s for s in scenarios() if s.technique == "quic_sni"]
    return [(s, (host, port + i)) for i, s in enumerate(quic_sni)]


def by_technique(technique: str) -> Scenario:
    return next(s for s in scenarios() if s.technique == technique)


def origin_addresses() -> list[str]:
    """Addresses where the internet namespace serves pages with the lab's valid certificate
    (every scenario's but `down`'s and those whose certificate is another)."""
    out = []
    for s in scenarios():
        if s.technique != "down" and s.certificate is None:
            out.append(s.address)
        if s.other_address:
            out.append(s.other_address)
    return out


def tcp_censored() -> list[tuple[Scenario, tuple[str, int]]]:
    """The scenarios the border's TCP relays censor, each with its relay's address."""
    host, port = TCP_CENSOR
    relayed = [s for s in scenarios() if s.technique in ("fin_host", "fin_sni", "ech_drop")]
    return [(s, (host, port + i)) for i, s in enumerate(relayed)]


def expected_quic(s: Scenario) -> Expect | None:
    """The HTTP/3 path's expected verdict: as the file says, else `unsupported` for https (no
    lab origin but the QUIC ones advertises HTTP/3), none for http."""
    if s.expect_quic is not None:
        return s.expect_quic
    return Expect("unsupported") if s.url.startswith("https://") else None


def expected_ech(s: Scenario) -> Expect | None:
    """The ECH verdict: as the file says, else `unsupported` for https (the site publishes no
    ECH), none for http."""
    if s.expect_ech is not None:
        return s.expect_ech
    return Expect("unsupported") if s.url.startswith("https://") else None


def origin_addresses6() -> list[str]:
    return [s.address6 for s in scenarios() if s.address6]


def internet_addresses() -> list[str]:
    """Every address on the internet namespace (the down one exists: nothing listens there)."""
    return [
        *origin_addresses(),
        by_technique("down").address,
        *(s.address for s in scenarios() if s.certificate is not None),
        INTERNET_RESOLVER,
        CONTROL_ADDRESS,
        *origin_addresses6(),
        CONTROL_ADDRESS6,
    ]
