"""Plain data: targets, what the probe observed at each step, and the verdict.

Everything here is a frozen dataclass that `to_json` turns into JSON-ready dicts, so a result
printed by `check`, archived by `serve` or sent by the control helper has one shape.

Failures are data, named from one vocabulary (`FAILURES`): the measure modules translate library
exceptions into these names where the library raises, and the verdict reads only the names.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
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
T = TypeVar("T")


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


def is_special(address: str, public_ranges: Sequence[str] = ()) -> bool:
    """Loopback, private, link-local, documentation and other special-purpose addresses (bogons),
    unless a configured public range includes them (labs, odd networks)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return True
    embedded = _embedded_ipv4(ip)
    if embedded is not None and is_special(str(embedded), public_ranges):
        return True
    if any(ip in ipaddress.ip_network(r, strict=False) for r in public_ranges):
        return False
    return not ip.is_global


# IPv6 forms that carry an IPv4 address a packet may end up at: mapped, compatible, NAT64, 6to4
_V4_IN_V6 = (
    (ipaddress.ip_network("::ffff:0:0/96"), 96),
    (ipaddress.ip_network("::/96"), 96),
    (ipaddress.ip_network("64:ff9b::/96"), 96),
    (ipaddress.ip_network("64:ff9b:1::/48"), 96),
    (ipaddress.ip_network("2002::/16"), 16),
)


def _embedded_ipv4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    if ip.version != 6:
        return None
    for net, shift in _V4_IN_V6:
        if ip in net:
            bits = int(ip) >> (128 - shift - 32) if shift == 16 else int(ip)
            return ipaddress.IPv4Address(bits & 0xFFFFFFFF)
    return None


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
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
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
    attempts: int = 1  # measurements made of the target
    agreed: int = 1  # how many of them gave this verdict


@dataclass(frozen=True, slots=True)
class Control:
    """What the control helper saw of a target, from an unfiltered network."""

    measurement: Measurement | None = None
    # handshakes with the real SNI on port 443 to the vantage's addresses, for http:// targets
    # (an https:// target's own TLS step covers them): a valid certificate proves an address genuine
    validation: tuple[TLSObservation, ...] = ()
    error: str | None = None  # why the control could not answer


@dataclass(frozen=True, slots=True)
class Result:
    measurement: Measurement
    verdict: Verdict
    control: Control | None = None
    finished: float = 0.0
    vantage: str = ""
    country: str = ""

    def to_json(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "vantage": self.vantage,
            "country": self.country,
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
            "attempts": self.verdict.attempts,
            "agreed": self.verdict.agreed,
            "evidence": {"probe": to_json(m), "control": to_json(self.control)},
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


def from_json(cls: type[T], data: Any) -> T:
    """The inverse of `to_json` for this module's dataclasses; raises ValueError on bad input."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints, names = _fields(cls)  # type: ignore[arg-type]  # classes are hashable
    kwargs = {n: _convert(hints[n], data[n], n) for n in names if n in data}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: {exc}") from None


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], list[str]]:
    """Resolved annotations and field names (get_type_hints is slow: once per class)."""
    return typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]


def _convert(tp: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_json(tp, value)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list")
        return tuple(_convert(args[0], v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object")
        return {str(k): _convert(args[1], v, where) for k, v in value.items()}
    expected = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}.get(tp)
    if expected and (
        not isinstance(value, expected) or (tp is not bool and isinstance(value, bool))
    ):
        raise ValueError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return float(value) if tp is float else value
