"""Plain data: targets, what the probe observed at each step, and the verdict.

Everything here is a frozen dataclass that `to_json` turns into JSON-ready dicts, so a result
printed by `check`, archived by `serve` or sent by the control helper has one shape.

Failures are data, named from one vocabulary (`FAILURES`): the measure modules translate library
exceptions into these names where the library raises, and the verdict reads only the names.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# The failure vocabulary. The first group are the methods of DESIGN.md's table; the rest say what
# happened when it is not a network failure of the kind censors cause.
FAILURES = frozenset(
    {
        "timeout",
        "reset",
        "refused",
        "unreachable",
        "eof",
        "invalid_certificate",
        "alert",
        "nxdomain",
        "servfail",
        "no_answer",
        # the peer sent something that is not the protocol (garbage DNS, junk TLS, bad HTTP)
        "protocol",
        "unknown",  # an error nobody mapped: a bug, never evidence of censorship
    }
)

VERDICTS = ("accessible", "blocked", "throttled", "down", "inconclusive")


@dataclass(frozen=True, slots=True)
class Target:
    """One URL to measure and the service it belongs to."""

    url: str
    service: str
    category: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @classmethod
    def parse(cls, text: str, service: str = "", category: str = "") -> Target:
        """A target from a URL or a bare domain (which means `https://DOMAIN/`).

        Raises ValueError with a message fit for the user.
        """
        text = text.strip()
        if "://" not in text:
            text = f"https://{text}/"
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{text!r} is not an http(s) URL")
        try:
            host, _ = parts.hostname, parts.port
        except ValueError as exc:  # a port that is not a number
            raise ValueError(f"{text!r}: {exc}") from None
        if not host or any(c.isspace() for c in host):
            raise ValueError(f"{text!r} has no valid host name")
        if not parts.path:
            text = parts._replace(path="/").geturl()
        return cls(url=text, service=service or default_service_name(host), category=category)


def default_service_name(host: str) -> str:
    """A service name for a bare URL: the host without a leading `www.`."""
    return host.removeprefix("www.")


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class DNSResponse:
    """One reply that arrived for a query (over UDP several may arrive for one query)."""

    elapsed: float  # seconds after the query was sent
    rcode: str = ""
    addresses: tuple[str, ...] = ()
    ttl: int | None = None
    error: str | None = None  # set when the reply could not be parsed or did not match the query


@dataclass(frozen=True, slots=True)
class DNSObservation:
    """The outcome of asking one resolver for one record type."""

    resolver: str  # "system", "192.0.2.53", "192.0.2.53:5353" or a DoH URL
    transport: str  # "system", "udp", "tcp" or "doh"
    qtype: str  # "A", "AAAA", or "A+AAAA" for the system resolver
    elapsed: float
    rcode: str = ""
    addresses: tuple[str, ...] = ()
    ttl: int | None = None
    failure: str | None = None
    error: str | None = None
    responses: tuple[DNSResponse, ...] = ()
    port_unreachable: bool = False  # the resolver's address said no resolver runs there

    def distinct_answers(self) -> list[tuple[str, ...]]:
        """The different address sets among the valid replies, in arrival order."""
        seen: list[tuple[str, ...]] = []
        for r in self.responses:
            if r.error is None and r.rcode == "NOERROR" and r.addresses:
                key = tuple(sorted(r.addresses))
                if key not in seen:
                    seen.append(key)
        return seen


@dataclass(frozen=True, slots=True)
class TCPObservation:
    address: str
    port: int
    elapsed: float
    failure: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Certificate:
    """A summary of the leaf certificate the server presented."""

    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: str
    not_after: str
    sha256: str


@dataclass(frozen=True, slots=True)
class TLSObservation:
    address: str
    port: int
    sni: str
    elapsed: float
    failure: str | None = None
    error: str | None = None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    certificate: Certificate | None = None
    verified: bool = False  # the chain and the name validated with the probe's trust anchors


@dataclass(frozen=True, slots=True)
class HTTPHop:
    url: str
    status: int
    location: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPObservation:
    url: str
    elapsed: float
    failure: str | None = None
    error: str | None = None
    status: int | None = None
    final_url: str | None = None
    address: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    header_names: tuple[str, ...] = ()
    title: str = ""
    body_length: int = 0
    body_sha256: str | None = None
    truncated: str | None = None  # why reading stopped early: "cap" or "window"
    ttfb: float | None = None
    throughput: float | None = None  # body bytes per second over the measured window
    hops: tuple[HTTPHop, ...] = ()
    body_sample: str = ""  # the start of the body as text, for blockpage fingerprints


@dataclass(frozen=True, slots=True)
class Measurement:
    """Everything one vantage observed for one target."""

    target: Target
    started: float  # wall-clock Unix time
    dns: tuple[DNSObservation, ...] = ()
    tcp: tuple[TCPObservation, ...] = ()
    tls: tuple[TLSObservation, ...] = ()
    sni_check: tuple[
        TLSObservation, ...
    ] = ()  # a harmless SNI to addresses where the real one failed
    http: HTTPObservation | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the probe chose not to do, and why

    def addresses(self) -> list[str]:
        """Every distinct address the resolvers returned, in order of appearance."""
        out: list[str] = []
        for obs in self.dns:
            for r in obs.responses or (DNSResponse(0.0, obs.rcode, obs.addresses),):
                for a in r.addresses:
                    if a not in out:
                        out.append(a)
        return out


@dataclass(frozen=True, slots=True)
class Blocking:
    layer: str
    method: str


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str
    blocking: Blocking | None
    explanation: str  # one sentence built from the evidence
    summary: str  # the key evidence in a few words, for tables


@dataclass(frozen=True, slots=True)
class Result:
    measurement: Measurement
    verdict: Verdict
    control: dict[str, Any] | None = None
    finished: float = 0.0

    def to_json(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "service": m.target.service,
            "category": m.target.category,
            "url": m.target.url,
            "target": m.target.host,
            "verdict": self.verdict.verdict,
            "blocking": to_json(self.verdict.blocking),
            "explanation": self.verdict.explanation,
            "summary": self.verdict.summary,
            "started": m.started,
            "finished": self.finished,
            "evidence": {"probe": to_json(m), "control": self.control},
            "timings": dict(m.timings),
        }


def to_json(obj: Any) -> Any:
    """Dataclasses to plain dicts and lists, ready for `json.dumps`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj
