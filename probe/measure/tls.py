"""TLS: a handshake with a given SNI, and a summary of the certificate even when it is not trusted.

A certificate that fails verification is the evidence of interception, so after a verification
failure one more handshake with a non-verifying context fetches it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from probe.measure import tcp
from probe.measure.failure import classify, describe
from probe.model import Certificate, TCPObservation, TLSObservation


def make_context(
    ca_file: str | None = None, *, verify: bool = True, alpn: tuple[str, ...] = ("h2", "http/1.1")
) -> ssl.SSLContext:
    """A client context: system trust (honours SSL_CERT_FILE) plus `ca_file`, or no verification."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


async def handshake(
    writer: asyncio.StreamWriter,
    address: str,
    port: int,
    sni: str,
    context: ssl.SSLContext,
    timeout: float,
) -> TLSObservation:
    """Run the handshake on an open connection (which the caller closes)."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await writer.start_tls(context, server_hostname=sni, ssl_handshake_timeout=timeout)
    except Exception as exc:
        failure, error = classify(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            error = f"{exc.verify_message or describe(exc)}"
        return TLSObservation(address, port, sni, time.perf_counter() - start, failure, error)
    elapsed = time.perf_counter() - start
    tls = writer.get_extra_info("ssl_object")
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    cipher = tls.cipher() if tls is not None else None
    return TLSObservation(
        address,
        port,
        sni,
        elapsed,
        version=tls.version() if tls is not None else None,
        cipher=cipher[0] if cipher else None,
        alpn=tls.selected_alpn_protocol() if tls is not None else None,
        certificate=summarize(der) if der else None,
        verified=context.verify_mode == ssl.CERT_REQUIRED,
    )


async def connect_and_handshake(
    address: str, port: int, sni: str, context: ssl.SSLContext, timeout: float
) -> tuple[TCPObservation, TLSObservation | None]:
    """A fresh connection and one handshake; the TLS observation is None when TCP failed."""
    tcp_obs, _, writer = await tcp.connect(address, port, timeout)
    if writer is None:
        return tcp_obs, None
    try:
        return tcp_obs, await handshake(writer, address, port, sni, context, timeout)
    finally:
        await tcp.close(writer)


def summarize(der: bytes) -> Certificate:
    """Subject, issuer, names and validity of a DER certificate; tolerant of odd certificates."""
    sha256 = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:  # a hostile server can send anything
        return Certificate(f"unparseable: {describe(exc)}", "", (), "", "", sha256)
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        sans = tuple(str(n.value) for n in ext.value)  # type: ignore[attr-defined]
    except Exception:  # no SAN extension, or a malformed one
        sans = ()
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=sans[:50],
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        sha256=sha256,
    )


async def fetch_certificate(
    address: str, port: int, sni: str, context: ssl.SSLContext, timeout: float
) -> Certificate | None:
    """The certificate a server presents, without trusting it (the evidence of interception)."""
    _, obs = await connect_and_handshake(address, port, sni, context, timeout)
    return obs.certificate if obs is not None else None
