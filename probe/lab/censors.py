"""The censors' packet rules, from the scenario file: iptables and ip6tables (nf_tables backend)
commands.

The ISP rewrites destinations (blockpage, 302 redirector, TLS interceptor) and lets vantage b's
IPv6 go nowhere; the border drops, resets, matches names in ClientHellos and Host headers, polices
rates, keeps a penalty box, freezes connections after a number of bytes and acts on one IP family.
The resolvers' lies and the DNS injector are servers (see servers.py), not rules.
"""

from __future__ import annotations

from probe.lab import scenarios as lab

Rule = list[str]


def isp_rules() -> list[Rule]:
    rules: list[Rule] = []
    dnat = {
        "http_blockpage": (80, lab.ISP_BLOCKPAGE),
        "http_redirect": (80, lab.ISP_REDIRECTOR),
        "tls_intercept": (443, lab.ISP_INTERCEPTOR),
    }
    for s in lab.scenarios():
        if s.technique == "quic_udp":  # all UDP/443 to the address: QUIC, whatever the name
            rules.append(
                ["-A", "FORWARD", "-d", s.address, "-p", "udp", "--dport", "443", "-j", "DROP"]
            )
        if s.technique in dnat:
            port, to = dnat[s.technique]
            rules.append(_dnat(s.address, "tcp", port, f"{to}:{port}"))
    return rules


def _dnat(address: str, protocol: str, port: int, to: str) -> Rule:
    return [
        *("-t", "nat", "-A", "PREROUTING", "-d", address, "-p", protocol),
        *("--dport", str(port), "-j", "DNAT", "--to-destination", to),
    ]


def border_nat_rules() -> list[Rule]:
    """UDP/443 to a QUIC-censored address goes to the border's QUIC relay (quiccensor.py)."""
    return [_dnat(s.address, "udp", 443, f"{h}:{p}") for s, (h, p) in lab.quic_censored()]


def isp_rules6() -> list[Rule]:
    """Vantage b has an IPv6 address and route, but its ISP forwards none of it: the probe there
    must find out that IPv6 goes nowhere (and measure IPv4 only), not call every target blocked."""
    return [["-A", "FORWARD", "-i", "to-b", "-j", "DROP"]]


def _name(host: str, *, port: int, prefix: str = "") -> Rule:
    """Match a host name in a TCP payload to `port` (the SNI of a ClientHello, or a Host header)."""
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
        "bm",
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
        elif t in ("sni_reset", "quic_tcp_reset"):  # over TCP only: QUIC is UDP
            rules.append([*fwd, *_name(s.host, port=443), *RESET])
        elif t == "sni_drop":
            rules.append([*fwd, *_name(s.host, port=443), "-j", "DROP"])
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
                    "443",
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


def border_rules6() -> list[Rule]:
    return [
        ["-A", "FORWARD", "-d", s.address6, "-j", "DROP"]
        for s in lab.scenarios()
        if s.technique == "ipv6_drop" and s.address6
    ]
