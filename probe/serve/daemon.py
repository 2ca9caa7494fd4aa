"""`censorprobe serve`: measure every target each interval, for Prometheus and the archive.

Rounds start `interval` apart with ±10% jitter (and a random first delay) so vantages do not run
in lockstep. One runtime serves the rounds and /probe; it is rebuilt when the targets file is
reloaded (on change or SIGHUP; read off the event loop; a broken file keeps the old list and logs
why). SIGTERM or SIGINT abandons the round in progress (what finished is kept) and exits within
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from probe.config import MAX_CONNECTIONS, Config, ConfigError, load
from probe.engine import canaries, schedule
from probe.engine.runtime import Runtime
from probe.httpd import Guard, serving
from probe.model import Result, Target
from probe.policy import AddressPolicy
from probe.serve.archive import Archive
from probe.serve.metrics import ResultsCollector
from probe.serve.web import make_app

log = logging.getLogger("censorprobe.serve")
WATCH_PERIOD = 2.0
JITTER = 0.1


def _settle_memory() -> None:
    """Collect now, between rounds, and move what survives out of the collector's sight.

    A full collection scans every tracked object: with the libraries' import-time objects and a
    round's results that is tens of milliseconds, during which nothing answers a scrape. What
    lives long (modules, the latest results) is frozen until the next round ends; frozen objects
    are still freed by reference counting, and unfreezing first lets the one full collection
    per round free any cycle among them."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Daemon:
    def __init__(
        self,
        targets_path: str,
        configure: Callable[[Config], Config],
        data_dir: str | None,
        probe_targets: str = "listed",
        *,
        token: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """`configure` applies the command line to a freshly loaded targets file; `token`, when
        set, guards /probe, /results and /result."""
        self.token = token
        self.max_connections = max_connections
        self.targets_path = Path(targets_path)
        self.configure = configure
        self.probe_targets = probe_targets
        self.config = configure(load(targets_path))  # a broken file at start is fatal
        for note in self.config.notes:
            log.warning("%s", note)
        self._listed(self.config)
        s = self.config.settings
        self.collector = ResultsCollector(s.vantage, s.country)
        self.archive = Archive(data_dir) if data_dir else None
        self.archive_problem: str | None = None
        self.stop = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.rounds = 0
        self.round_started: float | None = None
        self.last_round_seconds: float | None = None
        self.measured_in_round = 0
        self._stamp = self._file_stamp()
        self._runtime: Runtime | None = None
        self._any: Runtime | None = None  # /probe for unlisted URLs, under the helper's policy

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "the daemon has not started"
        return self._runtime

    def round_info(self) -> str:
        if self.round_started is not None:
            return (
                f"round {self.rounds} running: {self.measured_in_round}/"
                f"{len(self.config.targets)} measured"
            )
        if self.last_round_seconds is not None:
            rounds = f"{self.rounds} round" + ("s" if self.rounds != 1 else "")
            return f"{rounds}, the last took {self.last_round_seconds:.0f}s"
        return "waiting for the first round"

    def healthy(self) -> bool:
        """Alive, and no round has overrun three intervals."""
        started = self.round_started
        return started is None or time.time() - started < 3 * self.config.settings.interval + 60

    def not_ready(self) -> str | None:
        """Why the daemon cannot do its job now (the archive cannot be written), or None."""
        return self.archive_problem

    def probe_runtime(self, target: Target) -> Runtime | None:
        if target.url in self.urls:
            return self.runtime  # listed: measured exactly as a round measures it
        return self._any

    def _listed(self, config: Config) -> None:
        self.urls = {t.url for t in config.targets}  # what /probe measures as listed
        self.keys = {t.key for t in config.targets}  # what a round's results are kept under

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.targets_path.stat()
        except OSError:
            return None
        return st.st_mtime, st.st_size

    async def reload(self) -> None:
        """Read the targets file again (in a thread); keep the old list if the new one is broken."""
        self._stamp = self._file_stamp()
        try:
            config = self.configure(await asyncio.to_thread(load, self.targets_path))
            runtime = await Runtime.open(config.settings, previous=self.runtime)
        except ConfigError as exc:
            log.error("targets not reloaded, keeping %d targets: %s", len(self.config.targets), exc)
            return
        self.config, self._runtime = config, runtime
        for note in config.notes:
            log.warning("%s", note)
        if self._any is not None:
            self._any = runtime.under(AddressPolicy(config.settings.public_ranges))
        self._listed(config)
        self.collector.relabel(config.settings.vantage, config.settings.country)
        self.collector.keep_only(self.keys)
        log.info("reloaded %s: %d targets", self.targets_path, len(config.targets))

    def _record(self, index: int, result: Result) -> None:
        self.measured_in_round += 1
        json = result.dumps()
        # a round started before a reload may finish a target the new list no longer has: its
        # series must not come back (the measurement is still evidence, so it is archived)
        if result.measurement.target.key in self.keys:
            self.collector.record(result, json)
        if self.archive is None:
            return
        try:
            self.archive.append(json, result.finished)
        except OSError as exc:  # a full disk must not stop the measurements
            if self.archive_problem is None:
                log.error("archive: cannot write under %s: %s", self.archive.directory, exc)
            self.archive_problem = f"the archive cannot be written: {exc.strerror or exc}"
            self.collector.archive_error()
        else:
            if self.archive_problem is not None:
                log.info("archive: writing again under %s", self.archive.directory)
            self.archive_problem = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_PERIOD)
            if self.reload_requested.is_set() or self._file_stamp() != self._stamp:
                self.reload_requested.clear()
                await self.reload()

    async def _rounds(self) -> None:
        _settle_memory()
        await self._sleep(random.uniform(0, min(30.0, self.config.settings.interval * JITTER)))
        while not self.stop.is_set():
            started = time.monotonic()
            self.rounds += 1
            self.round_started = time.time()
            self.measured_in_round = 0
            config, runtime = self.config, self.runtime
            try:
                runtime.regime = await canaries.survey(runtime, previous=runtime.regime)
                self.collector.set_regime(runtime.regime)
                if self._any is not None:
                    self._any.regime = runtime.regime
                ended = await schedule.run(
                    config.targets,
                    runtime,
                    self._record,
                    count=len(config.targets),
                    stop=self.stop,
                )
            except Exception:  # a bug: log it, keep the daemon and its last results
                log.exception("round %d failed", self.rounds)
                ended = "failed"
            self.round_started = None
            _settle_memory()
            self.last_round_seconds = time.monotonic() - started
            log.info(
                "round %d: %d targets in %.1fs%s",
                self.rounds,
                len(config.targets),
                self.last_round_seconds,
                f" ({ended})" if ended else "",
            )
            wait = self.config.settings.interval * random.uniform(1 - JITTER, 1 + JITTER)
            await self._sleep(max(0.0, wait - (time.monotonic() - started)))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()

    async def run(self, host: str, port: int) -> None:
        s = self.config.settings
        self._runtime = await Runtime.open(s)
        if self.probe_targets == "any":
            self._any = self._runtime.under(AddressPolicy(s.public_ranges))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        try:
            async with serving(make_app(self), host, port, Guard(self.max_connections)):
                log.info(
                    "serving %d targets on http://%s:%d/ every %.0fs",
                    len(self.config.targets),
                    host,
                    port,
                    s.interval,
                )
                watcher = asyncio.ensure_future(self._watch())
                try:
                    await self._rounds()
                finally:
                    watcher.cancel()
        finally:
            if self.archive is not None:
                with contextlib.suppress(OSError):
                    self.archive.close()
            await self.runtime.close()
            log.info("stopped")
