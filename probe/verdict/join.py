"""The probe's and the control's observations of one target, joined once (pure).

The rules read rows, never lists searched by address (OONI's `minipipeline` does the same: first
the observations are flattened into rows keyed by transaction, address and family, then the
analysis reads rows). A target's measurement becomes one `Hop` per connection it needed — the
URL's own (hop 0) and each redirect to another host — with the control's steps for the same hop
beside it, where its chain went there too; each hop's addresses become `Row`s, the probe's TCP,
TLS and harmless-SNI steps at an address beside the control's at the same address. A `View` is a
hop seen in one IP family (or in both, before the families are judged apart), with the facts
every rule asks about computed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from probe.model import (
    Control,
    DNSObservation,
    HTTPObservation,
    Measurement,
    TCPObservation,
    TLSObservation,
    url_parts,
)
from probe.policy import family


@dataclass(frozen=True, slots=True)
class Row:
    """One address of a hop's host: the probe's steps there, and the control's at the same
    address (None where that side did not try it)."""

    address: str
    family: int
    tcp: TCPObservation | None = None
    tls: TLSObservation | None = None
    sni_check: TLSObservation | None = None
    c_tcp: TCPObservation | None = None
    c_tls: TLSObservation | None = None


@dataclass(frozen=True, slots=True)
class Steps:
    """What one side did for one hop: its lookups and its connections' steps."""

    dns: tuple[DNSObservation, ...] = ()
    tcp: tuple[TCPObservation, ...] = ()
    tls: tuple[TLSObservation, ...] = ()
    sni_check: tuple[TLSObservation, ...] = ()

    def addresses(self) -> list[str]:
        """Every distinct address the resolvers returned, in order of appearance (every reply
        of a UDP query, forged ones too)."""
        out: dict[str, None] = {}
        for obs in self.dns:  # the system resolver's have no replies, only its addresses
            for addresses in (*(r.addresses for r in obs.responses), obs.addresses):
                out.update(dict.fromkeys(addresses))
        return list(out)


def _rows(probe: Steps, control: Steps | None) -> tuple[Row, ...]:
    """The probe's addresses, in the order it tried them, each with both sides' steps."""
    c_tcp = {t.address: t for t in control.tcp} if control else {}
    c_tls = {t.address: t for t in control.tls} if control else {}
    tls = {t.address: t for t in probe.tls}
    checks = {t.address: t for t in probe.sni_check}
    return tuple(
        Row(
            t.address,
            t.family,
            t,
            tls.get(t.address),
            checks.get(t.address),
            c_tcp.get(t.address),
            c_tls.get(t.address),
        )
        for t in probe.tcp
    )


@dataclass(frozen=True, slots=True)
class Hop:
    """One connection of the target's measurement (0: its URL; n: the n-th redirect's), both
    sides' steps joined. `control` is None where the control's chain did not go there."""

    index: int
    url: str
    probe: Steps
    control: Steps | None
    rows: tuple[Row, ...]
    # the addresses where a certificate valid for the host was seen, by either side
    genuine: frozenset[str]

    @property
    def host(self) -> str:
        return url_parts(self.url).host

    def families(self) -> set[int]:
        """The IP families in play: those the resolvers answered, or a connection tried."""
        return {family(a) for a in self.probe.addresses()} | {r.family for r in self.rows}


def _genuine(host: str, seen: Sequence[TLSObservation]) -> frozenset[str]:
    # `verified` says the handshake completed and validated the name it was given
    return frozenset(t.address for t in seen if t.sni == host and t.verified)


@dataclass(frozen=True, slots=True)
class Joined:
    """A target's measurement and the control's answer, joined: its own hop (its URL's steps
    and the control's), and each side's HTTP exchange per family."""

    m: Measurement
    control: Control | None
    top: Hop

    @property
    def c(self) -> Measurement | None:
        return self.control.measurement if self.control is not None else None

    def http(self, f: int | None) -> HTTPObservation | None:
        """The probe's exchange in family `f` (None: the first that connected)."""
        return _http_of(self.m, f)

    def c_http(self, f: int | None) -> HTTPObservation | None:
        return _http_of(self.c, f) if self.c is not None else None


def _http_of(m: Measurement, f: int | None) -> HTTPObservation | None:
    if f is None:
        return m.http
    h = m.http_ipv6 if f == 6 and m.http_ipv6 is not None else m.http
    return h if h is not None and h.family == f else None


def _hop(
    index: int, url: str, mine: Steps, theirs: Steps | None, seen: list[TLSObservation]
) -> Hop:
    return Hop(index, url, mine, theirs, _rows(mine, theirs), _genuine(url_parts(url).host, seen))


def join(m: Measurement, control: Control | None) -> Joined:
    """The target's own hop, both sides' steps beside each other (each redirect's hops are
    joined where a view asks for them: `View.chain`)."""
    c = control.measurement if control is not None else None
    probe = Steps(m.dns, m.tcp, m.tls, m.sni_check)
    theirs = Steps(c.dns, c.tcp, c.tls, c.sni_check) if c is not None else None
    seen = [*m.tls, *(control.validation if control else ()), *(c.tls if c else ())]
    return Joined(m, control, _hop(0, m.target.url, probe, theirs, seen))


@dataclass(frozen=True)
class View:
    """A hop in one IP family (`family` None: both, as DNS is judged), with what the rules ask:
    the rows in that family, the control's steps where they can be compared (`c`), each side's
    HTTP exchange in it (hop 0 only)."""

    joined: Joined
    hop: Hop
    family: int | None = None

    @property
    def host(self) -> str:
        return self.hop.host

    @property
    def m(self) -> Measurement:
        return self.joined.m

    @cached_property
    def rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.hop.rows if self.family in (None, r.family))

    @cached_property
    def control(self) -> Control | None:
        """The control's answer as it bears on this view: None where there is none to compare
        with (no control, or its chain did not go to this hop); without a measurement, and the
        reason, where it did not measure this family."""
        control, side = self.joined.control, self.hop.control
        if control is None or control.measurement is None:
            return control
        if side is None:
            return None
        if self.family is not None and not any(t.family == self.family for t in side.tcp):
            return Control(None, error=f"the control did not measure IPv{self.family}")
        return control

    @cached_property
    def c(self) -> Steps | None:
        """The control's steps for this hop, where they can be compared."""
        return self.hop.control if self.control is not None and self.control.measurement else None

    @cached_property
    def c_tls(self) -> tuple[TLSObservation, ...]:
        """The control's handshakes for this hop in this family, at any address."""
        return tuple(t for t in self.c.tls if self.family in (None, t.family)) if self.c else ()

    @property
    def http(self) -> HTTPObservation | None:
        return self.joined.http(self.family) if self.hop.index == 0 else None

    @property
    def c_http(self) -> HTTPObservation | None:
        """The control's exchange in this family, beside `http` (which hop 0's views have)."""
        return self.joined.c_http(self.family) if self.c is not None else None

    def c_http_ok(self) -> HTTPObservation | None:
        h = self.c_http
        return h if h is not None and h.failure is None else None

    def control_addresses(self) -> list[str]:
        return self.c.addresses() if self.c is not None else []

    def control_missing(self) -> str:
        """Why the control did not decide it."""
        if self.control is None:
            return "a control (--control) is needed to tell censorship from an outage"
        if self.c is None:
            return f"the control helper did not answer ({self.control.error})"
        return "what the control saw does not tell censorship from an outage here"

    def in_family(self, f: int) -> View:
        return View(self.joined, self.hop, f)

    @cached_property
    def chain(self) -> tuple[Hop, ...]:
        """The hops of this view's redirect chain (hop 0's views only), each joined with the
        control's steps for the same URL where its chain (in this family) went there too."""
        h = self.http
        c_http = self.c_http
        theirs = {hop.url: hop for hop in c_http.connections} if c_http is not None else {}
        out = []
        for n, hop in enumerate(h.connections if h is not None else (), 1):
            other = theirs.get(hop.url)
            side = Steps(other.dns, other.tcp, other.tls, other.sni_check) if other else None
            out.append(
                _hop(
                    n,
                    hop.url,
                    Steps(hop.dns, hop.tcp, hop.tls, hop.sni_check),
                    side,
                    [*hop.tls, *(other.tls if other else ())],
                )
            )
        return tuple(out)

    def at(self, hop: Hop) -> View:
        """Another hop of the same target, seen as this one is (in both families)."""
        return View(self.joined, hop)
