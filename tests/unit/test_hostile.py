"""Property tests: parsers of what the network (or a user) sends never crash, whatever the bytes."""

from __future__ import annotations

import contextlib

import dns.message
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.lab.injector import Injector
from probe.measure.dns import _parse_reply
from probe.model import Control, from_json
from probe.verdict.fingerprints import parse_csv

QUERY = dns.message.make_query("example.test", "A")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_any_dns_reply_is_recorded_never_raised(data: bytes) -> None:
    response, message = _parse_reply(QUERY, data, 0.01)
    assert (response.error is None) == (message is not None)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=28, max_size=200))
def test_the_injector_ignores_any_packet_it_cannot_read(data: bytes) -> None:
    forged = Injector("lo", {"example.test"}, "203.0.113.66").forge(data)
    assert forged is None or forged[:1] == b"\x45"


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_a_garbled_control_answer_is_refused_with_value_error(doc: object) -> None:
    with contextlib.suppress(ValueError):  # anything but ValueError fails the test
        from_json(Control, doc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_fingerprint_file_loads_or_is_refused_with_its_name(text: str) -> None:
    try:
        parse_csv(text, "fp.csv")
    except ValueError as exc:
        assert str(exc).startswith("fp.csv")
