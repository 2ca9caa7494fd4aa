"""The failure mapping: library exceptions to one vocabulary; unknowns never to censorship."""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp
import pytest

from probe.measure.doh import classify_client_error
from probe.measure.failure import classify
from probe.vocabulary import Failure


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason
    return exc


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError("read"), "timeout"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "reset"),
        (ConnectionResetError(), "eof"),  # asyncio's TLS layer: the peer closed mid-handshake
        (BrokenPipeError(errno.EPIPE, "pipe"), "reset"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "refused"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "unreachable"),
        (OSError(errno.ETIMEDOUT, "timed out"), "timeout"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "invalid_certificate"),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "eof"),
        (ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"), "eof"),
        (_ssl_error("TLSV1_ALERT_INTERNAL_ERROR"), "alert"),
        (_ssl_error("SSLV3_ALERT_HANDSHAKE_FAILURE"), "alert"),
        (_ssl_error("WRONG_VERSION_NUMBER"), "protocol"),
        (_ssl_error("RECORD_LAYER_FAILURE"), "protocol"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "nxdomain"),
        (ValueError("a bug"), "unknown"),
        (_ssl_error("SOMETHING_NEW"), "unknown"),
    ],
)
def test_mapping(exc: BaseException, failure: str) -> None:
    got, message = classify(exc)
    assert got == failure
    assert got in set(Failure)
    assert type(exc).__name__ in message


def test_aiohttp_errors_of_its_own_are_mapped_where_aiohttp_is_used() -> None:
    """DoH runs over aiohttp: a disconnect is an EOF, a bad answer not the protocol."""
    assert classify_client_error(aiohttp.ServerDisconnectedError())[0] == "eof"
    assert classify_client_error(aiohttp.ClientPayloadError("short"))[0] == "protocol"


def test_aiohttp_connector_errors_are_unwrapped_to_their_cause() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(errno.ECONNREFUSED, "no"))
    reset = aiohttp.ClientConnectorError(key, ConnectionResetError(errno.ECONNRESET, "rst"))
    assert classify(refused)[0] == "refused"
    assert classify(reset)[0] == "reset"


def test_a_payload_error_caused_by_a_reset_is_a_reset() -> None:
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        except ConnectionResetError as cause:
            raise aiohttp.ClientPayloadError("Response payload is not completed") from cause
    except aiohttp.ClientPayloadError as exc:
        assert classify(exc)[0] == "reset"
