"""A network wait's timeout on a starved event loop (a small, loaded VM): what arrived in time
is read, not called a timeout; a wait still waiting fails on time; a cancellation from outside
stays one. On asyncio's loop and on uvloop's (the CLI's), whose turns are ordered differently."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from probe.measure.clock import within

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run(loop: str, main: Callable[[], Coroutine[Any, Any, object]]) -> object:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(main())


def starve(seconds: float) -> None:
    """What another process hogging the CPU does to this one's loop: nothing runs."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("loop", LOOPS)
def test_a_byte_that_arrived_while_the_loop_was_starved_is_read(loop: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            time.sleep(0.1)
            conn.sendall(b"x")  # well inside the 0.5 s the reader waits
            time.sleep(2)
            conn.close()

        threading.Thread(target=serve, daemon=True).start()

        async def main() -> bytes:
            reader, writer = await asyncio.open_connection(*listener.getsockname())
            asyncio.get_running_loop().call_later(0.05, starve, 1.0)  # past the deadline
            try:
                async with within(0.5):
                    return await reader.read(1)
            finally:
                writer.close()

        assert run(loop, main) == b"x"


@pytest.mark.parametrize("loop", LOOPS)
def test_a_wait_still_waiting_times_out_on_time_and_a_cancel_stays_a_cancel(loop: str) -> None:
    async def main() -> tuple[float, bool]:
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            async with within(0.2):
                await asyncio.sleep(5)
        took = time.perf_counter() - start

        async def inner() -> None:
            async with within(5):
                await asyncio.sleep(5)

        task = asyncio.ensure_future(inner())
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return took, True
        return took, False

    took, cancelled = run(loop, main)  # type: ignore[misc]
    assert 0.19 <= took < 2.0 and cancelled  # libuv keeps time in milliseconds
