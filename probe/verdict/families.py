"""The families room: where both IP families are in play, each is judged on its own (against
the control's steps in the same family) and the verdicts combined — a censor may act on one
family only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from probe.model import Diagnosis
from probe.verdict.join import View
from probe.vocabulary import Verdict

Judged = list[tuple[int, View, Diagnosis]]
Transport = Callable[[View], Diagnosis]  # a view's connections (and exchange) judged


def by_family(x: View, transport: Transport) -> Diagnosis:
    """`transport`'s verdict on `x`, or on each family of it, combined."""
    if len(x.hop.families()) < 2:
        return transport(x)
    judged = []
    for f in (4, 6):
        fx = x.in_family(f)
        judged.append((f, fx, transport(fx)))
    return _combine(judged)


def _combine(judged: Judged) -> Diagnosis:
    """One verdict from each family's: a block in one family only blocks the target, with the
    family named; otherwise the best outcome, the other family's said beside it."""
    blocks = [(f, d) for f, _, d in judged if d.verdict.is_block]
    if len(blocks) == 2:
        (_, d4), (_, d6) = blocks
        return replace(d4, explanation=f"over IPv4: {d4.explanation}; over IPv6: {d6.explanation}")
    if blocks:
        f, d = blocks[0]
        assert d.blocking is not None
        if not next(gx for g, gx, _ in judged if g != f).rows:  # one family seen: not "only"
            return replace(d, explanation=f"{d.explanation}; {_beside(judged, f)}")
        return replace(
            d,
            blocking=replace(d.blocking, ip_version=f),
            explanation=f"over IPv{f} only: {d.explanation}; {_beside(judged, f)}",
            summary=f"IPv{f}: {d.summary}",
        )
    for verdict in (Verdict.ACCESSIBLE, Verdict.DOWN, Verdict.INCONCLUSIVE):
        for f, _, d in judged:
            if d.verdict == verdict:
                return replace(d, explanation=f"{d.explanation}; {_beside(judged, f)}")
    raise AssertionError("every verdict is one of the above")


def _beside(judged: Judged, f: int) -> str:
    """What the other family than `f` came to."""
    g, gx, gd = next(j for j in judged if j[0] != f)
    if not gx.rows:
        return f"IPv{g} not measured"
    if gd.verdict == Verdict.INCONCLUSIVE and gx.control is not None and gx.c is None:
        return f"over IPv{g}: not compared ({gx.control.error}; {gd.summary})"
    return f"over IPv{g}: {gd.verdict} ({gd.summary})"
