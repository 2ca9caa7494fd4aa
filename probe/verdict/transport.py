"""The transport room: TCP connects and TLS handshakes of a hop's addresses in one family,
each row's probe step beside the control's at the same address."""

from __future__ import annotations

from probe.model import Diagnosis
from probe.verdict.explain import TCP_FAILURES, TLS_FAILURES, F, blocked, down, most_common
from probe.verdict.join import View
from probe.vocabulary import Layer, Method


def judge_tcp(x: View) -> Diagnosis | None:
    rows = [r for r in x.rows if r.tcp is not None]
    if not rows or any(r.tcp.failure is None for r in rows if r.tcp):
        return None
    failure = most_common(r.tcp.failure for r in rows if r.tcp)
    if failure not in TCP_FAILURES:
        return None
    first = rows[0].tcp
    assert first is not None
    compared = [r.c_tcp for r in rows if r.c_tcp is not None] if x.c is not None else []
    reached = [c.address for c in compared if c.failure is None]
    if reached:
        return blocked(
            Layer.TCP,
            failure,
            f"TCP {failure} connecting to {', '.join(r.address for r in rows[:3])}:"
            f"{first.port}; the control connects to {reached[0]}",
            f"TCP {failure}; control connects",
        )
    if len(compared) == len(rows):  # the control tried every address that failed here
        c_fail = most_common(c.failure for c in compared)
        return down(
            f"TCP {failure} to {first.address}:{first.port}, and the control fails too ({c_fail})",
            f"TCP {failure} everywhere",
        )
    return None


def judge_tls(x: View) -> Diagnosis | None:
    rows = [r for r in x.rows if r.tls is not None]
    tls = [r.tls for r in rows if r.tls]
    if not tls or any(t.failure is None for t in tls):
        return None
    failure = most_common(t.failure for t in tls)
    if failure == F.INVALID_CERTIFICATE:
        return _interception(x)
    if failure not in TLS_FAILURES:
        return None
    sni_ok = next((r.sni_check for r in x.rows if r.sni_check and not r.sni_check.failure), None)
    other_sni = (
        (
            f"; {sni_ok.address} completes a handshake with SNI {sni_ok.sni}: the name is "
            "filtered, not the address"
        )
        if sni_ok
        else ""
    )
    head = f"TLS {failure} after the ClientHello with SNI {x.host} at {len(tls)} address(es)"
    if x.c is None:
        if sni_ok is None:
            return None
        return blocked(Layer.TLS, failure, head + other_sni, f"SNI {failure}; other SNI completes")
    same = [r.c_tls for r in rows if r.c_tls is not None]
    completes = [c for c in same if c.failure is None] or (
        [] if same else [t for t in x.c_tls if t.failure is None]
    )
    if completes:
        where = "there" if same else f"at {completes[0].address}"
        return blocked(
            Layer.TLS,
            failure,
            f"{head}{other_sni}; the control completes {where}{_residual_note(x)}",
            f"TLS {failure}" + ("; other SNI completes" if sni_ok else "; control completes"),
        )
    if same:
        return down(
            f"{head}, and the control's handshake fails too "
            f"({most_common(c.failure for c in same)})",
            f"TLS {failure} everywhere",
        )
    return None


def _residual_note(x: View) -> str:
    boxed = [r.sni_check for r in x.rows if r.sni_check and not r.sni_check.connected]
    if not boxed:
        return ""
    return (
        f"; afterwards even a new connection to {boxed[0].address} failed ({boxed[0].failure}): "
        "residual blocking of this client and server"
    )


def _interception(x: View) -> Diagnosis | None:
    tls = [r.tls for r in x.rows if r.tls is not None]
    t = next((t for t in tls if t.certificate is not None), tls[0])
    cert = t.certificate
    shown = f"issued by {cert.issuer} to {cert.subject}" if cert is not None else "unreadable"
    if x.c is None:
        return None
    valid = [c for c in x.c_tls if c.verified]
    if valid:
        return blocked(
            Layer.TLS,
            Method.INVALID_CERTIFICATE,
            f"the certificate for {x.host} at {t.address} does not validate ({t.error}); "
            f"it is {shown}; the control gets a valid certificate at {valid[0].address}: "
            "the connection is intercepted",
            "untrusted certificate (interception)",
        )
    if any(c.failure == F.INVALID_CERTIFICATE for c in x.c_tls):
        return down(
            f"the certificate for {x.host} does not validate from the control either",
            "invalid certificate everywhere",
        )
    return None
