"""The HTTPS record (type 65, RFC 9460) of a host, and the ECH configurations it publishes
(its `ech` SvcParam: an ECHConfigList, draft-ietf-tls-esni §4), from one resolver: over UDP
(TCP where the answer is truncated) or DNS-over-HTTPS. The system resolver has no API for type
65: its first nameserver (`system.nameservers`) is asked over UDP instead.

Only what a ClientHello names is kept of a configuration: its outer name, config id and first
cipher suite. A configuration of another ECH version, or bytes that do not parse, are skipped
with the reason; hostile answers cost at most MAX_CONFIGS configurations.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from probe.measure import dnswire
from probe.measure.failure import classify, describe
from probe.model import HTTPSRecordObservation, PublishedECH, check_host
from probe.vocabulary import Failure

if TYPE_CHECKING:
    import aiohttp

HTTPS = 65  # the record type
ECH_VERSION = 0xFE0D
ECH_PARAM = 5  # the SvcParamKey of `ech`
MAX_CONFIGS = 8  # configurations kept per answer


async def ask_udp(
    host: str, resolver: dnswire.Resolver, timeout: float, label: str
) -> HTTPSRecordObservation:
    """One resolver over UDP (TCP where truncated)."""
    start = time.perf_counter()
    try:
        wire, reply = await resolver.ask(host, HTTPS, timeout)
        if dnswire.header(reply)[2]:  # truncated: again over TCP
            left = max(0.1, timeout - (time.perf_counter() - start))
            reply = await dnswire.exchange_tcp(wire, resolver.address, resolver.port, left)
            if not dnswire.answers(wire, reply):
                raise ValueError("the TCP reply does not match the query")
    except Exception as exc:
        failure, error = classify(exc)
        if failure is Failure.UNKNOWN:
            failure = Failure.PROTOCOL  # not an answer to this query
        elapsed = time.perf_counter() - start
        return HTTPSRecordObservation(label, elapsed, failure=failure, error=error)
    return observe(label, start, reply)


async def ask_doh(
    host: str, url: str, session: aiohttp.ClientSession, timeout: float
) -> HTTPSRecordObservation:
    """One DoH resolver (RFC 8484, POST; message id 0, as 4.1 asks)."""
    from probe.measure import doh

    wire = dnswire.query(host, HTTPS, message_id=0)
    start = time.perf_counter()
    try:
        reply = await doh.exchange(wire, url, session, timeout)
        if not dnswire.answers(wire, reply):
            raise ValueError("the reply does not match the query")
    except Exception as exc:
        failure, error = doh.classify_client_error(exc)
        if failure is Failure.UNKNOWN:
            failure = Failure.PROTOCOL  # not DNS, or not an answer to this query
        elapsed = time.perf_counter() - start
        return HTTPSRecordObservation(url, elapsed, failure=failure, error=error)
    return observe(url, start, reply)


def observe(label: str, start: float, reply: bytes) -> HTTPSRecordObservation:
    """What one answer says: its rcode, its HTTPS records and their ECH configurations. Only an
    answer that holds records is parsed (with dnspython, imported then)."""
    elapsed = time.perf_counter() - start
    rcode, count, _ = dnswire.header(reply)
    if rcode not in ("NOERROR", "NXDOMAIN"):
        return HTTPSRecordObservation(
            label, elapsed, rcode, failure=Failure.PROTOCOL, error=f"the resolver answered {rcode}"
        )
    if count == 0:
        return HTTPSRecordObservation(label, elapsed, rcode)
    import dns.message

    try:
        message = dns.message.from_wire(reply, ignore_trailing=True)
    except Exception as exc:  # dnspython raises many types on hostile bytes
        error = f"malformed reply: {describe(exc)}"
        return HTTPSRecordObservation(label, elapsed, rcode, failure=Failure.PROTOCOL, error=error)
    records, configs, problems = 0, [], []
    for rrset in message.answer:
        if rrset.rdtype != HTTPS:
            continue
        for rd in rrset:
            records += 1
            param = rd.params.get(ECH_PARAM)
            if param is None:
                continue
            found, problem = parse_configs(param.ech)
            configs += [c for c in found if c not in configs]
            if problem:
                problems.append(problem)
    return HTTPSRecordObservation(
        label,
        elapsed,
        rcode,
        records,
        tuple(configs[:MAX_CONFIGS]),
        error="; ".join(problems[:3]) or None,
    )


def parse_configs(data: bytes) -> tuple[list[PublishedECH], str | None]:
    """The configurations of an ECHConfigList that a ClientHello can name, and what was wrong
    with the rest (another version, or bytes that do not parse)."""
    out: list[PublishedECH] = []
    try:
        (total,) = struct.unpack_from("!H", data, 0)
        if total != len(data) - 2:
            return out, f"ECHConfigList: length {total}, {len(data) - 2} bytes follow"
        at = 2
        while at < len(data) and len(out) < MAX_CONFIGS:
            version, length = struct.unpack_from("!HH", data, at)
            body = data[at + 4 : at + 4 + length]
            at += 4 + length
            if len(body) != length:
                return out, "ECHConfig: truncated"
            if version != ECH_VERSION:
                continue  # a version this ClientHello does not speak: skipped, as clients do
            out.append(_config(body))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        return out, f"ECHConfig does not parse: {describe(exc)}"
    return out, None


def _config(body: bytes) -> PublishedECH:
    """ECHConfigContents: HpkeKeyConfig (config id, KEM, public key, cipher suites), maximum
    name length, public name, extensions."""
    config_id, _kem = struct.unpack_from("!BH", body, 0)
    at = 3
    (key_length,) = struct.unpack_from("!H", body, at)
    at += 2 + key_length
    (suites_length,) = struct.unpack_from("!H", body, at)
    if suites_length < 4 or suites_length % 4:
        raise ValueError(f"cipher suites of {suites_length} bytes")
    kdf, aead = struct.unpack_from("!HH", body, at + 2)
    at += 2 + suites_length + 1  # and maximum_name_length
    (name_length,) = struct.unpack_from("!B", body, at)
    name = body[at + 1 : at + 1 + name_length]
    if len(name) != name_length or not name:
        raise ValueError("public name truncated")
    public = check_host(name.decode("ascii").lower(), "public name").rstrip(".")
    return PublishedECH(public, config_id, kdf, aead)
