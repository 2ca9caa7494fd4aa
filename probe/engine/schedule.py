"""Many targets: a bounded pool of workers, re-measurement while a target looks blocked, the
control helper asked once per target, a budget for the whole run, and results handed over as
they finish (so a front end can stream them out and keep nothing).

The bound of one target is `Settings.target_bound`, scheduled by its `Deadline`: its first
measurement, the control's answer, its HTTP/3 path, each re-measurement's pause and deadline,
and its ClientHello variants. A stop request (Ctrl-C, SIGTERM) or the run's budget ends the run
the same way: what was measured is kept, the rest is reported as not measured.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace

from probe.config import Settings
from probe.engine import flow, variants
from probe.engine.control import ask
from probe.engine.deadline import Deadline
from probe.engine.runtime import Runtime
from probe.measure.failure import describe
from probe.model import Control, Diagnosis, Measurement, RegimeReport, Result, Target
from probe.verdict import judge, judge_ech, judge_quic, judge_remote, settle, what_variants_say
from probe.vocabulary import Step, Verdict

OnResult = Callable[[int, Result], None]
# what was not measured when a run ended early: (index, target) pairs, and why
OnUnmeasured = Callable[[list[tuple[int, Target]], str], None]


def default_budget(s: Settings, count: int) -> float:
    """Enough for every target to take its whole bound; a run normally ends long before."""
    return math.ceil(count / s.concurrency) * s.target_bound + 5.0


def unmeasured(target: Target, why: str, s: Settings, now: float | None = None) -> Result:
    """The result of a target that was not measured, and why."""
    now = time.time() if now is None else now
    m = Measurement(target, now, notes=(why,))
    return Result(
        m,
        Diagnosis(Verdict.INCONCLUSIVE, None, why, "not measured"),
        None,
        now,
        s.vantage,
        target.remote or s.country,
    )


def _judge(
    rt: Runtime, m: Measurement, control: Control | None
) -> tuple[Diagnosis, Control | None]:
    """The diagnosis; a control answer the verdict cannot use is set aside, with the reason."""
    s = rt.settings
    try:
        return judge(m, control, rt.fingerprints, s.public_ranges), control
    except Exception as exc:
        if control is None:
            raise  # a bug of the verdict's own
        unusable = Control(error=f"unusable answer: {describe(exc)}")
        return judge(m, unusable, rt.fingerprints, s.public_ranges), unusable


async def measure_and_judge(
    target: Target, rt: Runtime, *, within: float | None = None, retries: int | None = None
) -> Result:
    """One target's result, re-measured while it looks blocked; a bug becomes `inconclusive`
    with the reason, never a verdict. `within` shortens the target's whole time (a scrape)."""
    s = rt.settings
    deadline = Deadline.of(target, s, retries=retries, within=within)
    if target.remote:
        return await _remote(target, rt, deadline)
    asked: list[asyncio.Task[Control]] = []
    out_of_reach = control_out_of_reach(rt)

    def ask_control(addresses: list[str]) -> None:
        if s.control and out_of_reach is None:  # asked by the first measurement only
            asked.append(asyncio.ensure_future(ask(rt, target, addresses, deadline)))

    try:
        first = await flow.measure(target, rt, deadline.measurement(), on_dns=ask_control)
        control = await asked[0] if asked else out_of_reach
        first = await _with_quic(target, rt, first, control, deadline)
        diagnosis, control = _judge(rt, first, control)
        diagnosis, m = await _settled(
            first,
            diagnosis,
            deadline,
            lambda: flow.measure(target, rt, deadline.measurement()),
            lambda m: _judge(rt, m, control)[0],
        )
        m = await _with_variants(target, rt, m, deadline)
    except Exception as exc:
        return unmeasured(target, f"not measured: internal error {describe(exc)}", s)
    finally:
        for task in asked:
            task.cancel()
    quic = judge_quic(first.quic, control)
    ech = judge_ech(m, diagnosis.verdict)
    diagnosis = under_regime(with_variants(diagnosis, m), rt.regime)
    regime = rt.regime.regime if rt.regime else None
    return Result(m, diagnosis, control, time.time(), s.vantage, s.country, quic, regime, ech)


def with_variants(d: Diagnosis, m: Measurement) -> Diagnosis:
    """The diagnosis with what the ClientHello variants say of it, where they tell something."""
    said = what_variants_say(m.hello, m.target.host)
    return replace(d, explanation=f"{d.explanation}; {said}") if said else d


def control_out_of_reach(rt: Runtime) -> Control | None:
    """Where the vantage's network regime blocks and its canaries found the control helper does
    not answer from here (the regime keeps it out), it is not asked for each target: a Control
    saying why. Under a regime that does not block, a canary of the control's unanswered once is
    a slow answer, not a wall: each target asks it as usual."""
    s, report = rt.settings, rt.regime
    if not s.control or report is None or not report.regime.is_block:
        return None
    health = s.control.rstrip("/") + "/healthz"
    if health not in report.unanswered:
        return None
    return Control(
        error=f"out of reach under the vantage's network regime ({report.regime}): "
        "its canary did not answer"
    )


def under_regime(d: Diagnosis, report: RegimeReport | None) -> Diagnosis:
    """Under an allowlist, a shutdown or a port-wide reset, what fails is the regime's doing: a
    block says so (`blocking.regime`), and so does every explanation of what did not load."""
    if report is None or not report.regime.is_block or d.verdict == Verdict.ACCESSIBLE:
        return d
    blocking = replace(d.blocking, regime=report.regime) if d.blocking else None
    return replace(d, blocking=blocking, explanation=f"{report.sentence()}; {d.explanation}")


async def _settled(
    first: Measurement,
    diagnosis: Diagnosis,
    deadline: Deadline,
    measure: Callable[[], Awaitable[Measurement]],
    judged: Callable[[Measurement], Diagnosis],
) -> tuple[Diagnosis, Measurement]:
    """Re-measure while the latest diagnosis is a block, up to the deadline's retries; the
    diagnosis that stands and the measurement it rests on (with the first's QUIC path: HTTP/3 is
    not measured again)."""
    measurements, diagnoses = [first], [diagnosis]
    for _ in range(deadline.retries):
        if not diagnoses[-1].verdict.is_block:
            break
        await asyncio.sleep(deadline.pause())  # outlast residual blocking
        measurements.append(await measure())
        diagnoses.append(judged(measurements[-1]))
    settled, used = settle(diagnoses)
    return settled, first if used == 0 else replace(measurements[used], quic=first.quic)


async def _remote(target: Target, rt: Runtime, deadline: Deadline) -> Result:
    """A remote measurement toward `target.remote`, re-measured like a local one; its country is
    the one measured, and nobody else's control is asked (this vantage's view is the
    reference)."""
    from probe.engine import remote  # dnspython, only where a remote country is measured

    s = rt.settings

    def judged(m: Measurement) -> Diagnosis:
        return judge_remote(m, rt.fingerprints, s.public_ranges)

    try:
        first = await remote.measure(target, rt, deadline.measurement())
        diagnosis, m = await _settled(
            first,
            judged(first),
            deadline,
            lambda: remote.measure(target, rt, deadline.measurement()),
            judged,
        )
    except Exception as exc:
        return unmeasured(target, f"not measured: internal error {describe(exc)}", s)
    regime = rt.regime.regime if rt.regime else None
    return Result(m, diagnosis, None, time.time(), s.vantage, target.remote, regime=regime)


async def _with_quic(
    target: Target, rt: Runtime, m: Measurement, control: Control | None, deadline: Deadline
) -> Measurement:
    """The measurement with its QUIC path, once: HTTP/3 is not re-measured."""
    start = time.perf_counter()
    theirs = control.measurement if control else None
    path = await flow.measure_quic(target, rt, m, theirs, deadline.http3())
    if path is None:
        return m
    return replace(m, quic=path, timings={**m.timings, str(Step.QUIC): time.perf_counter() - start})


async def _with_variants(
    target: Target, rt: Runtime, m: Measurement, deadline: Deadline
) -> Measurement:
    """The measurement with its ClientHello variants, sent after the last measurement."""
    start = time.perf_counter()
    path = await variants.measure(target, rt, m, deadline.hello())
    if path is None:
        return m
    if not path.variants:  # none sent: nothing took time
        return replace(m, hello=path)
    took = time.perf_counter() - start
    return replace(m, hello=path, timings={**m.timings, str(Step.CLIENTHELLO): took})


async def _all(tasks: Sequence[asyncio.Future[None]]) -> object:
    return await asyncio.gather(*tasks)


async def run(
    targets: Iterable[Target],
    rt: Runtime,
    on_result: OnResult,
    *,
    count: int,
    budget: float | None = None,
    stop: asyncio.Event | None = None,
    on_unmeasured: OnUnmeasured | None = None,
) -> str | None:
    """Measure every target with `concurrency` workers, handing each result (with the target's
    index) to `on_result` as it finishes; returns why the run ended early, if it did, after
    handing what was not measured to `on_unmeasured`, at once (a million of them, when a long
    list's budget runs out; a daemon passes none: it keeps its last results)."""
    s = rt.settings
    budget = budget if budget is not None else default_budget(s, count)
    await rt.network.check(s)  # a serve round looks again whether IPv6 works here
    queue = enumerate(targets)
    current: dict[int, Target] = {}  # index -> target being measured

    async def worker() -> None:
        for i, target in queue:
            current[i] = target
            result = await measure_and_judge(target, rt)
            del current[i]
            on_result(i, result)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(s.concurrency, count)))]
    stopper: asyncio.Future[object] = asyncio.ensure_future((stop or asyncio.Event()).wait())
    ended: str | None = None
    try:
        everything = asyncio.ensure_future(_all(workers))
        done, _ = await asyncio.wait(
            [everything, stopper], timeout=max(0.0, budget), return_when=asyncio.FIRST_COMPLETED
        )
        if everything not in done:
            ended = "interrupted" if stopper in done else "the run's budget ran out"
        else:
            everything.result()  # a bug, or the front end's callback failing: raise it
    finally:
        stopper.cancel()
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    if ended is not None and on_unmeasured is not None:
        on_unmeasured([*sorted(current.items()), *queue], f"not measured: {ended}")
    return ended
