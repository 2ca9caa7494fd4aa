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
NS_PREFIX = "cp-"
ISP_RESOLVER = "192.0.2.53"
ISP_BLOCKPAGE = "192.0.2.80"
ISP_REDIRECTOR = "192.0.2.81"
ISP_INTERCEPTOR = "192.0.2.82"
INTERNET_RESOLVER = "203.0.113.53"
CONTROL_HOST = f"control.{ZONE}"
CONTROL_ADDRESS = "203.0.113.100"
CONTROL_ADDRESS6 = "2001:db8:113::100"
CONTROL_PORT = 8080
FORGED_ADDRESS = "203.0.113.66"  # what the injector answers: assigned to nothing
FORGED_ADDRESS6 = "2001::cb00:7142"  # its AAAA answer: Teredo (2001::/32), as the GFW's
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
DNS_DELAY = 0.04  # the "distant" resolver answers late, so the border's forgery wins the race

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
    }
)
PAGES = frozenset({"quote", "registry"})


@dataclass(frozen=True, slots=True)
class Expect:
    verdict: str
    layer: str | None = None
    method: str | None = None
    ip_version: int | None = None

    def __str__(self) -> str:
        if not self.layer:
            return self.verdict
        family = f" (IPv{self.ip_version} only)" if self.ip_version else ""
        return f"{self.verdict} {self.layer}/{self.method}{family}"


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

    def expected(self, vantage: str) -> Expect:
        return self.expect_by_vantage.get(vantage, self.expect)


@cache
def scenarios() -> tuple[Scenario, ...]:
    """Every scenario of `scenarios.yaml`, checked."""
    text = resources.files("probe.lab").joinpath("scenarios.yaml").read_text(encoding="utf-8")
    out = []
    for row in yaml.safe_load(text)["scenarios"]:
        by_vantage = {v: Expect(**e) for v, e in row.get("expect_by_vantage", {}).items()}
        s = Scenario(**{**row, "expect": Expect(**row["expect"]), "expect_by_vantage": by_vantage})
        if s.technique not in TECHNIQUES:
            raise ValueError(f"scenarios.yaml: {s.name}: unknown technique {s.technique!r}")
        if s.page is not None and s.page not in PAGES:
            raise ValueError(f"scenarios.yaml: {s.name}: unknown page {s.page!r}")
        if set(by_vantage) - set(VANTAGES):
            raise ValueError(f"scenarios.yaml: {s.name}: unknown vantage in expect_by_vantage")
        freeze, chain = s.technique == "freeze", s.technique == "chain"
        if freeze != (s.threshold is not None) or chain != (s.redirect is not None):
            raise ValueError(
                f"scenarios.yaml: {s.name}: a freeze needs a threshold, a chain a redirect"
            )
        out.append(s)
    return tuple(out)


def by_technique(technique: str) -> Scenario:
    return next(s for s in scenarios() if s.technique == technique)


def origin_addresses() -> list[str]:
    """Addresses where the internet namespace serves pages (every scenario's but `down`'s)."""
    out = []
    for s in scenarios():
        if s.technique != "down":
            out.append(s.address)
        if s.other_address:
            out.append(s.other_address)
    return out


def origin_addresses6() -> list[str]:
    return [s.address6 for s in scenarios() if s.address6]


def internet_addresses() -> list[str]:
    """Every address on the internet namespace (the down one exists: nothing listens there)."""
    return [
        *origin_addresses(),
        by_technique("down").address,
        INTERNET_RESOLVER,
        CONTROL_ADDRESS,
        *origin_addresses6(),
        CONTROL_ADDRESS6,
    ]
