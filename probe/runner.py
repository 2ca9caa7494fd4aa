"""The measurement of targets: DNS -> TCP -> TLS -> HTTP for each, bounded and on a budget.

One aiohttp session and one set of SSL contexts per run; targets run under a semaphore
(`concurrency`), the addresses of one target concurrently (at most `max_addresses`); every step
has its own timeout, and the run as a whole a budget after which what was not measured is
reported as such. A stop request (Ctrl-C) ends the run the same way: what was measured is kept.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from probe.config import ConfigError, Settings
from probe.fingerprints import BUILTIN, Fingerprint
from probe.fingerprints import load_csv as load_fingerprints
from probe.measure import dns, http, tcp, tls
from probe.measure.failure import describe
from probe.model import (
    Control,
    DNSObservation,
    HTTPObservation,
    Measurement,
    Result,
    Target,
    TCPObservation,
    TLSObservation,
    Verdict,
    is_ip_literal,
)
from probe.verdict import judge

# how much longer than the probe's own deadline the control's answer may take (it starts later)
CONTROL_GRACE = 5.0
# TLS failures after which a harmless SNI to the same address is worth one handshake
SNI_CHECK_AFTER = frozenset({"reset", "timeout", "eof", "alert", "protocol"})


@dataclass
class Runtime:
    """What one run shares: the session, the contexts, the resolver, the fingerprints."""

    settings: Settings
    session: aiohttp.ClientSession
    resolver: http.PinnedResolver
    verify: ssl.SSLContext  # the probe's trust anchors
    no_verify: ssl.SSLContext  # for fetching untrusted certificates and the harmless SNI
    # which addresses may be contacted: all for the probe; the control refuses special ones
    allowed: Callable[[str], bool]
    fingerprints: tuple[Fingerprint, ...] = BUILTIN

    @classmethod
    async def open(
        cls, settings: Settings, *, allowed: Callable[[str], bool] | None = None
    ) -> Runtime:
        """Raises ConfigError when a fingerprint source cannot be read."""
        resolver = http.PinnedResolver(allowed)
        http_context = tls.make_context(settings.ca_file, alpn=("http/1.1",))
        rt = cls(
            settings=settings,
            session=http.make_session(resolver, http_context, settings.timeout),
            resolver=resolver,
            verify=tls.make_context(settings.ca_file),
            no_verify=tls.make_context(verify=False),
            allowed=allowed or (lambda address: True),
        )
        try:
            rt.fingerprints = BUILTIN + await _load_fingerprints(settings.fingerprints, rt.session)
        except BaseException:
            await rt.close()
            raise
        return rt

    async def close(self) -> None:
        await self.session.close()


async def _load_fingerprints(
    sources: Sequence[str], session: aiohttp.ClientSession
) -> tuple[Fingerprint, ...]:
    out: list[Fingerprint] = []
    for source in sources:
        try:
            if source.startswith(("http://", "https://")):
                async with session.get(source) as resp:
                    resp.raise_for_status()
                    text = (await http.read_capped(resp, 16 << 20)).decode("utf-8")
            else:
                text = await asyncio.to_thread(Path(source).read_text, encoding="utf-8")
        except (OSError, aiohttp.ClientError, ValueError, TimeoutError) as exc:
            raise ConfigError(f"fingerprints: cannot read {source}: {describe(exc)}") from None
        out.extend(load_fingerprints(text, source))
    return tuple(out)


def target_deadline(s: Settings) -> float:
    """The most one target can take: every step's timeout, plus the listening windows."""
    return 6 * s.timeout + s.dns_window + s.throughput_window + 1.0


def default_budget(s: Settings, count: int) -> float:
    """Enough for every target to take its whole deadline on every attempt, with the control's
    answers and the pauses between attempts; a run normally ends long before."""
    one = (s.retries + 1) * (target_deadline(s) + CONTROL_GRACE) + s.retries * s.retry_pause
    return math.ceil(count / s.concurrency) * one + 5.0


async def measure(
    target: Target,
    rt: Runtime,
    *,
    extra_addresses: Sequence[str] = (),
    after_dns: Callable[[list[str]], None] | None = None,
) -> Measurement:
    """All steps for one target. Failures are data; only bugs raise.

    `extra_addresses` are tested too (the control tries the vantage's); `after_dns` is called
    with the addresses found, so the control can be asked while the probe goes on.
    """
    s = rt.settings
    started = time.time()
    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()

    host = target.host
    dns_obs: list[DNSObservation] = []
    if is_ip_literal(host):
        addresses = [host]
        notes.append("the URL names an address: no DNS step")
    else:
        batches = await asyncio.gather(
            *(
                dns.resolve(host, r, timeout=s.timeout, window=s.dns_window, session=rt.session)
                for r in s.resolvers
            )
        )
        dns_obs = [obs for batch in batches for obs in batch]
        addresses = Measurement(target, started, tuple(dns_obs)).addresses()
    timings["dns"] = time.perf_counter() - t0
    if after_dns is not None:
        after_dns(addresses)

    refused = [a for a in [*addresses, *extra_addresses] if not rt.allowed(a)]
    if refused:
        notes.append(
            f"not contacted (special-purpose addresses): {', '.join(sorted(set(refused)))}"
        )
    own = [a for a in addresses if rt.allowed(a)]
    picked = pick_addresses(own, s.max_addresses)
    if len(own) > len(picked):
        notes.append(f"tested {len(picked)} of {len(own)} addresses")
    picked += [
        a
        for a in pick_addresses(extra_addresses, s.max_addresses)
        if a not in picked and rt.allowed(a)
    ]
    t1 = time.perf_counter()
    steps = await asyncio.gather(*(_connect(target, a, rt) for a in picked))
    tcp_obs = [t for t, _ in steps]
    tls_obs = [t for _, t in steps if t is not None]
    timings["tcp_tls"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    failed = [o for o in tls_obs if o.failure in SNI_CHECK_AFTER]
    sni_obs = list(await asyncio.gather(*(_sni_check(o, rt) for o in failed)))
    if failed:
        timings["sni_check"] = time.perf_counter() - t2

    good = (
        [o.address for o in tls_obs if o.failure is None]
        if target.scheme == "https"
        else [o.address for o in tcp_obs if o.failure is None]
    )
    http_obs: HTTPObservation | None = None
    if good:
        t3 = time.perf_counter()
        # one address, so the evidence says which server answered
        rt.resolver.pins[host] = good[:1]
        http_obs = await http.fetch(
            target.url,
            rt.session,
            timeout=s.timeout,
            body_cap=s.body_cap,
            window=s.throughput_window,
            max_redirects=s.max_redirects,
            pinned=good[0],
        )
        timings["http"] = time.perf_counter() - t3
    elif picked:
        step = "TLS" if target.scheme == "https" else "TCP"
        notes.append(f"HTTP not tried: no address completed {step}")
    timings["total"] = time.perf_counter() - t0
    return Measurement(
        target,
        started,
        tuple(dns_obs),
        tuple(tcp_obs),
        tuple(tls_obs),
        tuple(sni_obs),
        http_obs,
        {k: round(v, 6) for k, v in timings.items()},
        tuple(notes),
    )


def pick_addresses(addresses: Sequence[str], limit: int) -> list[str]:
    """At most `limit` addresses, alternating families so both are tested where present."""
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    out: list[str] = []
    while (v4 or v6) and len(out) < limit:
        for family in (v4, v6):
            if family and len(out) < limit:
                out.append(family.pop(0))
    return out


async def _connect(
    target: Target, address: str, rt: Runtime
) -> tuple[TCPObservation, TLSObservation | None]:
    s = rt.settings
    if target.scheme != "https":
        obs, _, writer = await tcp.connect(address, target.port, s.timeout)
        await tcp.close(writer)
        return obs, None
    tcp_obs, tls_obs = await tls.connect_and_handshake(
        address, target.port, target.host, rt.verify, s.timeout
    )
    if tls_obs is not None and tls_obs.failure == "invalid_certificate":
        cert = await tls.fetch_certificate(
            address, target.port, target.host, rt.no_verify, s.timeout
        )
        tls_obs = replace(tls_obs, certificate=cert)
    return tcp_obs, tls_obs


async def _sni_check(failed: TLSObservation, rt: Runtime) -> TLSObservation:
    """One handshake with a harmless SNI to an address where the real SNI failed."""
    s = rt.settings
    tcp_obs, obs = await tls.connect_and_handshake(
        failed.address, failed.port, s.sni_check_name, rt.no_verify, s.timeout
    )
    if obs is None:
        return TLSObservation(
            failed.address,
            failed.port,
            s.sni_check_name,
            tcp_obs.elapsed,
            tcp_obs.failure,
            f"TCP connect: {tcp_obs.error}",
        )
    return obs


def unmeasured(target: Target, why: str, s: Settings) -> Result:
    m = Measurement(target, time.time(), notes=(why,))
    verdict = Verdict("inconclusive", None, why, why.split(":")[0])
    return Result(m, verdict, None, time.time(), s.vantage, s.country)


async def measure_and_judge(target: Target, rt: Runtime) -> Result:
    """One target's result, re-measured while it looks blocked; a bug or an overrun becomes
    `inconclusive` with the reason."""
    s = rt.settings
    try:
        first, control = await _attempt(target, rt, None)
        verdicts = [judge(first, control, rt.fingerprints, s.public_ranges)]
        last = first
        for _ in range(s.retries):
            if verdicts[-1].verdict not in ("blocked", "throttled"):
                break
            await asyncio.sleep(s.retry_pause)  # outlast residual blocking
            last, _ = await _attempt(target, rt, control)
            verdicts.append(judge(last, control, rt.fingerprints, s.public_ranges))
    except TimeoutError:
        return unmeasured(
            target,
            f"not measured: exceeded the target deadline of {target_deadline(s):.0f}s (a bug)",
            s,
        )
    except Exception as exc:
        return unmeasured(target, f"not measured: internal error {describe(exc)}", s)
    verdict, m = _settle(verdicts, first, last)
    return Result(m, verdict, control, time.time(), s.vantage, s.country)


async def _attempt(
    target: Target, rt: Runtime, control: Control | None
) -> tuple[Measurement, Control | None]:
    """One measurement; the control is asked (once per target) as soon as DNS has answered."""
    asked: list[asyncio.Task[Control]] = []

    def ask_control(addresses: list[str]) -> None:
        if rt.settings.control and control is None:
            from probe import control as helper  # the client lives beside the helper

            asked.append(asyncio.ensure_future(helper.ask(rt, target, addresses)))

    try:
        async with asyncio.timeout(target_deadline(rt.settings)):
            m = await measure(target, rt, after_dns=ask_control)
        # the control started after our DNS step and measures as long: its client has its own
        # timeout (the target deadline plus CONTROL_GRACE)
        return m, (await asked[0] if asked else control)
    finally:
        for task in asked:
            task.cancel()


def _settle(
    verdicts: list[Verdict], first: Measurement, last: Measurement
) -> tuple[Verdict, Measurement]:
    """A block stands only if every measurement saw one; the first says how (later ones may see
    the residual penalty rather than the rule)."""
    n = len(verdicts)
    final = verdicts[-1]
    if final.verdict not in ("blocked", "throttled"):
        if n == 1:
            return final, last
        early = verdicts[0]
        note = f" (an earlier measurement looked {early.verdict}: {early.summary}; not confirmed)"
        return replace(final, explanation=final.explanation + note, attempts=n, agreed=1), last
    head = verdicts[0]
    agreed = sum(v.verdict == head.verdict and v.blocking == head.blocking for v in verdicts)
    if n > 1:
        head = replace(
            head, explanation=f"{head.explanation} (seen in {agreed} of {n} measurements)"
        )
    return replace(head, attempts=n, agreed=agreed), first


ProgressFn = Callable[[Result, int, int], None]


async def run(
    targets: Sequence[Target],
    settings: Settings,
    *,
    budget: float | None = None,
    stop: asyncio.Event | None = None,
    progress: ProgressFn | None = None,
    allowed: Callable[[str], bool] | None = None,
) -> tuple[list[Result], str | None]:
    """Measure every target; returns results in target order and why the run ended early, if so."""
    budget = budget if budget is not None else default_budget(settings, len(targets))
    stop = stop or asyncio.Event()
    results: dict[int, Result] = {}
    sem = asyncio.Semaphore(settings.concurrency)
    rt = await Runtime.open(settings, allowed=allowed)

    async def one(i: int, target: Target) -> None:
        async with sem:
            results[i] = await measure_and_judge(target, rt)
        if progress is not None:
            progress(results[i], len(results), len(targets))

    async def all_targets() -> None:
        async with asyncio.TaskGroup() as tg:
            for i, target in enumerate(targets):
                tg.create_task(one(i, target))

    ended: str | None = None
    try:
        work = asyncio.ensure_future(all_targets())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait(
            {work, stopper}, timeout=budget, return_when=asyncio.FIRST_COMPLETED
        )
        stopper.cancel()
        if work not in done:
            ended = "interrupted" if stop.is_set() else f"the run's budget of {budget:.0f}s ran out"
            work.cancel()
        await asyncio.gather(work, stopper, return_exceptions=True)
    finally:
        await rt.close()
    if not work.cancelled() and work.exception() is not None:
        raise work.exception()  # type: ignore[misc]  # a bug (or the progress callback's error)
    out = [
        results.get(i) or unmeasured(t, f"not measured: {ended}", settings)
        for i, t in enumerate(targets)
    ]
    return out, ended
