"""System lookups under the CLI's event loop (uvloop) against a slow resolver, which only a
network namespace of the test's own can give (its resolv.conf names the lab's DNS server on
its loopback, answering every query after DELAY seconds).

The rule checked is libuv's, not ours: it runs getaddrinfo on at most half of its pool, and a
lookup it queues keeps its clock running. The turns `system.lookups` gives must be no more than
libuv runs at once (a lookup's clock would run in libuv's queue: answered in DELAY, it would
read 2 x DELAY), and no more lookups than the turns reach the resolver at once (2 x turns
lookups take two rounds of DELAY). On the rule before (as many turns as threads), the first
reads 1.0 s where the resolver took 0.5 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import own_namespace

ROOT = Path(__file__).resolve().parents[2]
DELAY = 0.5  # seconds the resolver takes to answer each query

# The lab's DNS server answering each query after DELAY: A queries with 192.0.2.1, other types
# with no record (NODATA).
RESOLVER = r"""
import asyncio, sys
from probe.lab.dnsserver import DNSServer

class Slow(DNSServer):
    keeps_queries = False

    def handle(self, query):
        a = query.question[0].rdtype == 1
        return [(float(sys.argv[1]), self.answer(query, ["192.0.2.1"] if a else []))]

async def main():
    await Slow("127.0.0.1", 53).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

# Twice as many lookups at once as the probe gives turns, as the CLI runs them.
CLIENT = r"""
import asyncio, json, time
import uvloop
from probe.measure import system

system.size_the_pool()  # as the runtime does

async def main():
    loop = asyncio.get_running_loop()
    turns = system.lookups(loop)
    start = time.perf_counter()
    found = await asyncio.gather(
        *(system.resolve(f"n{i}.slow.test", 5.0) for i in range(2 * turns))
    )
    print(json.dumps({
        "turns": turns,
        "wall": time.perf_counter() - start,
        "elapsed": [o.elapsed for o in found],
        "failures": [o.failure for o in found],
        "addresses": [list(o.addresses) for o in found],
    }))

uvloop.run(main())
"""


@pytest.fixture(scope="module")
def slow_resolver(netns_ok: None) -> Iterator[str]:
    """A namespace whose resolv.conf names a resolver on its loopback answering after DELAY."""
    conf = "nameserver 127.0.0.1\noptions timeout:5 attempts:1\n"
    with own_namespace("lookups", conf) as name:
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", RESOLVER, str(DELAY)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            yield name
        finally:
            server.kill()
            server.wait()


def lookups(namespace: str, pool: str | None) -> dict[str, Any]:
    """The client's figures, run in `namespace` with UV_THREADPOOL_SIZE `pool` (None: the
    runtime's own)."""
    env = {k: v for k, v in os.environ.items() if k != "UV_THREADPOOL_SIZE"}
    env["PYTHONPATH"] = str(ROOT)
    if pool is not None:
        env["UV_THREADPOOL_SIZE"] = pool
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", CLIENT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize("pool", [None, "5"], ids=["the-runtime's-pool", "five-threads"])
def test_each_lookup_reads_the_resolver_s_time_and_no_turn_waits_in_libuv(
    slow_resolver: str, pool: str | None
) -> None:
    seen = lookups(slow_resolver, pool)
    turns = seen["turns"]
    assert turns == (16 if pool is None else 3)
    assert seen["failures"] == [None] * (2 * turns)
    assert seen["addresses"] == [["192.0.2.1"]] * (2 * turns)
    # each counts from its turn: DELAY and a little, never a second DELAY spent in libuv's queue
    slowest = max(seen["elapsed"])
    assert DELAY <= slowest < 1.6 * DELAY, seen
    # and the turns are no more than the resolver sees at once: two rounds of DELAY
    assert seen["wall"] >= 1.9 * DELAY, seen
