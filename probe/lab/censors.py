"""The censors' packet rules, from the scenario file: iptables and ip6tables (nf_tables backend)
commands.

The ISP rewrites destinations (blockpage, 302 redirector, TLS interceptor) and lets vantage b's
IPv6 go nowhere; the border drops, resets, matches names in ClientHellos and Host headers, polices
rates, keeps a penalty box, freezes connections after a number of bytes and acts on one IP family.
The resolvers' lies and the DNS injector are servers (see servers.py), not rules.
"""

from __future__ import annotations

from probe.lab import scenarios as lab
from probe.model import url_parts

Rule = list[str]


def isp_rules() -> list[Rule]:
    rules: list[Rule] = []
    dnat = {
        "http_blockpage": (80, lab.ISP_BLOCKPAGE, 80),
        "http_redirect": (80, lab.ISP_REDIRECTOR, 80),
        "tls_intercept": (443, lab.ISP_INTERCEPTOR, 443),
        "http_diff": (80, lab.ISP_DIFFPAGE, 80),
        "tls_http": (443, lab.ISP_BLOCKPAGE, 80),  # the ClientHello reaches an HTTP server
    }
    for s in lab.scenarios():
        if s.technique == "quic_udp":  # all UDP/443 to the address: QUIC, whatever the name
            rules.append(
                ["-A", "FORWARD", "-d", s.address, "-p", "udp", "--dport", "443", "-j", "DROP"]
            )
        if s.technique in dnat:
            port, to, to_port = dnat[s.technique]
            rules.append(_dnat(s.address, "tcp", port, f"{to}:{to_port}"))
        if s.technique == "proxy_sni_reset":  # its subscribers' ClientHellos, at its proxy
            rules.append(
                [
                    "-A",
                    "INPUT",
                    "!",
                    "-i",
                    "to-border",
                    "-d",
                    lab.ISP_PROXY,
                    *_name(s.host, port=443),
                    *RESET,
                ]
            )
    return rules


def _dnat(address: str, protocol: str, port: int, to: str, *match: str) -> Rule:
    return [
        *("-t", "nat", "-A", "PREROUTING", "-d", address, "-p", protocol, *match),
        *("--dport", str(port), "-j", "DNAT", "--to-destination", to),
    ]


def border_nat_rules() -> list[Rule]:
    """UDP/443 to a QUIC-censored address goes to the border's QUIC relay (quiccensor.py), and a
    FIN-censored address's port to its TCP relay (relay.py) — the country's traffic only."""
    quic = [_dnat(s.address, "udp", 443, f"{h}:{p}") for s, (h, p) in lab.quic_censored()]
    tcp = [
        [
            *_dnat(s.address, "tcp", 80 if s.technique == "fin_host" else 443, f"{h}:{p}"),
            "-i",
            "to-isp",
        ]
        for s, (h, p) in lab.tcp_censored()
    ]
    return quic + tcp


def regime_rules() -> list[Rule]:
    """The ISP's regime for each of its regime vantages (see `lab.REGIME_VANTAGES`): an
    allowlist (the country's destinations pass; for the rest the SYN passes and nothing after
    it), a shutdown (nothing leaves the country), every connection to 443 reset."""
    rules: list[Rule] = []
    for vantage, (_, regime, _) in lab.REGIME_VANTAGES.items():
        fwd = ["-A", "FORWARD", "-i", f"to-{vantage}"]
        if regime == "allowlist":
            rules += [
                [*fwd, "-d", lab.IN_COUNTRY, "-j", "ACCEPT"],
                [*fwd, "-p", "tcp", "--syn", "-j", "ACCEPT"],
                [*fwd, "-j", "DROP"],
            ]
        elif regime == "shutdown":
            rules.append([*fwd, "!", "-d", lab.IN_COUNTRY, "-j", "DROP"])
        elif regime == "port_reset":
            rules.append([*fwd, "-p", "tcp", "--dport", "443", *RESET])
    return rules


def isp_rules6() -> list[Rule]:
    """Vantage b has an IPv6 address and route, but its ISP forwards none of it: the probe there
    must find out that IPv6 goes nowhere (and measure IPv4 only), not call every target blocked;
    nor does it forward its regime vantages' IPv6."""
    return [["-A", "FORWARD", "-i", f"to-{v}", "-j", "DROP"] for v in ("b", *lab.REGIME_VANTAGES)]


def _name(host: str, *, port: int, prefix: str = "") -> Rule:
    """Match a host name in a TCP segment to `port` (the SNI of a ClientHello, or a Host
    header). Knuth-Morris-Pratt, not Boyer-Moore: a segment's payload may lie in two pages of
    the sender's memory, and the kernel's Boyer-Moore searches each page apart, so a name
    across the boundary goes through (the likely reason a `host-drop` page loaded once in a CI
    run, in 1 of 10 rounds; KMP carries its match from one page to the next)."""
    return [
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-m",
        "string",
        "--string",
        f"{prefix}{host}",
        "--algo",
        "kmp",
        "--icase",
    ]


RESET = ["-j", "REJECT", "--reject-with", "tcp-reset"]


def border_rules() -> list[Rule]:
    rules: list[Rule] = []
    fwd = ["-A", "FORWARD"]
    for s in lab.scenarios():
        t = s.technique
        if t in ("ip_drop", "ipv4_drop"):
            rules.append([*fwd, "-d", s.address, "-j", "DROP"])
        elif t == "freeze":
            # the server's packets pass until it has sent `threshold` bytes (conntrack counts
            # them), then none: the transfer stops with neither RST nor FIN
            rules.append(
                [
                    *fwd,
                    "-s",
                    s.address,
                    "-p",
                    "tcp",
                    "-m",
                    "connbytes",
                    "--connbytes",
                    f"{s.threshold}:",
                    "--connbytes-dir",
                    "reply",
                    "--connbytes-mode",
                    "bytes",
                    "-j",
                    "DROP",
                ]
            )
        elif t == "ip_reset":
            rules.append([*fwd, "-d", s.address, "-p", "tcp", *RESET])
        elif t in ("sni_reset", "quic_tcp_reset", "proxy_sni_reset"):  # TCP only: QUIC is UDP
            rules.append([*fwd, *_name(s.host, port=443), *RESET])
        elif t == "host_drop":
            rules.append([*fwd, *_name(s.host, port=80, prefix="Host: "), "-j", "DROP"])
        elif t == "control_reset":
            rules += _control_reset(s.host)
        elif t == "sni_drop":
            rules.append([*fwd, *_name(s.host, port=443), "-j", "DROP"])
        elif t == "large_hello_drop":
            # a box that mishandles ClientHellos larger than one packet: their full-sized
            # segments to the site's port 443 are dropped, retransmissions too
            rules.append(
                [*fwd, "-d", s.address, "-p", "tcp", "--dport", "443", "-m", "length",
                 "--length", f"{lab.LARGE_PACKET}:65535", "-j", "DROP"]
            )  # fmt: skip
        elif t == "host_reset":
            rules.append([*fwd, *_name(s.host, port=80, prefix="Host: "), *RESET])
        elif t == "throttle":
            # policing, not shaping: what exceeds the rate is dropped
            rate = f"{lab.THROTTLE_BYTES_PER_SECOND // 1000}kb/s"
            rules.append(
                [
                    *fwd,
                    "-s",
                    s.address,
                    "-p",
                    "tcp",
                    "--sport",
                    str(url_parts(s.url).port),
                    "-m",
                    "hashlimit",
                    "--hashlimit-above",
                    rate,
                    "--hashlimit-burst",
                    "16kb",
                    "--hashlimit-mode",
                    "srcip,dstip",
                    "--hashlimit-name",
                    "throttle",
                    "-j",
                    "DROP",
                ]
            )
        elif t == "residual":
            # the penalty box first: (client, this server, 443) stays blocked after a trigger
            rules.append(
                [
                    *fwd,
                    "-d",
                    s.address,
                    "-p",
                    "tcp",
                    "--dport",
                    "443",
                    "-m",
                    "recent",
                    "--name",
                    "residual",
                    "--rcheck",
                    "--seconds",
                    str(lab.RESIDUAL_SECONDS),
                    *RESET,
                ]
            )
            rules.append(
                [
                    *fwd,
                    *_name(s.host, port=443),
                    "-m",
                    "recent",
                    "--name",
                    "residual",
                    "--set",
                    *RESET,
                ]
            )
    return rules


def _control_reset(host: str) -> list[Rule]:
    """Reset the vantages' requests to the control helper that name `host`, and its answers that
    do (as the GFW resets both ends: a request that slipped through is not answered either)."""
    request = ["-A", "FORWARD", *_name(host, port=lab.CONTROL_PORT), *RESET]
    answer = [part if part != "--dport" else "--sport" for part in request]  # from its port
    return [request, answer]


def border_rules6() -> list[Rule]:
    rules: list[Rule] = []
    for s in lab.scenarios():
        if s.technique == "ipv6_drop" and s.address6:
            rules.append(["-A", "FORWARD", "-d", s.address6, "-j", "DROP"])
        elif s.technique == "control_reset":  # the control helper has an IPv6 address too
            rules += _control_reset(s.host)
    return rules
