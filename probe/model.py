"""Plain data: targets, what the probe observed at each step, and the diagnosis.

Everything here is a frozen dataclass that `to_json` turns into JSON-ready dicts, so a result
printed by `check`, archived by `serve` or sent by the control helper has one shape; `from_json`
reads it back (the probe reads the control helper's answers with it).

Failures are data, named from one vocabulary (`probe.vocabulary.Failure`): the measure modules
translate library exceptions into these names where the library raises, and the verdict reads
only the names.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from probe.policy import family, is_ip_literal
from probe.vocabulary import Failure, Layer, Method, Regime, Step, Verdict

T = TypeVar("T")
MAX_URL = 2048
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?\Z")  # labels, and one trailing dot at most
# the common shape of a URL in a list: what `urlsplit` would read the same way, read faster
_PLAIN_URL = re.compile(r"(https?)://([a-z0-9._-]+)(?::([0-9]{1,5}))?(/\S*)\Z")


@dataclass(frozen=True, slots=True)
class Target:
    """One URL to measure and the service it belongs to."""

    url: str
    service: str
    category: str = ""
    quic: str = ""  # its own QUIC mode (auto, always, never); "" for the settings'
    clienthello: str = ""  # its own ClientHello variants' mode (auto, always, never), or ""
    # a country measured from abroad (perspective remote), toward the destinations the settings
    # list for it; "" for a local measurement
    remote: str = ""

    @property
    def key(self) -> str:
        """What keys and names its results: the URL, with the country for a remote measurement
        (a remote result never replaces a local one)."""
        return f"{self.url} (remote {self.remote})" if self.remote else self.url

    @property
    def host(self) -> str:
        """The URL's host, derived, not kept (a million targets would keep 88 MB more): read
        off the common shape of a URL as fast as a field, or parsed."""
        plain = _PLAIN_URL.match(self.url)
        return plain[2] if plain is not None else url_parts(self.url).host

    @property
    def scheme(self) -> str:
        """http or https (`parse` takes no other: every step asks)."""
        return "https" if self.url[:6].lower() == "https:" else "http"

    @property
    def port(self) -> int:
        return url_parts(self.url).port

    @classmethod
    def parse(cls, text: str, service: str = "", category: str = "") -> Target:
        """A target from a URL or a bare domain (which means `https://DOMAIN/`).

        Raises ValueError with a message fit for the user.
        """
        text = text.strip()
        if len(text) > MAX_URL:
            raise ValueError(f"{text[:60]!r}…: longer than {MAX_URL} characters")
        plain = _PLAIN_URL.match(text)
        if plain is not None and (plain[3] is None or 0 < int(plain[3]) < 65536):
            name = check_host(plain[2], text)
            return cls(text, service or default_service_name(name), category)
        if "://" not in text:
            text = f"https://{text}/"
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{text!r} is not an http(s) URL")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:  # a port that is not a number, or out of range
            raise ValueError(f"{text!r}: {exc}") from None
        if port == 0:
            raise ValueError(f"{text!r}: port 0 is not a port")
        if not host:
            raise ValueError(f"{text!r} has no host name")
        ascii_host = check_host(host, text)
        if ascii_host != host:
            text = parts._replace(netloc=parts.netloc.lower().replace(host, ascii_host)).geturl()
            parts = urlsplit(text)
        if not parts.path:
            text = parts._replace(path="/").geturl()
        service = service or default_service_name(host)
        return cls(text, service, category)


class URLParts(typing.NamedTuple):
    scheme: str
    host: str
    port: int
    path: str  # with the query, as a request line names it
    netloc: str  # host[:port] as a Host header names it (the port only when not the default)


@functools.lru_cache(maxsize=4096)
def url_parts(url: str) -> URLParts:
    """What the steps need of a URL, parsed once (every step of every target asks)."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host, port = parts.hostname or "", parts.port  # properties that parse again on each call
    netloc = f"[{host}]" if ":" in host else host
    if port and port != default:
        netloc = f"{netloc}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return URLParts(parts.scheme, host, port or default, path, netloc)


def check_host(host: str, where: str) -> str:
    """The host as ASCII (IDNA), or ValueError when it is not a host name or an address.

    Rules: an address literal is measured as given (IPv4 only in dotted-quad form: `1.2.3` and
    `0x7f.1` are refused, not read as the legacy forms a resolver turns into other addresses);
    an IPv6 zone identifier (`[fe80::1%25eth0]`) is refused, a link-local address being no
    internet destination; a name may end with one dot (an absolute name); an `xn--` label must
    be valid punycode."""
    if "%" in host:
        raise ValueError(
            f"{where[:100]!r}: {host[:80]!r}: zone identifiers are not supported (a link-local "
            "address is not an internet destination)"
        )
    if is_ip_literal(host):
        return host
    invalid = ValueError(f"{where[:100]!r}: {host[:80]!r} is not a valid host name")
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise invalid from None
    if len(ascii_host) > 253 or not _NAME.match(ascii_host):
        raise invalid
    labels = ascii_host.removesuffix(".").split(".")
    if labels[-1].isdigit() or labels[-1].startswith("0x"):
        raise ValueError(
            f"{where[:100]!r}: {host[:80]!r} is neither a host name nor an IPv4 address "
            "(write it a.b.c.d)"
        )
    for label in labels if "xn--" in ascii_host else ():
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                raise ValueError(
                    f"{where[:100]!r}: {host[:80]!r}: {label!r} is not valid punycode"
                ) from None
    return ascii_host


def parse_resolver_address(spec: str) -> tuple[str, int]:
    """`192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` or `[2001:db8::1]:5353` -> (address, port);
    raises ValueError otherwise."""
    host, port = spec, "53"
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    if not is_ip_literal(host) or not port.isdigit():
        raise ValueError(
            f"{spec!r} is not a resolver: use 'system', an IP address[:port] or an https:// DoH URL"
        )
    if not 0 < int(port) < 65536:
        raise ValueError(f"{spec!r}: port out of range")
    return host, int(port)


def default_service_name(host: str) -> str:
    """A service name for a bare URL: the host without a leading `www.`."""
    return host.removeprefix("www.")


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
    failure: Failure | None = None
    error: str | None = None
    responses: tuple[DNSResponse, ...] = ()  # the first MAX_REPLIES replies
    port_unreachable: bool = False  # the resolver's address said no resolver runs there
    replies_dropped: int = 0  # replies past the cap: counted, not kept

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
    failure: Failure | None = None
    error: str | None = None
    family: int = 0  # 4 or 6: derived from the address, recorded in the evidence

    def __post_init__(self) -> None:  # derived: a copy with another address gets its family
        object.__setattr__(self, "family", family(self.address))


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
    failure: Failure | None = None
    error: str | None = None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    certificate: Certificate | None = None
    verified: bool = False  # the chain and the name validated with the probe's trust anchors
    # False when the handshake never started because the TCP connection failed (`failure` is
    # then the connection's): for the harmless-SNI check, which opens a connection of its own
    connected: bool = True
    family: int = 0  # derived from the address

    def __post_init__(self) -> None:  # derived: a copy with another address gets its family
        object.__setattr__(self, "family", family(self.address))


@dataclass(frozen=True, slots=True)
class HTTPHop:
    """A redirect: the URL that answered with it, and from where."""

    url: str
    status: int
    location: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Hop:
    """The connection a redirect needed: request i+1 of the chain went to `url` (another host,
    scheme or port, or the same server again), measured like a target's own."""

    url: str
    dns: tuple[DNSObservation, ...] = ()
    tcp: tuple[TCPObservation, ...] = ()
    tls: tuple[TLSObservation, ...] = ()
    sni_check: tuple[TLSObservation, ...] = ()


@dataclass(frozen=True, slots=True)
class HTTPObservation:
    """The exchange for one URL and its redirects; status, headers and body are the last
    response's."""

    url: str
    elapsed: float
    failure: Failure | None = None
    error: str | None = None
    status: int | None = None
    final_url: str | None = None
    address: str | None = None  # the server that sent the last response
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, bounded
    title: str = ""
    body_length: int = 0
    body_sha256: str | None = None
    truncated: str | None = None  # why reading stopped early: "cap" or "window"
    ttfb: float | None = None
    throughput: float | None = None  # body bytes per second over the measured window
    hops: tuple[HTTPHop, ...] = ()
    # the connections the redirects needed, in order: hop i+1 of `hops` went over connections[i]
    connections: tuple[Hop, ...] = ()
    body_sample: str = ""  # the start of the body as text, for blockpage fingerprints
    received: int = 0  # bytes of the last response that arrived (status line, headers, body)
    received_wire: int = 0  # the same on the wire: with TLS, its records (whole or not)
    last_byte: float | None = None  # seconds after its request, when the last of them arrived
    family: int = 0  # of the connection the last response came over (derived)

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", family(self.address) if self.address else 0)


@dataclass(frozen=True, slots=True)
class QUICObservation:
    """One QUIC attempt at one address: `kind` "sni" is a handshake with the real SNI, "harmless"
    one with the SNI check's name, "version" a version-negotiation ping (no SNI at all)."""

    address: str
    port: int
    sni: str
    elapsed: float
    failure: Failure | None = None
    error: str | None = None
    version: str | None = None  # the QUIC version the handshake settled on
    alpn: str | None = None
    certificate: Certificate | None = None
    verified: bool = False
    kind: str = "sni"
    family: int = 0  # derived from the address

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", family(self.address))


@dataclass(frozen=True, slots=True)
class HTTP3Observation:
    """An HTTP/3 GET on a QUIC connection: the status, the page's title, length and hash."""

    url: str
    elapsed: float
    failure: Failure | None = None
    error: str | None = None
    status: int | None = None
    title: str = ""
    body_length: int = 0
    body_sha256: str | None = None
    ttfb: float | None = None
    received: int = 0  # body bytes that arrived (the body is kept up to the cap)


@dataclass(frozen=True, slots=True)
class QUICPath:
    """The target over QUIC and HTTP/3: why it was tried (`tried`: "alt-svc" where the probe's
    HTTPS answer advertised h3, "control" where the control's did, "always") or why not
    (`skipped`), each address's handshake, the checks where the real SNI failed, the GET."""

    tried: str | None = None
    skipped: str | None = None
    port: int = 443
    handshakes: tuple[QUICObservation, ...] = ()
    checks: tuple[QUICObservation, ...] = ()  # harmless SNI, version pings
    http3: HTTP3Observation | None = None
    unsupported: bool = False  # skipped because nobody sees the site advertise HTTP/3


@dataclass(frozen=True, slots=True)
class HelloObservation:
    """One ClientHello of ours (a variant: `baseline`, `harmless`, `pq`, `ech_grease`, `ech`,
    `ech_outer`, `split_record`, `split_segment`) sent to one address, and what came back:
    `failure` None where the server answered (a ServerHello, a HelloRetryRequest or an alert,
    said in `answer`), else `reset`, `timeout`, `eof`, `protocol` (not TLS), or the connect's
    own failure (`connected` False)."""

    variant: str
    address: str
    port: int
    sni: str  # the name in the SNI (an ECH ClientHello's outer name)
    elapsed: float
    size: int  # bytes of the ClientHello
    failure: Failure | None = None
    answer: str = ""  # what answered, or the error
    connected: bool = True
    family: int = 0  # derived from the address

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", family(self.address))


@dataclass(frozen=True, slots=True)
class PublishedECH:
    """An ECH configuration a site publishes in its HTTPS record (type 65): the outer name a
    ClientHello carries, its config id and one cipher suite (HPKE KDF and AEAD ids)."""

    public_name: str
    config_id: int
    kdf: int
    aead: int


@dataclass(frozen=True, slots=True)
class HTTPSRecordObservation:
    """The outcome of asking one resolver for the target's HTTPS record (type 65): `failure`
    None where it answered (with a record or not), and the ECH configurations it publishes."""

    resolver: str
    elapsed: float
    rcode: str = ""
    records: int = 0  # HTTPS records in the answer
    ech: tuple[PublishedECH, ...] = ()
    failure: Failure | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HelloPath:
    """The target's ClientHello variants: why they were sent (`tried`: "failed" where its own
    handshake failed, "ech" where it publishes ECH, "always") or why not (`skipped`), the
    address they went to, and each variant's outcome."""

    tried: str | None = None
    skipped: str | None = None
    address: str = ""
    port: int = 0
    variants: tuple[HelloObservation, ...] = ()

    def of(self, variant: str) -> HelloObservation | None:
        return next((v for v in self.variants if v.variant == variant), None)


@dataclass(frozen=True, slots=True)
class SilentCheck:
    """Technique 1 of a remote measurement: UDP queries to an in-country address that runs no
    resolver. The harmless name goes first and must get no answer (else the address runs a
    resolver and proves nothing); any answer to the target's name was forged on the path."""

    destination: str
    name: str  # the harmless name
    harmless: DNSObservation
    queries: tuple[DNSObservation, ...] = ()  # the target's name: A, then AAAA


@dataclass(frozen=True, slots=True)
class NameCheck:
    """Technique 3: the same exchange with an in-country server, with the target's name (the SNI
    of a ClientHello, or the Host header of a request) and with a harmless one, harmless first."""

    destination: str
    harmless: TLSObservation | None = None  # https targets: the ClientHello
    target: TLSObservation | None = None
    harmless_http: HTTPObservation | None = None  # http targets: the request
    target_http: HTTPObservation | None = None


@dataclass(frozen=True, slots=True)
class RemotePath:
    """What a vantage abroad saw toward one country's destinations (the user lists them): the
    target's name to addresses that run no resolver, to open resolvers (their answers checked
    against this vantage's own and by certificate), and to web servers."""

    country: str
    silent: tuple[SilentCheck, ...] = ()
    resolvers: tuple[DNSObservation, ...] = ()  # `resolver` names the destination
    # handshakes with the real SNI to addresses only the open resolvers answered: a valid
    # certificate proves one genuine (a CDN's other node), as the control's validation does
    validation: tuple[TLSObservation, ...] = ()
    names: tuple[NameCheck, ...] = ()
    # false where the settings said not to contact the answers' addresses at all
    # (`remote_verify_answers: false`): an answer is then never claimed `inconsistent`
    answers_verified: bool = True


@dataclass(frozen=True, slots=True)
class Measurement:
    """Everything one vantage observed for one target."""

    target: Target
    started: float  # wall-clock Unix time
    dns: tuple[DNSObservation, ...] = ()
    tcp: tuple[TCPObservation, ...] = ()
    tls: tuple[TLSObservation, ...] = ()
    # a harmless SNI to addresses where the real one failed
    sni_check: tuple[TLSObservation, ...] = ()
    http: HTTPObservation | None = None  # over IPv4 where it connected, else IPv6
    http_ipv6: HTTPObservation | None = None  # the same fetch over IPv6, when both connected
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the probe chose not to do, and why
    deadline: float = 0.0  # seconds the target was given
    ran_out: Step | None = None  # the step during which that deadline ran out
    quic: QUICPath | None = None  # the QUIC/HTTP/3 path (https targets)
    remote: RemotePath | None = None  # a remote measurement's paths (`dns` is this vantage's)
    # the HTTPS records (type 65) of the target's host, asked beside A/AAAA (https targets)
    https_records: tuple[HTTPSRecordObservation, ...] = ()
    hello: HelloPath | None = None  # the ClientHello variants (https targets)

    def published_ech(self) -> PublishedECH | None:
        """The first ECH configuration the site's HTTPS records publish, if any does."""
        return next((e for r in self.https_records for e in r.ech), None)

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
    layer: Layer
    method: Method
    ip_version: int | None = None  # 4 or 6 where only that family is blocked
    sni_based: bool | None = None  # an HTTP/3 block: by the name in the Initial, or not
    # the vantage's network regime, where the block is the regime's (an allowlist, a shutdown, a
    # port-wide reset), not a decision about this service
    regime: Regime | None = None

    def __str__(self) -> str:
        family = f" (IPv{self.ip_version} only)" if self.ip_version else ""
        how = {True: ", SNI-based", False: ", not SNI-based", None: ""}[self.sni_based]
        under = f", under {self.regime}" if self.regime else ""
        return f"{self.layer}/{self.method}{family}{how}{under}"


@dataclass(frozen=True, slots=True)
class RegimeReport:
    """A vantage's network regime, found by its canaries before a run (or a serve round): since
    when it holds (wall clock), why, and what each canary saw."""

    regime: Regime
    since: float
    explanation: str
    evidence: tuple[str, ...] = ()
    unanswered: tuple[str, ...] = ()  # the canaries (URLs) that did not answer

    def sentence(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.since))
        return f"network regime {self.regime} since {when}: {self.explanation}"


@dataclass(frozen=True, slots=True)
class Seen:
    """What one measurement of a target came to, before several were settled into one."""

    verdict: Verdict
    blocking: Blocking | None
    summary: str
    explanation: str = ""  # its sentence where the target was measured more than once

    def __str__(self) -> str:
        how = f" {self.blocking}" if self.blocking else ""
        return f"{self.verdict}{how} ({self.summary})"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The verdict on one target, with the sentence and the words that justify it."""

    verdict: Verdict
    blocking: Blocking | None
    explanation: str  # one sentence built from the evidence
    summary: str  # the key evidence in a few words, for tables
    attempts: int = 1  # measurements made of the target
    agreed: int = 1  # how many of them gave this verdict
    # blockpage fingerprints that matched but did not count, each "name (source): why"
    ignored: tuple[str, ...] = ()
    seen: tuple[Seen, ...] = ()  # what each measurement came to, in order (settled ones)


@dataclass(frozen=True, slots=True)
class Control:
    """What the control helper saw of a target, from an unfiltered network."""

    measurement: Measurement | None = None
    # handshakes with the real SNI on port 443 to the vantage's addresses, for http:// targets
    # (an https:// target's own TLS step covers them): a valid certificate proves an address genuine
    validation: tuple[TLSObservation, ...] = ()
    error: str | None = None  # why the control could not answer


# The control helper's API (POST /api/v1/measure). Version 2 added `deadline` (the seconds its
# measurement may take), version 3 `quic` (the target's QUIC mode: the helper measures HTTP/3 by
# the same rule), version 4 `answer_within` (the seconds its whole answer may take, HTTP/3
# included); a helper answers any version, ignoring fields it does not know, so a fleet of mixed
# versions keeps working.
CONTROL_API_VERSION = 4
QUIC_MODES = ("auto", "always", "never")
MAX_CONTROL_ADDRESSES = 16


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """What a probe asks the control helper to measure."""

    url: str
    addresses: tuple[str, ...] = ()  # the vantage's addresses for the host: genuine or not?
    deadline: float | None = None  # seconds its measurement may take (version 2)
    quic: str = "auto"  # the target's QUIC mode (version 3)
    answer_within: float | None = None  # seconds the whole answer may take (version 4)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"version": CONTROL_API_VERSION, "url": self.url}
        doc["addresses"] = list(self.addresses)
        if self.deadline is not None:
            doc["deadline"] = self.deadline
        doc["quic"] = self.quic
        if self.answer_within is not None:
            doc["answer_within"] = self.answer_within
        return doc

    @classmethod
    def parse(cls, doc: Any) -> tuple[ControlRequest, Target]:
        """From a request's JSON; ValueError with a message for the client otherwise."""
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        version = doc.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("'version' must be a whole number from 1")
        url = doc.get("url")
        if not isinstance(url, str):
            raise ValueError("'url' must be a string")
        target = Target.parse(url)
        addresses = doc.get("addresses", [])
        if not isinstance(addresses, list) or len(addresses) > MAX_CONTROL_ADDRESSES:
            raise ValueError(
                f"'addresses' must be a list of at most {MAX_CONTROL_ADDRESSES} IP addresses"
            )
        for a in addresses:
            if not isinstance(a, str) or not is_ip_literal(a):
                raise ValueError(f"'addresses': {str(a)[:60]!r} is not an IP address")
        deadline, within = _seconds(doc, "deadline"), _seconds(doc, "answer_within")
        quic = doc.get("quic")  # a mode a later version adds is measured as "auto"
        quic = quic if isinstance(quic, str) and quic in QUIC_MODES else "auto"
        request = cls(target.url, tuple(dict.fromkeys(addresses)), deadline, quic, within)
        return request, target


def _seconds(doc: dict[str, Any], key: str) -> float | None:
    """A request's number of seconds, if given; ValueError for anything else."""
    value = doc.get(key)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 3600
    ):
        raise ValueError(f"'{key}' must be a number of seconds, more than 0")
    return None if value is None else float(value)


# The shape of a result and of an archive record (`Result.to_json`): raised whenever it changes.
# 1: `schema` itself, and `measurements` (what each measurement of the target came to).
# 2: `regime` (the vantage's network regime, found before the run), `blocking.regime`.
# 3: `ech` (the ECH verdict), the evidence's `https_records` and `hello` (ClientHello variants).
# 4: the evidence's `target` no longer repeats the URL's host (the result's `target` says it).
# 5: each of `measurements` has its `explanation` (where there are several).
SCHEMA = 5


@dataclass(frozen=True, slots=True)
class Result:
    measurement: Measurement
    diagnosis: Diagnosis
    control: Control | None = None
    finished: float = 0.0
    vantage: str = ""
    country: str = ""
    quic: Diagnosis | None = None  # the QUIC/HTTP/3 path's own verdict, beside the target's
    regime: Regime | None = None  # the vantage's network regime before the run (no canaries: None)
    ech: Diagnosis | None = None  # the ECH verdict, beside the target's (https targets)

    @property
    def verdict(self) -> Verdict:
        return self.diagnosis.verdict

    @property
    def perspective(self) -> str:
        """`local` (measured from inside the network it describes) or `remote` (from abroad)."""
        return "remote" if self.measurement.target.remote else "local"

    def to_json(self, deep: bool = True) -> dict[str, Any]:
        """The result as JSON-ready dicts (`deep=False` leaves the evidence's dataclasses for
        `dumps` to convert as it writes)."""
        m = self.measurement
        d = self.diagnosis
        convert = to_json if deep else _same
        return {
            "schema": SCHEMA,
            "vantage": self.vantage,
            "country": self.country,
            "perspective": self.perspective,
            "regime": self.regime,
            "service": m.target.service,
            "category": m.target.category,
            "url": m.target.url,
            "target": m.target.host,
            "verdict": d.verdict,
            "blocking": convert(d.blocking),
            "explanation": d.explanation,
            "summary": d.summary,
            "started": m.started,
            "finished": self.finished,
            "attempts": d.attempts,
            "agreed": d.agreed,
            "fingerprints_ignored": list(d.ignored),
            "measurements": convert(d.seen),
            "quic": convert(self.quic),
            "ech": convert(self.ech),
            "evidence": {"probe": convert(m), "control": convert(self.control)},
            "timings": dict(m.timings),
        }

    def dumps(self) -> bytes:
        """The result as one line of JSON, UTF-8 (the archive's and jsonl's format)."""
        return orjson.dumps(self.to_json(deep=False))


def _same(obj: Any) -> Any:
    return obj


_LEAVES = (str, int, float, type(None))  # StrEnum members are str; bool is an int


def to_json(obj: Any) -> Any:
    """Dataclasses to plain dicts and lists, ready for `json.dumps`."""
    if isinstance(obj, _LEAVES):
        return obj
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return {n: to_json(getattr(obj, n)) for n in _fields(type(obj))[1]}  # type: ignore[arg-type]


def from_json(cls: type[T], data: Any) -> T:
    """The inverse of `to_json` for this module's dataclasses; raises ValueError on bad input.
    Fields this version does not know are ignored (a newer control helper may send more)."""
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
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if tp is Failure:
            return Failure.parse(value)
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not a {tp.__name__.lower()}") from None
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
