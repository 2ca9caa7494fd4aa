"""The QUIC/HTTP/3 path's own verdict, beside the target's (TCP) one. Pure, like `judge`.

- Not tried: `unsupported` where nobody sees the site advertise HTTP/3 (most sites do not speak
  it), `not_measured` where the probe chose not to (`quic: never`, no QUIC from this vantage).
- A handshake that fails (timeout: the Initial got no answer; close: a CONNECTION_CLOSE or a
  version negotiation; an invalid certificate) is a block only where the control completes one
  to the site; where the control fails too, the site does not speak QUIC: `unsupported`. Without
  the control's QUIC, only the vantage's own proof counts: the same address completing QUIC with
  a harmless SNI, or answering version negotiation, while the real SNI fails.
- Whether it is SNI-based: the harmless SNI or the version ping answered at an address where the
  real SNI failed (the censor reads the name in the Initial, which any on-path observer can
  decrypt); otherwise the address's UDP is blocked.
- After a handshake, the HTTP/3 GET failing (reset, timeout, stall) is an `http/…` block where
  the control's GET succeeds, `down` where it fails too.
"""

from __future__ import annotations

from probe.model import Blocking, Control, Diagnosis, QUICPath
from probe.verdict.explain import most_common
from probe.vocabulary import Failure, Layer, Method, Verdict

F = Failure
HANDSHAKE_BLOCKS = (F.TIMEOUT, F.CLOSE, F.INVALID_CERTIFICATE)
HTTP3_BLOCKS = (F.RESET, F.TIMEOUT, F.STALL)


def judge_quic(path: QUICPath | None, control: Control | None) -> Diagnosis | None:
    """The QUIC path's verdict; None for a target without one (plain http://)."""
    if path is None:
        return None
    if path.skipped is not None:
        if path.unsupported:
            return Diagnosis(
                Verdict.UNSUPPORTED, None, f"HTTP/3: {path.skipped}", "no HTTP/3 advertised"
            )
        return Diagnosis(
            Verdict.NOT_MEASURED, None, f"HTTP/3 not measured: {path.skipped}", "not measured"
        )
    c = control.measurement if control is not None else None
    theirs = c.quic if c is not None and c.quic is not None and c.quic.handshakes else None
    if any(h.failure is None for h in path.handshakes):
        return _http3(path, theirs)
    return _handshake(path, theirs)


def _handshake(path: QUICPath, theirs: QUICPath | None) -> Diagnosis:
    failure = most_common(h.failure for h in path.handshakes)
    first = next(h for h in path.handshakes if h.failure == failure)
    head = f"QUIC {failure} with SNI {first.sni} at {first.address}:{path.port} ({first.error})"
    sni = _sni_based(path)
    if failure not in HANDSHAKE_BLOCKS:
        return _inconclusive(head)
    if theirs is None:
        if sni is None or failure == F.INVALID_CERTIFICATE:
            return _inconclusive(f"{head}; the control's QUIC is needed to call it a block")
        return _blocked(Layer.QUIC, failure, f"{head}; {sni}", True)
    done = next((h for h in theirs.handshakes if h.failure is None), None)
    if done is None:
        return Diagnosis(
            Verdict.UNSUPPORTED,
            None,
            f"{head}, and the control's QUIC fails too ({theirs.handshakes[0].failure}): the "
            "site does not speak HTTP/3 there either",
            "no QUIC anywhere",
        )
    how = sni or "the address answers no QUIC from here (its UDP is blocked), not SNI-based"
    control_saw = f"the control completes QUIC {done.version} at {done.address}"
    return _blocked(Layer.QUIC, failure, f"{head}; {control_saw}; {how}", sni is not None)


def _sni_based(path: QUICPath) -> str | None:
    """Why the failure is the name's, not the address's, if a check says so."""
    harmless = next((h for h in path.checks if h.kind == "harmless" and h.failure is None), None)
    if harmless is not None:
        return (
            f"{harmless.address} completes QUIC with SNI {harmless.sni}: SNI-based (the name is "
            "read from the Initial)"
        )
    ping = next((h for h in path.checks if h.failure is None), None)  # the version ping
    if ping is not None:
        return f"{ping.address} answers version negotiation: SNI-based, the address speaks QUIC"
    return None


def _http3(path: QUICPath, theirs: QUICPath | None) -> Diagnosis:
    g = path.http3
    done = next(h for h in path.handshakes if h.failure is None)
    if g is None:
        return _inconclusive(f"QUIC {done.version} to {done.address} worked, no GET was made")
    if g.failure is None:
        title = f" '{g.title[:40]}'" if g.title else ""
        return Diagnosis(
            Verdict.ACCESSIBLE,
            None,
            f"HTTP/3 {g.status}{title} from {done.address} over QUIC {done.version}, "
            f"{g.body_length} bytes",
            f"HTTP/3 {g.status}{title}",
        )
    head = f"HTTP/3 {g.failure} for GET {g.url} after QUIC completed ({g.error})"
    their_get = theirs.http3 if theirs is not None else None
    if g.failure not in HTTP3_BLOCKS or their_get is None:
        return _inconclusive(head)
    if their_get.failure is None:
        return _blocked(
            Layer.HTTP,
            g.failure,
            f"{head}; the control gets HTTP/3 {their_get.status} ({their_get.body_length} bytes)",
            None,
        )
    return Diagnosis(
        Verdict.DOWN,
        None,
        f"{head}, and the control's fails too ({their_get.failure}): not censorship",
        f"HTTP/3 {g.failure} everywhere",
    )


def _blocked(layer: Layer, failure: Failure, explanation: str, sni: bool | None) -> Diagnosis:
    blocking = Blocking(layer, Method(failure), sni_based=sni)
    return Diagnosis(Verdict.BLOCKED, blocking, f"HTTP/3 blocked: {explanation}", str(blocking))


def _inconclusive(explanation: str) -> Diagnosis:
    return Diagnosis(Verdict.INCONCLUSIVE, None, explanation, "HTTP/3 inconclusive")
