"""Settling several measurements of one target into one diagnosis (pure).

A target that looks blocked is measured again after a pause: one lost packet, a flapping route
or an overloaded server must not read as censorship. A block stands only if every measurement
saw one; the first says how (later ones may see a censor's residual penalty rather than its rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from probe.model import Diagnosis, Seen


def settle(diagnoses: Sequence[Diagnosis]) -> tuple[Diagnosis, int]:
    """The diagnosis that stands, and the index of the measurement whose evidence it rests on;
    it keeps what each measurement came to (`seen`), and where they disagree its explanation
    says what the others saw."""
    n = len(diagnoses)
    # each one's sentence where there are several (one measurement's is the result's own)
    seen = tuple(
        Seen(d.verdict, d.blocking, d.summary, d.explanation if n > 1 else "") for d in diagnoses
    )
    final = diagnoses[-1]
    if not final.verdict.is_block:
        if n == 1:
            return replace(final, seen=seen), n - 1
        early = diagnoses[0]
        note = f" (an earlier measurement looked {early.verdict}: {early.summary}; not confirmed)"
        explanation = final.explanation + note
        return replace(final, explanation=explanation, attempts=n, agreed=1, seen=seen), n - 1
    head = diagnoses[0]
    agreed = sum(d.blocking == head.blocking for d in diagnoses)  # the blocking names the verdict
    if n > 1:
        others = [str(x) for x in seen if x.blocking != head.blocking]
        what = f"; the other{'s' if len(others) > 1 else ''}: {'; '.join(others)}" if others else ""
        head = replace(
            head, explanation=f"{head.explanation} (seen in {agreed} of {n} measurements{what})"
        )
    return replace(head, attempts=n, agreed=agreed, seen=seen), 0
