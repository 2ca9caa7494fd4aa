"""TCP: connect to one address, and classify why it failed."""

from __future__ import annotations

import asyncio
import time

from probe.measure.failure import classify
from probe.model import TCPObservation


async def connect(
    address: str, port: int, timeout: float
) -> tuple[TCPObservation, asyncio.StreamReader | None, asyncio.StreamWriter | None]:
    """Open a connection; the caller closes the writer it gets back."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
    except Exception as exc:
        failure, error = classify(exc)
        return (
            TCPObservation(address, port, time.perf_counter() - start, failure, error),
            None,
            None,
        )
    return TCPObservation(address, port, time.perf_counter() - start), reader, writer


async def close(writer: asyncio.StreamWriter | None) -> None:
    """Close without waiting on a peer that may never acknowledge."""
    if writer is None:
        return
    writer.close()
    try:
        async with asyncio.timeout(1):
            await writer.wait_closed()
    except Exception:  # the peer reset or vanished: nothing left to close
        pass
