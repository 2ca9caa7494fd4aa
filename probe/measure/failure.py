"""Library exceptions -> the failure vocabulary (`probe.vocabulary.Failure`), in one place.

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
    asyncio.IncompleteReadError, EOFError (the peer closed mid-message)         -> eof
    a wrapper (an exception raised "from" another) is classified by its cause
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from probe.vocabulary import Failure

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
    socket.EAI_NONAME: Failure.NXDOMAIN,
    socket.EAI_AGAIN: Failure.TIMEOUT,
    getattr(socket, "EAI_NODATA", -5): Failure.NO_ANSWER,
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
    "EXCESSIVE_MESSAGE_SIZE",
)


def classify(exc: BaseException) -> tuple[Failure, str]:
    """(failure, message) for an exception raised by a network step."""
    return _classify(exc), describe(exc)


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}"[:300] if text else name


def _classify(exc: BaseException) -> Failure:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Failure.INVALID_CERTIFICATE
    if isinstance(exc, TimeoutError):
        return Failure.TIMEOUT
    if isinstance(exc, (asyncio.IncompleteReadError, EOFError)):
        return Failure.EOF
    if isinstance(exc, ssl.SSLError):
        return _classify_ssl(exc)
    if isinstance(exc, ConnectionResetError) and exc.errno is None:
        # asyncio's TLS layer raises a bare ConnectionResetError when the peer closes (FIN)
        # during the handshake; a real RST carries ECONNRESET
        return Failure.EOF
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return Failure.RESET
    if isinstance(exc, ConnectionRefusedError):
        return Failure.REFUSED
    if isinstance(exc, socket.gaierror):
        return _GAI.get(exc.errno or 0, Failure.UNKNOWN)
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _UNREACHABLE:
            return Failure.UNREACHABLE
        if exc.errno == errno.ETIMEDOUT:
            return Failure.TIMEOUT
        if exc.errno == errno.ECONNRESET:
            return Failure.RESET
        if exc.errno == errno.ECONNREFUSED:
            return Failure.REFUSED
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return _classify(cause)
    return Failure.UNKNOWN


def _classify_ssl(exc: ssl.SSLError) -> Failure:
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return Failure.EOF
    reason = (getattr(exc, "reason", None) or str(exc)).upper()
    if "ALERT" in reason:
        return Failure.ALERT
    if "EOF" in reason:
        return Failure.EOF
    if any(r in reason for r in _SSL_PROTOCOL):
        return Failure.PROTOCOL
    return Failure.UNKNOWN
