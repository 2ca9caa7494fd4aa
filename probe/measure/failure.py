"""Library exceptions -> the failure vocabulary of `probe.model.FAILURES`, in one place.

The measure modules catch `Exception` at their boundary and call `classify`; nothing else looks
at exception types. What `classify` does not know becomes `unknown` with the exception's text, and
the verdict treats `unknown` as a bug (`inconclusive`), never as censorship.

    OSError ─┬─ ConnectionResetError without errno (asyncio: FIN in handshake) -> eof
             ├─ ConnectionResetError, BrokenPipeError, ConnectionAbortedError -> reset
             ├─ ConnectionRefusedError                                       -> refused
             ├─ ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, ENETDOWN...        -> unreachable
             ├─ TimeoutError (asyncio's too), ETIMEDOUT                       -> timeout
             ├─ socket.gaierror (getaddrinfo)          -> nxdomain / timeout / no_answer
             └─ ssl.SSLError ─┬─ SSLCertVerificationError            -> invalid_certificate
                              ├─ SSLEOFError, SSLZeroReturnError                -> eof
                              ├─ "...ALERT..." reasons                          -> alert
                              └─ record-layer garbage                           -> protocol
    aiohttp ── wrappers are unwrapped to their OSError; disconnects             -> eof
               bad status lines or headers                                      -> protocol
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import aiohttp

_UNREACHABLE = {
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.EADDRNOTAVAIL,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.EAFNOSUPPORT,
}
# getaddrinfo's errors; glibc says EAI_AGAIN both when no resolver answered and for SERVFAIL
_GAI = {
    socket.EAI_NONAME: "nxdomain",
    socket.EAI_AGAIN: "timeout",
    getattr(socket, "EAI_NODATA", -5): "no_answer",
}
_SSL_PROTOCOL = (
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "UNEXPECTED_MESSAGE",
    "UNEXPECTED_RECORD",
    "BAD_RECORD_TYPE",
    "HTTP_REQUEST",
    "DECODE_ERROR",
    "LENGTH_MISMATCH",
    "BAD_PACKET",
    "UNKNOWN_PROTOCOL",
    "RECORD_TOO_LARGE",
    "ENCRYPTED_LENGTH_TOO_LONG",
    "BAD_LENGTH",
)


def classify(exc: BaseException) -> tuple[str, str]:
    """(failure, message) for an exception raised by a network step."""
    return _classify(exc), describe(exc)


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}"[:300] if text else name


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "invalid_certificate"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "invalid_certificate"
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error is not exc:
        return _classify(exc.os_error)
    if isinstance(exc, (aiohttp.ClientResponseError, aiohttp.http_exceptions.HttpProcessingError)):
        return "protocol"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, asyncio.IncompleteReadError)):
        return "eof"
    if isinstance(exc, aiohttp.ClientPayloadError):
        # aiohttp wraps a reset mid-body; the cause tells which
        cause = exc.__cause__ or exc.__context__
        return _classify(cause) if cause is not None else "eof"
    if isinstance(exc, ssl.SSLError):
        return _classify_ssl(exc)
    if isinstance(exc, ConnectionResetError) and exc.errno is None:
        # asyncio's TLS layer raises a bare ConnectionResetError when the peer closes (FIN)
        # during the handshake; a real RST carries ECONNRESET
        return "eof"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, socket.gaierror):
        return _GAI.get(exc.errno or 0, "unknown")
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _UNREACHABLE:
            return "unreachable"
        if exc.errno == errno.ETIMEDOUT:
            return "timeout"
        if exc.errno == errno.ECONNRESET:
            return "reset"
        if exc.errno == errno.ECONNREFUSED:
            return "refused"
    if isinstance(exc, aiohttp.ClientOSError) and (exc.__cause__ or exc.__context__):
        return _classify(exc.__cause__ or exc.__context__)  # type: ignore[arg-type]
    if isinstance(exc, aiohttp.ClientConnectionError) and "closed" in str(exc).lower():
        return "eof"
    return "unknown"


def _classify_ssl(exc: ssl.SSLError) -> str:
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "eof"
    reason = (getattr(exc, "reason", None) or str(exc)).upper()
    if "ALERT" in reason:
        return "alert"
    if "EOF" in reason:
        return "eof"
    if any(r in reason for r in _SSL_PROTOCOL):
        return "protocol"
    return "unknown"
