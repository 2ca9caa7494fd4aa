"""The HTTP/1.1 response reader: framing as RFC 9112 says, bounds against hostile servers, and
never anything but ProtocolError on bytes that are not HTTP, however they are split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.measure.http1 import DONE, Head, ProtocolError, ResponseParser


def read(*pieces: bytes, eof: bool = True, max_head: int = 4096) -> tuple[Head, bytes]:
    """Feed the pieces (then EOF) and collect the head and the body."""
    parser = ResponseParser(max_head)
    head, body = None, b""
    for piece in [*pieces, *([b""] if eof else [])]:
        parser.feed(piece)
        while (event := parser.next()) is not None:
            if isinstance(event, Head):
                head = event
            elif event is DONE:
                assert head is not None
                return head, body
            else:
                body += event
    raise AssertionError(f"no end of the response; body so far {body!r}")


def test_content_length_ends_the_body_without_eof() -> None:
    head, body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello", eof=False)
    assert (head.status, head.headers, body) == (
        200,
        [("content-length", "5"), ("server", "x")],
        b"hello",
    )


def test_chunked_body_in_pieces_with_extensions_and_trailers() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    pieces = [wire[i : i + 3] for i in range(0, len(wire), 3)]
    assert read(*pieces, eof=False)[1] == b"hello world"


def test_until_close_without_framing_and_bare_lf_heads() -> None:
    assert (
        read(b"HTTP/1.0 200 OK\nServer: old\n\nall of it", b" and more")[1] == b"all of it and more"
    )


def test_interim_responses_are_skipped_and_folded_headers_joined() -> None:
    head, body = read(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /a\r\n  /b\r\n"
        b"Content-Length: 0\r\n\r\n",
        eof=False,
    )
    assert head.status == 302 and ("location", "/a /b") in head.headers and body == b""


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_for_204_and_304(status: int) -> None:
    assert read(f"HTTP/1.1 {status} X\r\nContent-Length: 9\r\n\r\n".encode(), eof=False)[1] == b""


@pytest.mark.parametrize(
    ("wire", "at_eof", "words"),
    [
        (b"", True, "without answering"),
        (b"HTTP/1.1 200 OK\r\nServer", True, "before the headers ended"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True, "after 5 of 10 bytes"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            True,
            "inside a chunked",
        ),
        (b"SSH-2.0-OpenSSH\r\n\r\n", False, "not an HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", False, "not a header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", False, "Content"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", False, "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False, "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", False, "longer"),
        (b"HTTP/1.1 101 Switching\r\n\r\n", False, "101"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 5000 + b"\r\n\r\n", False, "larger than 4096"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 5000, False, "larger than 4096"),
    ],
)
def test_what_is_not_a_whole_response_says_why(wire: bytes, at_eof: bool, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        read(wire)
    assert caught.value.at_eof is at_eof and words in str(caught.value)


def test_endless_chunk_lines_and_trailers_are_bounded() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(ProtocolError, match="line without end"):
        read(head + b"1" * 5000, eof=False)
    with pytest.raises(ProtocolError, match="trailers larger"):
        read(head + b"0\r\n" + b"X: y\r\n" * 2000, eof=False)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_any_bytes_in_any_pieces_give_events_or_protocol_error(data: bytes, step: int) -> None:
    parser = ResponseParser(256)
    try:
        for i in range(0, len(data), step):
            parser.feed(data[i : i + step])
            while parser.next() not in (None, DONE):
                pass
        parser.feed(b"")
        while parser.next() not in (None, DONE):
            pass
    except ProtocolError:
        pass
