"""Before each run, and each `serve` round: the canaries measured at once, with the same engine
(no control, no HTTP/3), and the vantage's network regime judged from them
(`probe.verdict.regime`); where that regime blocks, the canaries are measured again after
CONFIRM_PAUSE to confirm it. A regime that holds from one survey to the next keeps the time it
began."""

from __future__ import annotations

import asyncio
import time

from probe.config import canaries_of
from probe.engine import flow
from probe.engine.deadline import Budget
from probe.engine.runtime import Runtime
from probe.model import Measurement, RegimeReport, Target
from probe.verdict.regime import Canary, Judged, answered, confirmed, judge_regime

CANARY_SERVICE = "canary"
CONFIRM_PAUSE = 1.0  # seconds between two looks at the canaries


async def survey(rt: Runtime, previous: RegimeReport | None = None) -> RegimeReport | None:
    """The regime now (None where the settings measure no canary)."""
    s = rt.settings
    chosen = canaries_of(s)
    if not chosen:
        return None
    # a connection, a handshake or a first byte each: what tells the regimes apart
    seconds = min(s.deadline, 2 * s.timeout)

    async def look() -> tuple[Judged, list[Measurement]]:
        measured = await asyncio.gather(
            *(
                flow.measure(Target.parse(url, CANARY_SERVICE), rt, Budget(seconds))
                for url, _ in chosen
            )
        )
        found = [Canary(side, m) for (_, side), m in zip(chosen, measured, strict=True)]
        return judge_regime(found), measured

    judged, measured = await look()
    if judged[0].is_block:
        await asyncio.sleep(CONFIRM_PAUSE)
        again, measured = await look()
        judged = confirmed(judged, again)
    regime, why, evidence = judged
    kept = previous is not None and previous.regime == regime
    since = previous.since if previous is not None and kept else time.time()
    unanswered = tuple(m.target.url for m in measured if not answered(m))
    return RegimeReport(regime, since, why, evidence, unanswered)
