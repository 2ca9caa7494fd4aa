"""An on-path DNS injector, as the Great Firewall's: it sees queries pass and races a forged answer.

A packet socket on a border interface copies every IPv4 packet that arrives there; for a
UDP query to port 53 naming a listed host, a forged reply goes back at once from the queried
address (spoofed, through a raw socket). The query itself is forwarded untouched, so the real
answer arrives later — or, where the address runs no resolver, an ICMP port unreachable does.
Like the GFW, it forges an A record for every query type except AAAA for its listed names, and
an AAAA record (a Teredo address, 2001::/32, as the GFW's) for AAAA queries of its AAAA names.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
from collections.abc import Iterable

import dns.message
import dns.rdatatype
import dns.rrset

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


# Classic BPF, run by the kernel on each packet the packet socket would copy (from the IP
# header on, as SOCK_DGRAM gives it): UDP to port 53 in an unfragmented datagram is kept, the
# rest never reaches the socket. Without it the socket copies every packet crossing the border:
# in a busy round its buffer fills while the process is busy, and the queries to forge are
# dropped with the rest (a censor that misses injections under load).
_SO_ATTACH_FILTER = 26
_DNS_QUERIES = (
    (0x30, 0, 0, 9),  # A = the IP protocol
    (0x15, 0, 6, socket.IPPROTO_UDP),  # not UDP: drop
    (0x28, 0, 0, 6),  # A = flags and fragment offset
    (0x45, 4, 0, 0x1FFF),  # a fragment after the first: drop
    (0xB1, 0, 0, 0),  # X = the IP header's length
    (0x48, 0, 0, 2),  # A = the UDP destination port
    (0x15, 0, 1, 53),  # not 53: drop
    (0x06, 0, 0, 0xFFFF),  # keep (up to 64 KiB)
    (0x06, 0, 0, 0),  # drop
)


def _only_dns_queries(sock: socket.socket) -> None:
    program = ctypes.create_string_buffer(
        b"".join(struct.pack("HBBI", *instruction) for instruction in _DNS_QUERIES)
    )
    fprog = struct.pack("HL", len(_DNS_QUERIES), ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)  # the kernel copies it


class Injector:
    def __init__(
        self,
        interface: str,
        names: set[str],
        forged: str,
        aaaa_names: Iterable[str] = (),
        forged6: str = "",
    ) -> None:
        self.interface = interface
        self.names = {n.lower().rstrip(".") for n in names}
        self.forged = forged
        self.aaaa_names = {n.lower().rstrip(".") for n in aaaa_names}
        self.forged6 = forged6
        self._sniff: socket.socket | None = None
        self._send: socket.socket | None = None

    def start(self) -> Injector:
        self._sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        _only_dns_queries(self._sniff)
        self._sniff.bind((self.interface, 0))
        self._sniff.setblocking(False)
        self._send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        asyncio.get_running_loop().add_reader(self._sniff.fileno(), self._on_packet)
        return self

    def close(self) -> None:
        if self._sniff is not None:
            asyncio.get_running_loop().remove_reader(self._sniff.fileno())
            self._sniff.close()
        if self._send is not None:
            self._send.close()

    def _on_packet(self) -> None:
        assert self._sniff is not None and self._send is not None
        while True:
            try:
                packet, meta = self._sniff.recvfrom(65535)
            except BlockingIOError:
                return
            if meta[2] == PACKET_OUTGOING:
                continue
            forged = self.forge(packet)
            if forged is not None:
                self._send.sendto(forged, (socket.inet_ntoa(forged[16:20]), 0))

    def forge(self, packet: bytes) -> bytes | None:
        """The spoofed reply to `packet`, or None when it is not a query for a listed name."""
        if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
            return None
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl + 8:  # no room for the UDP header it claims
            return None
        src, dst = packet[12:16], packet[16:20]
        sport, dport = struct.unpack("!HH", packet[ihl : ihl + 4])
        if dport != 53:
            return None
        try:
            query = dns.message.from_wire(packet[ihl + 8 :])
        except Exception:  # not DNS, or garbage: let it pass
            return None
        if not query.question:
            return None
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        aaaa = question.rdtype == dns.rdatatype.AAAA
        if aaaa and name in self.aaaa_names:
            record = ("AAAA", self.forged6)
        elif not aaaa and name in self.names:
            record = ("A", self.forged)
        else:
            return None
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", *record))
        payload = reply.to_wire()
        udp = struct.pack("!HHHH", 53, sport, 8 + len(payload), 0) + payload  # checksum optional
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0, dst, src
        )  # the kernel fills in the ID and the header checksum
        return ip + udp
