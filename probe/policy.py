"""Which addresses are special-purpose (bogons), and the address policy built on that.

The control helper and `serve --probe-targets any` fetch URLs for others: they must never be
steered into loopback, private or other special-purpose networks. The policy is asked at connect
time, for every connection (every redirect hop, every family, address literals and names alike),
so there is no path around it. The probe itself measures what its operator listed and connects
anywhere (`AddressPolicy.open()`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 forms that carry an IPv4 address a packet may end up at, and where that address sits:
# mapped, compatible, NAT64 (two prefixes) and 6to4
_V4_IN_V6: tuple[tuple[Network, int], ...] = (
    (ipaddress.ip_network("::ffff:0:0/96"), 0),
    (ipaddress.ip_network("::/96"), 0),
    (ipaddress.ip_network("64:ff9b::/96"), 0),
    (ipaddress.ip_network("64:ff9b:1::/48"), 0),
    (ipaddress.ip_network("2002::/16"), 80),
)


def embedded_ipv4(ip: IP) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv6 address of one of the forms above, if any."""
    if ip.version != 6:
        return None
    for net, shift in _V4_IN_V6:
        if ip in net:
            return ipaddress.IPv4Address((int(ip) >> shift) & 0xFFFFFFFF)
    return None


def family(address: str) -> int:
    """4 or 6."""
    return 6 if ":" in address else 4


def is_ip_literal(host: str) -> bool:
    if ":" not in host and not host[-1:].isdigit():
        return False  # the common case, a name, without an exception's cost
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_special(address: str, public_ranges: Sequence[str] = ()) -> bool:
    """Loopback, private, link-local, documentation and other special-purpose addresses (bogons),
    in any form, unless a configured public range includes them (labs, odd networks)."""
    return not AddressPolicy(tuple(public_ranges)).allows(address)


@dataclass(frozen=True)
class AddressPolicy:
    """Globally routable addresses are allowed; so are `public_ranges`; nothing else is."""

    public_ranges: tuple[str, ...] = ()
    anything: bool = False  # the probe's own policy: its operator chose the targets

    @classmethod
    def open(cls) -> AddressPolicy:
        return cls(anything=True)

    @cached_property
    def _networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(r, strict=False) for r in self.public_ranges)

    def allows(self, address: str) -> bool:
        if self.anything:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None and not self.allows(str(inner)):
            return False
        if any(ip in net for net in self._networks):
            return True
        return ip.is_global
