"""Settling several measurements of one target into one diagnosis (pure).

A target that looks blocked is measured again after a pause: one lost packet, a flapping route
or an overloaded server must not read as censorship. A block stands only if every measurement
saw one; the first says how (later ones may see a censor's residual penalty rather than its rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from probe.model import Diagnosis


def settle(diagnoses: Sequence[Diagnosis]) -> tuple[Diagnosis, int]:
    """The diagnosis that stands, and the index of the measurement whose evidence it rests on."""
    n = len(diagnoses)
    final = diagnoses[-1]
    if not final.verdict.is_block:
        if n == 1:
            return final, n - 1
        early = diagnoses[0]
        note = f" (an earlier measurement looked {early.verdict}: {early.summary}; not confirmed)"
        return replace(final, explanation=final.explanation + note, attempts=n, agreed=1), n - 1
    head = diagnoses[0]
    agreed = sum(d.blocking == head.blocking for d in diagnoses)  # the blocking names the verdict
    if n > 1:
        head = replace(
            head, explanation=f"{head.explanation} (seen in {agreed} of {n} measurements)"
        )
    return replace(head, attempts=n, agreed=agreed), 0
