"""The timeout of a network wait, patient with a starved event loop.

`asyncio.timeout` cancels the waiting task when its timer comes due — also when the process got
no CPU for a while (a small, loaded VM) and the answer it waits for is already in the socket: the
loop then sees the timer and the data in the same turn, and the timer wins. That would turn a
busy vantage into a censored network ("TLS timeout", "HTTP stall"). So here a timer that comes
due first looks once more, one loop turn later, after the loop has polled its sockets: what had
arrived by then is read, and only a wait that is still waiting fails. Data that arrived while
the process was starved counts as in time — a late answer called in time costs nothing, a
timely one called late would be a false block.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Patient:
    """`async with within(seconds):` — `asyncio.timeout`, one loop turn more patient."""

    def __init__(self, delay: float) -> None:
        self._delay = max(0.0, delay)
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._looked = False
        self._expired = False
        self._cancelling = 0

    async def __aenter__(self) -> Patient:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a timeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = asyncio.get_running_loop().call_later(self._delay, self._due)
        return self

    def _due(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._looked:
            # one turn later: the sockets polled, the tasks their data woke run first
            self._looked = True
            self._handle = loop.call_later(0, self._due)
            return
        self._handle = None
        self._expired = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        assert self._task is not None
        if (
            self._expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc


def within(seconds: float) -> Patient:
    """The timeout of one network wait (see the module docstring)."""
    return Patient(seconds)
