"""Time, computed once: a target's `Deadline` (its absolute end, and where each phase of its
schedule ends), and a phase's `Budget` (each step's timeout, or what is left of the phase).

A target's schedule is TARGET_BOUND_FORMULA, in this order: the first measurement (its
deadline); the control's answer, awaited until the first measurement's deadline and
CONTROL_GRACE more (the helper is told how long it has, and fits its own HTTP/3 path into it);
the HTTP/3 path (the QUIC deadline); each re-measurement's pause and deadline; the ClientHello
variants (their deadline), after the last measurement. Everything that
waits for a target — the schedule, the control's client and the helper, a `/probe` scrape —
asks the Deadline, so no wait outlasts the bound (dnspython's `_compute_timeout` pattern).
"""

from __future__ import annotations

import time

from probe.config import CONTROL_GRACE, Settings
from probe.model import Target
from probe.vocabulary import Step

# the control's answer must be on its way this long before the probe stops waiting for it
CONTROL_MARGIN = 1.0


class Budget:
    """One phase's time: each step gets its own timeout, or what is left if that is less."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, seconds)
        self.end = time.perf_counter() + self.seconds
        self.cut: Step | None = None  # the last step given less than its own timeout

    def left(self) -> float:
        return self.end - time.perf_counter()

    def take(self, timeout: float, step: Step) -> float:
        left = self.left()
        if left < timeout:
            self.cut = step
        return max(0.0, min(timeout, left))

    def ran_out(self) -> Step | None:
        """The step during which the deadline ran out, if it did."""
        return self.cut if self.left() <= 0.0 else None


class Deadline:
    """One target's schedule (see the module docstring). `within` shortens it (a scrape's
    timeout, the time a probe gave the helper): every phase then ends by that too; `measurement`
    caps one measurement's deadline (what a probe asked the helper for)."""

    def __init__(
        self,
        s: Settings,
        *,
        quic: bool,
        hello: bool,
        retries: int | None = None,
        within: float | None = None,
        measurement: float | None = None,
    ) -> None:
        self.settings = s
        self.retries = s.retries if retries is None else retries
        self.start = time.perf_counter()
        bound = s.bound(quic=quic, hello=hello, retries=self.retries)
        self.bound = bound if within is None else max(0.0, min(bound, within))
        self.end = self.start + self.bound
        self.measurement_cap = s.deadline if measurement is None else min(s.deadline, measurement)
        grace = CONTROL_GRACE if s.control else 0.0
        self.control_end = min(self.start + s.deadline + grace, self.end)

    @classmethod
    def of(
        cls,
        target: Target,
        s: Settings,
        *,
        retries: int | None = None,
        within: float | None = None,
        measurement: float | None = None,
    ) -> Deadline:
        """`target`'s schedule: its HTTP/3 path and ClientHello variants counted where their
        modes measure them."""
        return cls(
            s,
            quic=quic_mode(target, s) not in (None, "never"),
            hello=hello_mode(target, s) not in (None, "never"),
            retries=retries,
            within=within,
            measurement=measurement,
        )

    def left(self, until: float | None = None) -> float:
        return max(0.0, (self.end if until is None else until) - time.perf_counter())

    def measurement(self) -> Budget:
        """A measurement's budget: its deadline, or what is left."""
        return Budget(min(self.measurement_cap, self.left()))

    def pause(self) -> float:
        """The pause before a re-measurement, or what is left."""
        return min(self.settings.retry_pause, self.left())

    def control_wait(self) -> float:
        """How much longer the control's answer is awaited."""
        return self.left(self.control_end)

    def helper_time(self) -> float:
        """What the helper is told it has for its whole answer: until the probe stops waiting,
        less a margin for the answer's way back."""
        return max(0.0, self.control_wait() - CONTROL_MARGIN)

    def http3(self) -> Budget:
        """The HTTP/3 path's budget: the QUIC deadline, or what is left."""
        return Budget(min(self.settings.quic_deadline, self.left()))

    def hello(self) -> Budget:
        """The ClientHello variants' budget: their deadline, or what is left."""
        return Budget(min(self.settings.hello_deadline, self.left()))


def quic_mode(target: Target, s: Settings) -> str | None:
    """The target's HTTP/3 mode (its own `quic:`, else the settings'); None for http targets."""
    return (target.quic or s.quic) if target.scheme == "https" else None


def hello_mode(target: Target, s: Settings) -> str | None:
    """The target's ClientHello variants' mode (its own `clienthello:`, else the settings');
    None for http targets."""
    return (target.clienthello or s.clienthello) if target.scheme == "https" else None
