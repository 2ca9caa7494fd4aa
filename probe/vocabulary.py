"""The project's names, each defined once: failures, verdicts, layers, methods and steps.

These are the strings of the JSON output, the metrics' label values and docs/vocabulary.md's
table, typed (`StrEnum`: each member *is* its string, so it serialises as one), with what every
front end asks of them: is it a block, in what order to show it, in what colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Failure(StrEnum):
    """Why one network step failed. The first group names what censors cause (and what outages
    cause too); the rest say what happened when it is not a network failure of that kind."""

    TIMEOUT = "timeout"
    RESET = "reset"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    EOF = "eof"
    INVALID_CERTIFICATE = "invalid_certificate"
    ALERT = "alert"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    NO_ANSWER = "no_answer"
    # the response began to arrive, then no byte came for `stall_after` before its end
    STALL = "stall"
    # QUIC: a CONNECTION_CLOSE, or a Version Negotiation without a common version
    CLOSE = "close"
    # the peer sent something that is not the protocol (garbage DNS, junk TLS, bad HTTP)
    PROTOCOL = "protocol"
    # the address policy refused the destination: never contacted
    FORBIDDEN = "forbidden"
    # an error nobody mapped: a bug, never evidence of censorship
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: object) -> Failure:
        """A failure name from JSON; a name this version does not know is `unknown`."""
        try:
            return cls(str(text))
        except ValueError:
            return cls.UNKNOWN


class Verdict(StrEnum):
    ACCESSIBLE = "accessible"
    BLOCKED = "blocked"
    THROTTLED = "throttled"
    DOWN = "down"  # fails from the control too: not censorship
    INCONCLUSIVE = "inconclusive"
    # the QUIC path only: no HTTP/3 anywhere (the site does not speak it), or not tried here
    UNSUPPORTED = "unsupported"
    NOT_MEASURED = "not_measured"

    @property
    def is_block(self) -> bool:
        """Blocked or throttled: what alerts, exit codes and re-measurement care about."""
        return self in (Verdict.BLOCKED, Verdict.THROTTLED)

    @property
    def style(self) -> Style:
        return STYLES[self]


# The target's (TCP path's) verdicts, in the order of the state set `censorprobe_target_verdict`.
TARGET_VERDICTS = (
    Verdict.ACCESSIBLE,
    Verdict.BLOCKED,
    Verdict.THROTTLED,
    Verdict.DOWN,
    Verdict.INCONCLUSIVE,
)
# The QUIC path's verdicts, in the order of `censorprobe_target_quic_verdict`; the ECH verdict's
# are the same set (`censorprobe_target_ech_verdict`).
QUIC_VERDICTS = (
    Verdict.ACCESSIBLE,
    Verdict.BLOCKED,
    Verdict.DOWN,
    Verdict.INCONCLUSIVE,
    Verdict.UNSUPPORTED,
    Verdict.NOT_MEASURED,
)


@dataclass(frozen=True, slots=True)
class Style:
    """How a verdict is shown: `severity` orders it (dashboards take the worst URL of a service
    with `max`), `rank` sorts tables (most urgent first), and its colour on each medium."""

    severity: int
    rank: int
    colour: str  # the status page
    grafana: str  # a Grafana colour name
    ansi: str  # the terminal


STYLES = {
    Verdict.ACCESSIBLE: Style(1, 4, "#1a7f37", "green", "32"),
    Verdict.INCONCLUSIVE: Style(2, 2, "#57606a", "text", "90"),
    Verdict.DOWN: Style(3, 3, "#6639ba", "purple", "35"),
    Verdict.THROTTLED: Style(4, 1, "#bc4c00", "orange", "33;1"),
    Verdict.BLOCKED: Style(5, 0, "#cf222e", "red", "31;1"),
    Verdict.UNSUPPORTED: Style(0, 5, "#8c959f", "text", "90"),
    Verdict.NOT_MEASURED: Style(0, 6, "#8c959f", "text", "90"),
}


class Layer(StrEnum):
    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"
    HTTP = "http"
    QUIC = "quic"


class Method(StrEnum):
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    NO_ANSWER = "no_answer"
    TIMEOUT = "timeout"
    BOGON = "bogon"
    INJECTED = "injected"
    INCONSISTENT = "inconsistent"
    RESET = "reset"
    UNREACHABLE = "unreachable"
    EOF = "eof"
    INVALID_CERTIFICATE = "invalid_certificate"
    ALERT = "alert"
    STALL = "stall"
    BLOCKPAGE = "blockpage"
    DIFF = "diff"
    CLOSE = "close"
    PROTOCOL = "protocol"
    THROTTLED = "throttled"


M = Method
# docs/vocabulary.md's table: the methods of each layer (a test holds the two equal).
# `throttled` is the method of the `throttled` verdict, at the http layer.
METHODS: dict[Layer, tuple[Method, ...]] = {
    Layer.DNS: (
        M.NXDOMAIN,
        M.SERVFAIL,
        M.REFUSED,
        M.NO_ANSWER,
        M.TIMEOUT,
        M.BOGON,
        M.INJECTED,
        M.INCONSISTENT,
    ),
    Layer.TCP: (M.TIMEOUT, M.RESET, M.REFUSED, M.UNREACHABLE),
    Layer.TLS: (M.RESET, M.TIMEOUT, M.EOF, M.INVALID_CERTIFICATE, M.ALERT, M.PROTOCOL),
    Layer.HTTP: (M.RESET, M.TIMEOUT, M.EOF, M.STALL, M.BLOCKPAGE, M.DIFF, M.THROTTLED),
    Layer.QUIC: (M.TIMEOUT, M.CLOSE, M.INVALID_CERTIFICATE),
}


class Regime(StrEnum):
    """What a vantage's whole network does, found by canaries before each run: one sentence
    instead of a thousand blocks."""

    NORMAL = "normal"
    OFFLINE = "offline"  # nothing can leave this machine: no route, no resolver
    SHUTDOWN = "shutdown"  # routes exist, but nothing abroad answers at any layer
    ALLOWLIST = "allowlist"  # listed destinations work; for the rest the SYN passes, then nothing
    PORT_RESET = "port_reset"  # every TCP connection to a port is reset, whatever the name
    UNKNOWN = "unknown"  # the canaries' evidence is mixed

    @property
    def is_block(self) -> bool:
        """A regime under which a target's block is the regime's, not a decision about it."""
        return self in (Regime.SHUTDOWN, Regime.ALLOWLIST, Regime.PORT_RESET)


class Step(StrEnum):
    """The steps of one measurement, as timed (`timings`, `censorprobe_step_duration_seconds`)."""

    DNS = "dns"
    TCP_TLS = "tcp_tls"
    SNI_CHECK = "sni_check"
    HTTP = "http"
    QUIC = "quic"
    CLIENTHELLO = "clienthello"  # the ClientHello variants
    TOTAL = "total"
