"""A TLS 1.3 ClientHello written from a description, and the server's first flight read only as
far as needed to classify it. Sans I/O: bytes in, bytes and outcomes out (`probe.measure.
clienthello` does the sending).

No handshake is completed and no TLS stack is written: the question is only whether a censor
lets a ClientHello of this shape through and the server answers it. So the key shares are random
bytes of the right size (a server that rejects them still answered), and an ECH extension is
GREASE-shaped (draft-ietf-tls-esni §6.2) — with the config id, cipher suite and outer name a
site publishes in its HTTPS record where it does, which is what a censor such as Russia's TSPU
matches on; its payload is random, so the server falls back to the outer ClientHello.

The shape follows a current browser's: GREASE values, the extensions' order and sizes of
Chrome 131, X25519 or the post-quantum hybrid X25519MLKEM768 (a 1,216-byte key share: the
ClientHello no longer fits one packet).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field

# RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa
GREASE = tuple((i << 12) | 0x0A0A for i in range(16))
X25519 = 0x001D
X25519MLKEM768 = 0x11EC
SECP256R1, SECP384R1 = 0x0017, 0x0018
KEY_SHARE_SIZES = {X25519: 32, X25519MLKEM768: 1216, SECP256R1: 65}
ECH_EXTENSION = 0xFE0D
CIPHER_SUITES = (
    0x1301, 0x1302, 0x1303,  # TLS 1.3
    0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F,
    0x0035,
)  # fmt: skip
SIGNATURE_ALGORITHMS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
MAX_RECORD = 16384
# the random of a HelloRetryRequest (RFC 8446 §4.1.3): SHA-256 of "HelloRetryRequest"
HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()


@dataclass(frozen=True, slots=True)
class ECHConfig:
    """What a site publishes for ECH (an ECHConfig of its HTTPS record) that a ClientHello
    names: its outer name, its config id, and one cipher suite (KDF, AEAD)."""

    public_name: str
    config_id: int
    kdf: int = 0x0001  # HKDF-SHA256
    aead: int = 0x0001  # AES-128-GCM


@dataclass(frozen=True, slots=True)
class Shape:
    """What a ClientHello carries, and how it is sent."""

    sni: str
    alpn: tuple[str, ...] = ("h2", "http/1.1")
    groups: tuple[int, ...] = (X25519, SECP256R1, SECP384R1)
    key_shares: tuple[int, ...] = (X25519,)
    grease: bool = True
    ech: ECHConfig | None = None  # a GREASE-shaped ECH extension with this config's names
    split: str = ""  # "record": in two TLS records; "segment": in two TCP segments
    # where to cut: inside the SNI (its middle), unless given as an offset into the bytes
    cut: int | None = None
    seed: bytes = field(default=b"", compare=False)  # random bytes' source (tests fix it)


def _u8(b: bytes) -> bytes:
    return struct.pack("!B", len(b)) + b


def _u16(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!H", kind) + _u16(body)


def _random(shape: Shape, n: int, salt: bytes) -> bytes:
    """`n` random bytes; from `shape.seed` where it is set (the same ClientHello every time)."""
    if not shape.seed:
        return os.urandom(n)
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(shape.seed + salt + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:n]


def _sni(name: str) -> bytes:
    host = name.encode("ascii")
    return _u16(b"\x00" + _u16(host))


def _ech(shape: Shape, config: ECHConfig) -> bytes:
    """The outer ECH extension (draft-ietf-tls-esni-22 §5): type outer, the cipher suite, the
    config id, an HPKE `enc` (an X25519 public key's size) and a payload the size of an
    encrypted inner ClientHello for this name, padded as browsers pad it."""
    inner = 200 + len(shape.sni)
    padded = inner + (32 - inner % 32) % 32 + 16  # padding, then the AEAD's tag
    enc = _random(shape, 32, b"enc")
    payload = _random(shape, padded, b"payload")
    body = b"\x00" + struct.pack("!HHB", config.kdf, config.aead, config.config_id)
    return _ext(ECH_EXTENSION, body + _u16(enc) + _u16(payload))


def handshake(shape: Shape) -> bytes:
    """The ClientHello handshake message (type 1), as a browser shapes it."""
    g = _random(shape, 4, b"grease")
    grease = [GREASE[b % 16] for b in g] if shape.grease else []
    if grease and grease[3] == grease[2]:  # two extensions of one type: a parse error
        grease[3] = GREASE[(g[3] + 1) % 16]
    groups = ([grease[0]] if grease else []) + list(shape.groups)
    shares = b"".join(
        struct.pack("!H", group) + _u16(_random(shape, KEY_SHARE_SIZES[group], bytes([i])))
        for i, group in enumerate(shape.key_shares)
    )
    if grease:
        shares = struct.pack("!H", grease[0]) + _u16(b"\x00") + shares
    versions = ([grease[1]] if grease else []) + [0x0304, 0x0303]
    alpn = b"".join(_u8(p.encode()) for p in shape.alpn)
    extensions = [
        _ext(grease[2], b"") if grease else b"",
        _ext(0x0000, _sni(shape.ech.public_name if shape.ech else shape.sni)),
        _ext(0x0017, b""),  # extended_master_secret
        _ext(0xFF01, b"\x00"),  # renegotiation_info
        _ext(0x000A, _u16(b"".join(struct.pack("!H", x) for x in groups))),
        _ext(0x000B, b"\x01\x00"),  # ec_point_formats: uncompressed
        _ext(0x0023, b""),  # session_ticket
        _ext(0x0010, _u16(alpn)) if shape.alpn else b"",
        _ext(0x0005, b"\x01\x00\x00\x00\x00"),  # status_request: OCSP
        _ext(0x000D, _u16(b"".join(struct.pack("!H", x) for x in SIGNATURE_ALGORITHMS))),
        _ext(0x0012, b""),  # signed_certificate_timestamp
        _ext(0x0033, _u16(shares)),  # key_share
        _ext(0x002D, b"\x01\x01"),  # psk_key_exchange_modes: psk_dhe_ke
        _ext(0x002B, _u8(b"".join(struct.pack("!H", v) for v in versions))),
        _ext(0x001B, b"\x02\x00\x02"),  # compress_certificate: brotli
        _ech(shape, shape.ech) if shape.ech else b"",
        _ext(grease[3], b"\x00") if grease else b"",
    ]
    suites = ([grease[0]] if grease else []) + list(CIPHER_SUITES)
    body = (
        b"\x03\x03"  # legacy_version: TLS 1.2
        + _random(shape, 32, b"random")
        + _u8(_random(shape, 32, b"session"))  # legacy_session_id: as a middlebox expects
        + _u16(b"".join(struct.pack("!H", s) for s in suites))
        + b"\x01\x00"  # compression: null
        + _u16(b"".join(extensions))
    )
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def _record(fragment: bytes) -> bytes:
    return b"\x16\x03\x01" + _u16(fragment)  # handshake, legacy record version TLS 1.0


def sni_middle(message: bytes, name: str) -> int:
    """The offset of the middle of `name` in `message` (where a cut splits the SNI)."""
    at = message.find(name.encode("ascii"))
    if at < 0:
        raise ValueError(f"{name!r} is not in the ClientHello")
    return at + max(1, len(name) // 2)


def write(shape: Shape) -> list[bytes]:
    """What to send: the ClientHello's record(s), as separate writes where it is to be split
    into TCP segments (the caller sends each as a segment of its own)."""
    message = handshake(shape)
    if shape.split == "record":
        cut = shape.cut if shape.cut is not None else sni_middle(message, _outer(shape))
        return [_record(message[:cut]) + _record(message[cut:])]
    records = b"".join(
        _record(message[i : i + MAX_RECORD]) for i in range(0, len(message), MAX_RECORD)
    )
    if shape.split == "segment":
        cut = shape.cut if shape.cut is not None else 5 + sni_middle(message, _outer(shape))
        return [records[:cut], records[cut:]]
    return [records]


def _outer(shape: Shape) -> str:
    return shape.ech.public_name if shape.ech else shape.sni


# --- the server's first flight ------------------------------------------------------------


ANSWERED, PROTOCOL, MORE = "answered", "protocol", "more"


@dataclass(frozen=True, slots=True)
class FirstFlight:
    """What the server's first bytes were: `answered` (a ServerHello, a HelloRetryRequest or an
    alert), `protocol` (something that is not TLS), or `more` (not enough bytes yet), and in a
    few words what."""

    outcome: str
    what: str


def classify(data: bytes) -> FirstFlight:
    """Read the server's first bytes only as far as needed (a record's header and a handshake
    message's first bytes)."""
    if len(data) < 5:
        if data and data[0] not in (0x15, 0x16):
            return FirstFlight(PROTOCOL, f"not TLS: {data[:16]!r}")
        return FirstFlight(MORE, "")
    kind, major, length = data[0], data[1], int.from_bytes(data[3:5], "big")
    if kind not in (0x15, 0x16) or major != 3 or length == 0 or length > MAX_RECORD + 2048:
        return FirstFlight(PROTOCOL, f"not TLS: {data[:16]!r}")
    body = data[5:]
    if kind == 0x15:  # an alert: level, description
        if len(body) < 2:
            return FirstFlight(MORE, "")
        return FirstFlight(ANSWERED, f"alert {body[1]}")
    if len(body) < 38:  # type, length, version, random
        return FirstFlight(MORE, "")
    if body[0] != 0x02:
        return FirstFlight(PROTOCOL, f"TLS handshake message {body[0]}, not a ServerHello")
    hello_retry = body[6:38] == HRR_RANDOM
    return FirstFlight(ANSWERED, "HelloRetryRequest" if hello_retry else "ServerHello")
