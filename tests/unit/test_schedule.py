"""Re-measurement and the control's answer, with the measurements scripted (no sockets): how many
times a target is measured, after which pause, which measurement's evidence the result keeps,
how often the control is asked, and that neither a bug nor a control's unusable answer costs the
probe its own result."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from probe.cli.formats import Unmeasured
from probe.config import Settings
from probe.engine import flow, schedule, variants
from probe.engine.deadline import Budget
from probe.engine.runtime import Runtime, Transport
from probe.engine.schedule import unmeasured
from probe.model import HelloPath, Measurement, RegimeReport, Target
from probe.policy import AddressPolicy
from probe.verdict.fingerprints import BUILTIN
from probe.vocabulary import Regime
from tests.unit.test_verdict import CONTROL, T, m, page, system, tcp, tls

BLOCKED = m([system("192.0.2.10")], [tcp(failure="timeout")])
FINE = m([system("192.0.2.10")], [tcp()], [tls()], [], page())


class Script:
    """Stands in for the flow: hands out the scripted measurements, asks the control like the
    real flow (after DNS), and notes when each measurement started."""

    def __init__(self, *measurements: Measurement) -> None:
        self.left = list(measurements)
        self.started: list[float] = []

    async def __call__(self, target, rt, budget, *, on_dns=None, extra_addresses=()):  # type: ignore[no-untyped-def]
        self.started.append(asyncio.get_running_loop().time())
        if on_dns is not None:
            on_dns(["192.0.2.10"])
        item = self.left.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The control's answers (CONTROL) and who asked for them."""
    calls: list[str] = []

    async def ask(rt, target, addresses, deadline):  # type: ignore[no-untyped-def]
        calls.append(target.url)
        return CONTROL

    monkeypatch.setattr(schedule, "ask", ask)
    return calls


def runtime(**kw: object) -> Runtime:
    s = Settings(**{"control": "http://control.invalid", "retry_pause": 0.2, **kw})  # type: ignore[arg-type]
    return Runtime(s, AddressPolicy.open(), BUILTIN, {}, Transport(1.0))


async def judged(monkeypatch: pytest.MonkeyPatch, script: Script, **kw: object):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(flow, "measure", script)
    return await schedule.measure_and_judge(T, runtime(**kw))


async def test_a_block_is_measured_again_after_the_pause_and_confirmed(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    first = BLOCKED
    script = Script(first, BLOCKED)
    r = await judged(monkeypatch, script)
    assert (r.verdict, r.diagnosis.attempts, r.diagnosis.agreed) == ("blocked", 2, 2)
    assert r.measurement.tcp is first.tcp  # the first says how: later ones may see a penalty
    assert script.started[1] - script.started[0] >= 0.2
    assert asked == [T.url]  # once per target, whatever the re-measurements


async def test_a_block_not_seen_again_keeps_the_last_measurements_evidence(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    r = await judged(monkeypatch, Script(BLOCKED, FINE))
    assert (r.verdict, r.diagnosis.attempts, r.diagnosis.agreed) == ("accessible", 2, 1)
    assert r.measurement.http is FINE.http


async def test_retries_bound_the_measurements(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    r = await judged(monkeypatch, Script(BLOCKED, BLOCKED, BLOCKED, BLOCKED), retries=2)
    assert (r.diagnosis.attempts, r.diagnosis.agreed) == (3, 3)
    r = await judged(monkeypatch, Script(BLOCKED), retries=0)
    assert r.diagnosis.attempts == 1


async def test_what_is_not_blocked_is_measured_once(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    script = Script(FINE, FINE)
    r = await judged(monkeypatch, script)
    assert r.diagnosis.attempts == 1 and len(script.started) == 1


async def test_without_a_control_configured_none_is_asked(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    r = await judged(monkeypatch, Script(FINE), control=None)
    assert asked == [] and r.control is None


async def test_a_bug_is_reported_as_such_never_as_a_verdict(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    r = await judged(monkeypatch, Script(RuntimeError("a bug")))
    assert (
        r.verdict == "inconclusive"
        and "internal error RuntimeError: a bug" in r.diagnosis.explanation
    )


async def test_a_control_answer_the_verdict_cannot_use_is_set_aside(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    """The probe keeps its own verdict and says why the control did not count."""

    def fragile(measurement, control, fingerprints, public_ranges):  # type: ignore[no-untyped-def]
        if control is not None and control.measurement is not None:
            raise KeyError("odd data from the control")
        return real(measurement, control, fingerprints, public_ranges)

    real = schedule.judge
    monkeypatch.setattr(schedule, "judge", fragile)
    r = await judged(monkeypatch, Script(FINE))
    assert r.verdict == "accessible"
    assert r.control is not None and "unusable answer: KeyError" in (r.control.error or "")


async def test_without_a_control_a_bug_in_the_verdict_is_still_a_bug(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(schedule, "judge", broken)
    r = await judged(monkeypatch, Script(FINE), control=None)
    assert "internal error" in r.diagnosis.explanation


@pytest.mark.parametrize(
    "target",
    [
        Target.parse("https://www.clubhouse.com/"),
        Target.parse('http://a.example/"quoted"\\path', service='a "service"', category="NEWS"),
        replace(Target.parse("https://пример.испытание/"), quic="always"),
        replace(Target.parse("https://www.clubhouse.com/"), remote="CN"),
    ],
)
def test_what_was_not_measured_is_written_as_the_result_would_be(target: Target) -> None:
    """The template that writes a million unmeasured targets at once gives each the JSON its
    own result gives."""
    s = Settings(vantage="v", country="XA")
    why = "not measured: the run's budget ran out"
    template = Unmeasured(why, s)
    assert template.line(target) == unmeasured(target, why, s, template.now).dumps()


def report(regime: Regime, unanswered: tuple[str, ...] = ()) -> RegimeReport:
    return RegimeReport(regime, 1_800_000_000.0, "why", ("evidence",), unanswered)


@pytest.mark.parametrize(
    ("regime", "verdict", "marked"),
    [
        (Regime.ALLOWLIST, "blocked", True),
        (Regime.SHUTDOWN, "inconclusive", True),
        (Regime.PORT_RESET, "blocked", True),
        (Regime.ALLOWLIST, "accessible", False),  # what loads is no one's doing
        (Regime.NORMAL, "blocked", False),
        (Regime.UNKNOWN, "blocked", False),  # mixed evidence claims no regime
        (Regime.OFFLINE, "inconclusive", False),  # nothing was blocked: nothing left
    ],
)
def test_under_a_regime_what_fails_is_the_regimes(
    regime: Regime, verdict: str, marked: bool
) -> None:
    blocked = schedule._judge(runtime(), BLOCKED, CONTROL)[0]
    d = {
        "blocked": blocked,
        "inconclusive": schedule._judge(runtime(), BLOCKED, None)[0],
        "accessible": schedule._judge(runtime(), FINE, CONTROL)[0],
    }[verdict]
    assert d.verdict == verdict
    got = schedule.under_regime(d, report(regime))
    assert got.explanation.startswith(f"network regime {regime} since") == marked
    if d.blocking is not None:
        assert (got.blocking is not None and got.blocking.regime == regime) == marked
    assert schedule.under_regime(d, None) == d


def test_the_control_is_not_asked_where_its_canary_did_not_answer() -> None:
    alone = runtime(control=None)
    alone.regime = report(Regime.ALLOWLIST, ("https://example.com/",))
    assert schedule.control_out_of_reach(alone) is None  # no control to keep out
    rt = runtime(control="https://control.example.org")
    assert schedule.control_out_of_reach(rt) is None  # no survey yet
    rt.regime = report(Regime.ALLOWLIST, ("https://example.com/",))
    assert schedule.control_out_of_reach(rt) is None  # its own canary answered
    rt.regime = report(Regime.ALLOWLIST, ("https://control.example.org/healthz",))
    out = schedule.control_out_of_reach(rt)
    assert out is not None and out.measurement is None and "allowlist" in (out.error or "")
    # a slow answer to one canary under a regime that blocks nothing keeps no control out
    rt.regime = report(Regime.NORMAL, ("https://control.example.org/healthz",))
    assert schedule.control_out_of_reach(rt) is None


async def test_a_control_out_of_reach_is_not_asked_and_says_why(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    monkeypatch.setattr(flow, "measure", Script(FINE))
    rt = runtime(control="https://control.example.org")
    rt.regime = report(Regime.ALLOWLIST, ("https://control.example.org/healthz",))
    r = await schedule.measure_and_judge(T, rt)
    assert asked == []
    assert r.control is not None and "out of reach" in (r.control.error or "")


async def test_no_clienthello_variant_goes_under_a_regime_or_where_it_is_not_wanted() -> None:
    """The variants go where the target's own handshake failed — but not under a regime, not
    with `clienthello: never`, never for an http:// target (nothing is sent: no address here
    could be reached)."""
    failed = m([system("192.0.2.10")], [tcp()], [tls(failure="reset")])
    rt = runtime()
    rt.regime = report(Regime.SHUTDOWN, ())
    path = await variants.measure(T, rt, failed, Budget(5.0))
    assert path == HelloPath(skipped="the vantage's network regime is shutdown, not normal")
    never = await variants.measure(T, runtime(clienthello="never"), failed, Budget(5.0))
    assert never == HelloPath(skipped="clienthello: never")
    plain = Target.parse("http://www.clubhouse.com/")
    assert await variants.measure(plain, runtime(), failed, Budget(5.0)) is None


def test_the_cli_loop_looks_for_cycles_less_often_and_puts_the_collector_back() -> None:
    """While the CLI's event loop runs, the cyclic collector's youngest generation takes
    YOUNG_GENERATION objects (its passes were 2% of a busy run's CPU); after, Python's own."""
    import gc

    from probe.cli.common import YOUNG_GENERATION, run

    before = gc.get_threshold()

    async def threshold() -> tuple[int, int, int]:
        return gc.get_threshold()

    assert run(threshold()) == (YOUNG_GENERATION, *before[1:])
    assert gc.get_threshold() == before
