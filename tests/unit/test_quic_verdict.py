"""The HTTP/3 path's verdict as a table: what the vantage saw over QUIC, what the control saw,
and what a user must be told — blocked (and whether by SNI), unsupported, not measured."""

from __future__ import annotations

from dataclasses import replace

import pytest

from probe.model import Control, HTTP3Observation, Measurement, QUICObservation, QUICPath
from probe.verdict import judge_quic
from probe.vocabulary import METHODS
from tests.unit.test_verdict import A, T

OK_GET = HTTP3Observation(T.url, 0.05, status=200, title="Clubhouse", body_length=5000)


def hs(
    failure: str | None = None, kind: str = "sni", sni: str = "www.clubhouse.com"
) -> QUICObservation:
    error = f"{failure} error" if failure else None
    return QUICObservation(A, 443, sni, 0.03, failure, error, version="0x00000001", kind=kind)  # type: ignore[arg-type]


def path(
    failure: str | None = None,
    checks: tuple[QUICObservation, ...] = (),
    get: HTTP3Observation | None = OK_GET,
) -> QUICPath:
    return QUICPath(
        tried="alt-svc",
        handshakes=(hs(failure),),
        checks=checks,
        http3=get if failure is None else None,
    )


HARMLESS = hs(kind="harmless", sni="example.com")
PING = replace(hs(kind="version", sni=""), version=None)
FAILED_CHECKS = (hs("timeout", "harmless", "example.com"), replace(PING, failure="timeout"))


def control(p: QUICPath | None) -> Control:
    return Control(Measurement(T, 0.0, quic=p))


OPEN = control(path())
CLOSED = control(path("timeout", FAILED_CHECKS))

ROWS = [
    # (id, vantage's path, control, verdict, layer/method, words)
    ("open", path(), OPEN, "accessible", None, "HTTP/3 200 'Clubhouse' from 192.0.2.10"),
    (
        "SNI filter: the harmless SNI completes",
        path("timeout", (HARMLESS,)),
        OPEN,
        "blocked",
        "quic/timeout",
        "completes QUIC with SNI example.com: SNI-based",
    ),
    (
        "SNI filter: the address answers version negotiation",
        path("timeout", (replace(HARMLESS, failure="timeout"), PING)),
        OPEN,
        "blocked",
        "quic/timeout",
        "answers version negotiation: SNI-based",
    ),
    (
        "the address's UDP is blocked",
        path("timeout", FAILED_CHECKS),
        OPEN,
        "blocked",
        "quic/timeout",
        "not SNI-based",
    ),
    ("no QUIC anywhere", path("timeout", FAILED_CHECKS), CLOSED, "unsupported", None, "either"),
    ("a close the control does not see", path("close"), OPEN, "blocked", "quic/close", "close"),
    (
        "a close the control sees too",
        path("close"),
        control(path("close")),
        "unsupported",
        None,
        "does not speak HTTP/3",
    ),
    (
        "interception",
        path("invalid_certificate"),
        OPEN,
        "blocked",
        "quic/invalid_certificate",
        "the control completes QUIC",
    ),
    (
        "no control: the vantage's own proof",
        path("timeout", (HARMLESS,)),
        None,
        "blocked",
        "quic/timeout",
        "SNI-based",
    ),
    ("no control, no proof", path("timeout", FAILED_CHECKS), None, "inconclusive", None, "needed"),
    (
        "no control, a bad certificate: interception needs the control's valid one",
        path("invalid_certificate", (HARMLESS,)),
        None,
        "inconclusive",
        None,
        "needed",
    ),
    (
        "a control that did not try QUIC (it saw no Alt-Svc)",
        path("timeout", FAILED_CHECKS),
        control(QUICPath(skipped="the site advertises no HTTP/3", unsupported=True)),
        "inconclusive",
        None,
        "needed",
    ),
    (
        "the GET fails in a way no censor causes",
        path(get=replace(OK_GET, failure="unknown", status=None)),
        OPEN,
        "inconclusive",
        None,
        "HTTP/3 unknown",
    ),
    (
        "a control that did not measure QUIC",
        path("timeout", FAILED_CHECKS),
        control(None),
        "inconclusive",
        None,
        "needed",
    ),
    ("refused: nothing speaks QUIC there", path("refused"), OPEN, "inconclusive", None, "refused"),
    (
        "the GET reset after the handshake",
        path(get=replace(OK_GET, failure="reset", error="stream reset", status=None)),
        OPEN,
        "blocked",
        "http/reset",
        "the control gets HTTP/3 200",
    ),
    (
        "the GET stalls",
        path(get=replace(OK_GET, failure="stall", error="then nothing", status=200)),
        OPEN,
        "blocked",
        "http/stall",
        "after QUIC completed",
    ),
    (
        "the GET fails for the control too",
        path(get=replace(OK_GET, failure="timeout", status=None)),
        control(path(get=replace(OK_GET, failure="timeout", status=None))),
        "down",
        None,
        "not censorship",
    ),
    (
        "the GET fails, no control",
        path(get=replace(OK_GET, failure="reset", status=None)),
        None,
        "inconclusive",
        None,
        "HTTP/3 reset",
    ),
    ("no GET after the handshake", path(get=None), OPEN, "inconclusive", None, "no GET"),
]


@pytest.mark.parametrize(
    ("name", "mine", "theirs", "verdict", "how", "words"), ROWS, ids=[r[0] for r in ROWS]
)
def test_http3_verdict(
    name: str,
    mine: QUICPath,
    theirs: Control | None,
    verdict: str,
    how: str | None,
    words: str,
) -> None:
    d = judge_quic(mine, theirs)
    assert d is not None
    assert d.verdict == verdict, d.explanation
    assert (f"{d.blocking.layer}/{d.blocking.method}" if d.blocking else None) == how
    assert words in d.explanation


def test_the_summary_says_whether_the_block_is_by_sni() -> None:
    by_name = judge_quic(path("timeout", (HARMLESS,)), OPEN)
    by_address = judge_quic(path("timeout", FAILED_CHECKS), OPEN)
    assert by_name is not None and by_name.summary == "quic/timeout, SNI-based"
    assert by_address is not None and by_address.summary == "quic/timeout, not SNI-based"


@pytest.mark.parametrize(
    ("skipped", "unsupported", "verdict"),
    [
        ("the site advertises no HTTP/3", True, "unsupported"),
        ("quic: never", False, "not_measured"),
        ("no QUIC from this vantage: UDP/443 is filtered", False, "not_measured"),
    ],
)
def test_a_path_not_tried(skipped: str, unsupported: bool, verdict: str) -> None:
    d = judge_quic(QUICPath(skipped=skipped, unsupported=unsupported), OPEN)
    assert d is not None and d.verdict == verdict and skipped in d.explanation


def test_a_target_without_a_quic_path_has_no_http3_verdict() -> None:
    assert judge_quic(None, OPEN) is None


def test_every_quic_method_has_a_row() -> None:
    rows = {r[4] for r in ROWS if r[4] and r[4].startswith("quic/")}
    assert rows == {f"quic/{m}" for m in METHODS["quic"]}  # type: ignore[index]
