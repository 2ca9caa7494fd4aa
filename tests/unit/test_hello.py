"""Our own ClientHellos, read back by an independent TLS parser (tlslite-ng), and the server's
first flight classified, hostile answers included."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tlslite.constants import ExtensionType, HandshakeType
from tlslite.messages import ClientHello
from tlslite.utils.codec import Parser

from probe.engine.variants import shapes
from probe.measure import dnswire
from probe.measure.hello import (
    ANSWERED,
    ECH_EXTENSION,
    HRR_RANDOM,
    MORE,
    PROTOCOL,
    X25519,
    X25519MLKEM768,
    classify,
    write,
)
from probe.measure.svcb import observe, parse_configs
from probe.model import PublishedECH

HOST = "www.clubhouse.com"
PUBLISHED = PublishedECH("cloudflare-ech.com", 0x7A, 0x0001, 0x0001)
VARIANTS = shapes(HOST, "example.com", PUBLISHED, every=True)


def records(data: bytes) -> list[tuple[int, bytes]]:
    """TLS records: (content type, fragment); fails the test on a malformed stream."""
    out = []
    while data:
        kind, version, length = struct.unpack("!BHH", data[:5])
        assert version in (0x0301, 0x0303)
        assert len(data) >= 5 + length
        out.append((kind, data[5 : 5 + length]))
        data = data[5 + length :]
    return out


def parsed(parts: list[bytes]) -> tuple[ClientHello, list[tuple[int, bytes]]]:
    """The ClientHello tlslite-ng reads from what we send, and its records."""
    recs = records(b"".join(parts))
    assert {kind for kind, _ in recs} == {0x16}
    message = b"".join(fragment for _, fragment in recs)
    assert message[0] == HandshakeType.client_hello
    assert int.from_bytes(message[1:4], "big") == len(message) - 4
    hello = ClientHello().parse(Parser(message[1:]))  # after the type
    return hello, recs


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_is_a_clienthello_tlslite_reads(name: str) -> None:
    shape = VARIANTS[name]
    hello, recs = parsed(write(shape))
    outer = "cloudflare-ech.com" if name in ("ech", "ech_outer") else shape.sni
    assert hello.server_name == outer.encode()
    assert hello.client_version == (3, 3)
    assert 0x1301 in hello.cipher_suites  # TLS 1.3
    versions = hello.getExtension(ExtensionType.supported_versions)
    assert (3, 4) in versions.versions
    shares = [e.group for e in hello.getExtension(ExtensionType.key_share).client_shares]
    sizes = {
        e.group: len(e.key_exchange)
        for e in hello.getExtension(ExtensionType.key_share).client_shares
    }
    if name == "pq":
        assert shares[-2:] == [X25519MLKEM768, X25519]
        assert sizes[X25519MLKEM768] == 1216
    else:
        assert shares[-1] == X25519 and sizes[X25519] == 32
    types = [e.extType for e in hello.extensions]
    assert len(types) == len(set(types)), "an extension twice: servers refuse it"
    ech = hello.getExtension(ECH_EXTENSION)
    if name in ("ech", "ech_grease"):
        assert ech is not None
        body = ech.extData
        assert body[0] == 0  # outer
        config_id = body[5]
        assert config_id == (0x7A if name == "ech" else 0x42)
    else:
        assert ech is None
    if name == "split_record":
        assert len(recs) == 2
        first = recs[0][1]
        assert first.endswith(HOST.encode()[: len(HOST) // 2]), "the cut is inside the SNI"
    else:
        assert len(recs) == 1


def test_a_post_quantum_clienthello_spans_two_packets_and_the_baseline_fits_one() -> None:
    assert len(write(VARIANTS["pq"])[0]) > 1500
    assert len(write(VARIANTS["baseline"])[0]) < 1400


def test_a_segment_split_cuts_inside_the_sni_and_the_bytes_are_the_same_clienthello() -> None:
    parts = write(VARIANTS["split_segment"])
    assert len(parts) == 2
    assert parts[0].endswith(HOST.encode()[: len(HOST) // 2])
    assert HOST.encode() not in parts[0] and HOST.encode() not in parts[1]
    hello, _ = parsed(parts)
    assert hello.server_name == HOST.encode()


def test_fixed_seed_writes_the_same_bytes_and_grease_differs_otherwise() -> None:
    from dataclasses import replace

    seeded = replace(VARIANTS["baseline"], seed=b"x")
    assert write(seeded) == write(seeded)
    assert write(VARIANTS["baseline"]) != write(VARIANTS["baseline"])


# --- the server's first flight -------------------------------------------------------------


def server_hello(random: bytes) -> bytes:
    body = b"\x03\x03" + random + b"\x20" + b"s" * 32 + b"\x13\x01\x00" + b"\x00\x00"
    message = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + len(message).to_bytes(2, "big") + message


ANSWERS = [
    (server_hello(b"r" * 32), ANSWERED, "ServerHello"),
    (server_hello(HRR_RANDOM), ANSWERED, "HelloRetryRequest"),
    (b"\x15\x03\x03\x00\x02\x02\x28", ANSWERED, "alert 40"),  # handshake_failure
    (b"\x15\x03\x01\x00\x02\x02\x46", ANSWERED, "alert 70"),  # protocol_version
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", PROTOCOL, "not TLS"),  # a blockpage on port 443
    (b"SSH-2.0-OpenSSH_9.2\r\n", PROTOCOL, "not TLS"),
    (b"\x16\x03\x03\x00\x00", PROTOCOL, "not TLS"),  # an empty record
    (b"\x16\x03\x03\xff\xff" + b"\x00" * 10, PROTOCOL, "not TLS"),  # longer than a record may be
    (b"\x16\x03\x03\x00\x30\x0b" + b"\x00" * 47, PROTOCOL, "not a ServerHello"),  # Certificate
    (b"\x17\x03\x03\x00\x10" + b"\x00" * 16, PROTOCOL, "not TLS"),  # application data first
    (b"\x16\x03", MORE, ""),
    (b"\x16\x03\x03\x00\x50\x02\x00", MORE, ""),
    (b"\x15\x03\x03\x00\x02\x02", MORE, ""),
    (b"", MORE, ""),
]


@pytest.mark.parametrize(("data", "outcome", "what"), ANSWERS)
def test_first_flights_recorded_and_hostile_are_classified(
    data: bytes, outcome: str, what: str
) -> None:
    seen = classify(data)
    assert seen.outcome == outcome
    assert what in seen.what


@given(st.binary(max_size=64))
def test_the_classifier_never_raises_and_more_means_a_prefix(data: bytes) -> None:
    seen = classify(data)
    assert seen.outcome in (ANSWERED, PROTOCOL, MORE)
    if seen.outcome == ANSWERED:
        assert classify(data + b"\x00" * 8).outcome == ANSWERED  # more bytes change nothing


# --- what a site publishes ------------------------------------------------------------------


def ech_config(public_name: bytes, config_id: int = 1, version: int = 0xFE0D) -> bytes:
    key = b"k" * 32
    contents = (
        bytes([config_id])
        + b"\x00\x20"  # KEM: X25519
        + struct.pack("!H", len(key))
        + key
        + b"\x00\x04\x00\x01\x00\x01"  # one suite: HKDF-SHA256, AES-128-GCM
        + b"\x00"  # maximum name length
        + bytes([len(public_name)])
        + public_name
        + b"\x00\x00"  # no extensions
    )
    return struct.pack("!HH", version, len(contents)) + contents


def config_list(*configs: bytes) -> bytes:
    body = b"".join(configs)
    return struct.pack("!H", len(body)) + body


def test_a_published_config_list_is_read_and_other_versions_are_skipped() -> None:
    data = config_list(
        ech_config(b"other.example", 9, version=0xFE0A), ech_config(b"Cloudflare-ECH.com", 5)
    )
    configs, problem = parse_configs(data)
    assert configs == [PublishedECH("cloudflare-ech.com", 5, 1, 1)]
    assert problem is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (config_list(ech_config(b"")), "public name"),
        (config_list(ech_config(b"bad name!")), "not a valid host name"),
        (config_list(ech_config(b"a.example"))[:-3], "length"),
        (b"\x00", "does not parse"),
        (config_list(ech_config(b"a.example")) + b"junk", "length"),
    ],
)
def test_a_hostile_config_list_is_refused_with_the_reason(data: bytes, problem: str) -> None:
    configs, why = parse_configs(data)
    assert configs == []
    assert why is not None and problem in why


@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_list_never_raise(data: bytes) -> None:
    configs, _ = parse_configs(data)
    assert all(c.public_name for c in configs)


def test_a_reply_is_matched_by_id_flag_and_question() -> None:
    wire = dnswire.query("Site.Example", 65, message_id=7)
    reply = bytearray(wire)
    reply[2] |= 0x80  # QR
    assert dnswire.answers(wire, bytes(reply))
    assert dnswire.answers(wire, bytes(reply).replace(b"Site", b"sITE"))  # 0x20 case
    assert not dnswire.answers(wire, wire)  # a query is no answer
    assert not dnswire.answers(wire, b"\x00\x08" + bytes(reply[2:]))  # another id
    assert not dnswire.answers(wire, bytes(reply).replace(b"Site", b"Sitf"))
    assert dnswire.header(bytes(reply)) == ("NOERROR", 0, False)


@given(st.binary(max_size=200))
def test_any_bytes_after_a_matching_header_are_observed_without_raising(tail: bytes) -> None:
    wire = dnswire.query("site.example", 65, message_id=7)
    reply = bytes([wire[0], wire[1], 0x81, 0x80]) + b"\x00\x01\x00\x01" + wire[8:] + tail
    seen = observe("r", 0.0, reply)
    assert seen.rcode == "NOERROR"
    assert seen.failure is None or "malformed reply" in (seen.error or "")
