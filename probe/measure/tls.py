"""TLS: a handshake with a given SNI on an open connection, and a summary of the certificate
even when it is not trusted.

A certificate that fails verification is the evidence of interception, so after a verification
failure one more handshake with a non-verifying context fetches it (`untrusted_certificate`).
A verified certificate is summarised from what the ssl module already parsed; an untrusted one
needs `cryptography`, imported only then.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import ssl
import time
from typing import Any

from probe.measure import tcp
from probe.measure.clock import within
from probe.measure.failure import classify, describe
from probe.model import Certificate, TLSObservation
from probe.policy import AddressPolicy

MAX_SANS = 50
MAX_CERTIFICATE_BYTES = 64 << 10  # a leaf larger than this is not a certificate anyone serves
# what `ssl` calls the attributes of a name, and what RFC 4514 (and cryptography) calls them
_SHORT = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def make_context(
    ca_file: str | None = None, *, verify: bool = True, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext:
    """A client context: system trust (honours SSL_CERT_FILE) plus `ca_file`, or no verification.
    Raises ssl.SSLError or OSError when `ca_file` holds no certificate."""
    if verify:
        ctx = ssl.create_default_context()
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
    else:  # no trust store to load
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


async def handshake(
    conn: tcp.Connection,
    sni: str,
    context: ssl.SSLContext,
    timeout: float,
    *,
    untrusted_certificate: bool = False,
) -> TLSObservation:
    """Run the handshake on an open connection (which the caller closes); on success the
    connection carries TLS from then on. A verified certificate is always summarised; one the
    context did not verify only when asked (the evidence of interception)."""
    start = time.perf_counter()
    try:
        async with within(timeout):
            tls = conn.secure(context, sni)
            while True:  # computed on the event loop: cheaper than handing each step to a thread
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    conn.flush()
                    await conn.receive()
            conn.flush()
    except Exception as exc:
        failure, error = classify(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            error = exc.verify_message or describe(exc)
        return TLSObservation(
            conn.address, conn.port, sni, time.perf_counter() - start, failure, error
        )
    elapsed = time.perf_counter() - start
    verified = context.verify_mode == ssl.CERT_REQUIRED
    cipher = tls.cipher()
    der = tls.getpeercert(binary_form=True)
    certificate = None
    if der and verified:
        certificate = _verified(tls, der)
    elif der and untrusted_certificate:
        certificate = summarize(der)
    return TLSObservation(
        conn.address,
        conn.port,
        sni,
        elapsed,
        version=tls.version(),
        cipher=cipher[0] if cipher else None,
        alpn=tls.selected_alpn_protocol(),
        certificate=certificate,
        verified=verified,
    )


async def connect_and_handshake(
    address: str,
    port: int,
    sni: str,
    context: ssl.SSLContext,
    timeout: float,
    policy: AddressPolicy,
    *,
    untrusted_certificate: bool = False,
) -> TLSObservation:
    """A fresh connection and one handshake, closed after; `connected` says whether TCP worked."""
    tcp_obs, conn = await tcp.connect(address, port, timeout, policy)
    if conn is None:
        return TLSObservation(
            address,
            port,
            sni,
            tcp_obs.elapsed,
            tcp_obs.failure,
            tcp_obs.error,
            connected=False,
        )
    try:
        return await handshake(
            conn, sni, context, timeout, untrusted_certificate=untrusted_certificate
        )
    finally:
        await conn.close()


def summarize(der: bytes) -> Certificate:
    """Subject, issuer, names and validity of a DER certificate; tolerant of odd certificates."""
    sha256 = hashlib.sha256(der).hexdigest()
    if len(der) > MAX_CERTIFICATE_BYTES:
        return Certificate(f"unparsed: {len(der)} bytes", "", (), "", "", sha256)
    from cryptography import x509  # only for untrusted certificates: costs ~10 MB
    from cryptography.x509.oid import ExtensionOID

    try:
        cert = x509.load_der_x509_certificate(der)
        subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
        not_before = cert.not_valid_before_utc.isoformat()
        not_after = cert.not_valid_after_utc.isoformat()
    except Exception as exc:  # a hostile server can send anything
        return Certificate(f"unparseable: {describe(exc)}", "", (), "", "", sha256)
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        sans = tuple(str(n.value) for n in ext.value)  # type: ignore[attr-defined]
    except Exception:  # no SAN extension, or a malformed one
        sans = ()
    return Certificate(subject, issuer, sans[:MAX_SANS], not_before, not_after, sha256)


SUMMARIES = 256  # summaries of verified certificates kept, by their bytes
_summaries: dict[bytes, Certificate] = {}


def _verified(tls: ssl.SSLObject, der: bytes) -> Certificate:
    """The summary of the verified certificate `der`, kept for the next handshake that gets the
    same bytes: many targets present one certificate (a CDN's, a wildcard), and an exporter
    meets the same ones at every scrape. At most SUMMARIES are kept, the oldest dropped first."""
    known = _summaries.get(der)
    if known is None:
        known = _from_ssl(tls.getpeercert() or {}, der)
        if len(_summaries) >= SUMMARIES:
            del _summaries[next(iter(_summaries))]
        _summaries[der] = known
    return known


def _from_ssl(cert: dict[str, Any], der: bytes) -> Certificate:
    """The same summary from what the ssl module parsed of a verified certificate."""
    sans = tuple(str(value) for _, value in cert.get("subjectAltName", ()))
    return Certificate(
        subject=_name(cert.get("subject", ())),
        issuer=_name(cert.get("issuer", ())),
        sans=sans[:MAX_SANS],
        not_before=_time(cert.get("notBefore")),
        not_after=_time(cert.get("notAfter")),
        sha256=hashlib.sha256(der).hexdigest(),
    )


def _name(rdns: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """RFC 4514, as cryptography writes it: the last RDN first."""
    return ",".join(
        "+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn) for rdn in reversed(rdns)
    )


_SPECIAL = re.compile(r'([,+"\\<>;])')


def _escape(value: str) -> str:
    out = _SPECIAL.sub(r"\\\1", value)
    return "\\" + out if out[:1] in ("#", " ") else out


_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


def _time(text: str | None) -> str:
    """`Nov 27 12:00:00 2026 GMT` (OpenSSL's form) -> ISO 8601, without strptime's cost."""
    try:
        month, day, clock, year, _ = (text or "").split()
        hours, minutes, seconds = (int(x) for x in clock.split(":"))
        when = datetime.datetime(
            int(year), _MONTHS[month], int(day), hours, minutes, seconds, tzinfo=datetime.UTC
        )
    except (ValueError, KeyError):
        return text or ""
    return when.isoformat()
