"""The probe's client for the control helper (`censorprobe control`, see `probe.helper`).

The helper's answer is someone else's data: whatever it sends (garbage, deep nesting, fields of a
newer version), the probe keeps its own result and says why the control could not be used.
"""

from __future__ import annotations

import json
import time

from probe.engine.deadline import Deadline
from probe.engine.runtime import Runtime
from probe.measure.clock import within
from probe.measure.failure import describe
from probe.model import MAX_CONTROL_ADDRESSES, Control, ControlRequest, Target, from_json

MAX_ANSWER_BYTES = 8 << 20
MIN_HELPER_DEADLINE = 0.5  # the least time a helper is asked to measure in


async def ask(rt: Runtime, target: Target, addresses: list[str], deadline: Deadline) -> Control:
    """The control's view of `target`; one retry, then a Control that says why it failed. Waits
    as long as the target's `deadline` awaits the control; the helper is told how long it has
    (`answer_within`, API version 4), and a helper of an earlier version how long its
    measurement may take, its HTTP/3 path left out (`deadline`)."""
    import aiohttp

    from probe.measure.doh import read_capped

    s = rt.settings
    assert s.control is not None
    url = s.control.rstrip("/") + "/api/v1/measure"
    headers = {"Authorization": f"Bearer {s.control_token}"} if s.control_token else {}
    quic = target.quic or s.quic
    allowed = deadline.helper_time()
    # an earlier helper measures HTTP/3 after its deadline, within its own QUIC deadline
    theirs = s.quic_deadline if quic != "never" and target.scheme == "https" else 0.0
    measurement = round(max(MIN_HELPER_DEADLINE, allowed - theirs), 3)
    request = ControlRequest(
        target.url,
        tuple(addresses[:MAX_CONTROL_ADDRESSES]),
        measurement,
        quic,
        round(max(MIN_HELPER_DEADLINE, allowed), 3),
    )
    body = request.to_json()
    end = time.perf_counter() + deadline.control_wait()
    error = ""
    for attempt in range(2):
        start = time.perf_counter()
        try:
            async with (
                within(max(0.0, end - start)),
                rt.session().post(url, json=body, headers=headers) as resp,
            ):
                text = await read_capped(resp, MAX_ANSWER_BYTES)
            if resp.status != 200:
                error = f"HTTP {resp.status}: {text[:200].decode('utf-8', 'replace')}"
                if resp.status < 500:
                    break  # our request is wrong: asking again will not help
                continue
            doc = json.loads(text)
            if not isinstance(doc, dict) or not isinstance(doc.get("control"), dict):
                raise ValueError("no 'control' object in the answer")
            return from_json(Control, doc["control"])
        except (ValueError, TypeError, RecursionError) as exc:
            error = f"unusable answer: {describe(exc)}"
            break
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = (
                f"{describe(exc)} after {time.perf_counter() - start:.1f}s (attempt {attempt + 1})"
            )
    return Control(error=f"{url}: {error}")
