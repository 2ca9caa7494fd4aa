"""A vantage's network regime, from its canaries (pure): a few destinations measured before each
run — inside the country, those an allowlist keeps open (its government, banks, big domestic
platforms), and abroad, neutral ones no censor targets (the control helper, sites of the kind of
example.com), one of them on two ports.

- `offline`: nothing could leave this machine — every canary failed for want of a route or a
  resolver (`unreachable`).
- `port_reset`: every abroad canary on one port is reset at or right after its connection,
  whatever its name, while a canary on another port is answered (the GFW, 2025-08-20, 443).
- `normal`: a canary abroad is answered.
- `allowlist`: an inside canary is answered, none abroad is, and abroad the SYN passes and then
  nothing comes (Russia's mobile networks since 2025). Without inside canaries (no country, no
  list) this cannot be told from a shutdown.
- `shutdown`: nothing abroad answers at any layer: its names do not resolve, its SYNs go
  unanswered (Iran, 2025-26); inside may work or not.
- `unknown`: anything else — the evidence is mixed, and no regime is claimed.

A regime that blocks (allowlist, shutdown, port_reset) is a claim about every target: it stands
only if the canaries, measured again after a pause, come to the same (`confirmed`) — a slow
server or a lost packet abroad must not silence a vantage's alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from probe.model import Measurement, url_parts
from probe.vocabulary import Failure, Regime

F = Failure


@dataclass(frozen=True, slots=True)
class Canary:
    """One canary's measurement, and where it stands ("inside" the country, or "abroad")."""

    side: str
    measurement: Measurement


@dataclass(frozen=True, slots=True)
class _Seen:
    """What one canary came to: answered, or the step that failed and how."""

    canary: Canary
    outcome: str  # answered | no_route | no_answer (DNS) | unanswered (SYN) | reset | hangs
    text: str

    @property
    def port(self) -> int:
        return url_parts(self.canary.measurement.target.url).port


def answered(m: Measurement) -> bool:
    """The destination answered over HTTP (any status)."""
    return m.http is not None and m.http.failure is None


def _seen(c: Canary) -> _Seen:
    m = c.measurement
    where = f"{m.target.url} ({c.side})"
    h = m.http
    if h is not None and h.failure is None:
        return _Seen(c, "answered", f"{where}: HTTP {h.status}")
    if not m.tcp:  # no address to connect to
        failures = {o.failure for o in m.dns}
        if failures and failures <= {F.UNREACHABLE}:
            return _Seen(c, "no_route", f"{where}: DNS {m.dns[0].error or 'unreachable'}")
        dns = next((o.failure for o in m.dns if o.failure), F.NO_ANSWER)
        return _Seen(c, "no_answer", f"{where}: DNS {dns}")
    tcp_failures = [t.failure for t in m.tcp if t.failure is not None]
    if len(tcp_failures) == len(m.tcp):
        tcp = tcp_failures[0]
        outcome = {F.UNREACHABLE: "no_route", F.RESET: "reset", F.REFUSED: "reset"}.get(
            tcp, "unanswered"
        )
        return _Seen(c, outcome, f"{where}: TCP {tcp} to {m.tcp[0].address}")
    step, failure = _after_connect(m)
    outcome = "reset" if failure in (F.RESET, F.EOF) else "hangs"
    return _Seen(c, outcome, f"{where}: TCP connected, then {step} {failure}")


def _after_connect(m: Measurement) -> tuple[str, Failure | None]:
    """The step that failed once a connection was open, and how."""
    failed_tls = [t for t in m.tls if t.failure is not None]
    if failed_tls and not any(t.failure is None for t in m.tls):
        return "TLS", failed_tls[0].failure
    return "HTTP", m.http.failure if m.http is not None else F.TIMEOUT


def judge_regime(canaries: Sequence[Canary]) -> Judged:
    """The regime, one sentence saying why, and what each canary saw."""
    seen = [_seen(c) for c in canaries]
    evidence = tuple(s.text for s in seen)
    if not seen:
        return Regime.UNKNOWN, "no canary was measured", evidence
    inside = [s for s in seen if s.canary.side == "inside"]
    abroad = [s for s in seen if s.canary.side == "abroad"]
    answered = [s for s in seen if s.outcome == "answered"]
    if all(s.outcome == "no_route" for s in seen):
        return Regime.OFFLINE, "nothing can leave this machine: no route, no resolver", evidence
    port = _reset_port(abroad, answered)
    if port is not None:
        other = next(s.port for s in answered if s.port != port)
        return (
            Regime.PORT_RESET,
            f"every connection to port {port} abroad is reset, whatever its name, while port "
            f"{other} answers",
            evidence,
        )
    if any(s.outcome == "answered" for s in abroad):
        return Regime.NORMAL, "destinations abroad answer", evidence
    if not abroad:
        return Regime.UNKNOWN, "no canary abroad to compare with", evidence
    if any(s.outcome == "answered" for s in inside) and all(s.outcome == "hangs" for s in abroad):
        return (
            Regime.ALLOWLIST,
            "destinations inside the country answer; abroad the connection opens, then nothing "
            "comes: only listed destinations work",
            evidence,
        )
    if all(s.outcome in ("no_answer", "unanswered") for s in abroad):
        return (
            Regime.SHUTDOWN,
            "nothing abroad answers at any layer (names do not resolve, SYNs go unanswered)",
            evidence,
        )
    return Regime.UNKNOWN, "the canaries' evidence is mixed", evidence


Judged = tuple[Regime, str, tuple[str, ...]]


def confirmed(first: Judged, again: Judged) -> Judged:
    """The regime of two looks at the canaries: the same regime stands; where the second finds
    the network `normal`, it is; any other disagreement is `unknown`."""
    if again[0] == first[0]:
        return again
    note = f"(a first look said {first[0]}: {first[1]})"
    if again[0] == Regime.NORMAL:
        return Regime.NORMAL, f"{again[1]} {note}", again[2]
    return Regime.UNKNOWN, f"the canaries measured twice disagree: {again[0]} {note}", again[2]


def _reset_port(abroad: Sequence[_Seen], answered: Sequence[_Seen]) -> int | None:
    """The port every abroad canary on which was reset, where a canary on another port was
    answered; None where there is none."""
    ports = {s.port for s in abroad}
    for port in sorted(ports):
        on_it = [s for s in abroad if s.port == port]
        if all(s.outcome == "reset" for s in on_it) and any(s.port != port for s in answered):
            return port
    return None
