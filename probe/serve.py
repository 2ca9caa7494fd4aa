"""`censorprobe serve`: measure every target each interval, for Prometheus and the archive.

Rounds start `interval` apart with ±10% jitter (and a random first delay) so vantages do not run
in lockstep. The targets file is reloaded when it changes or on SIGHUP; a broken file keeps the
old list and logs why. SIGTERM or SIGINT abandons the round in progress (what finished is kept)
and exits within seconds.
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

from aiohttp import web

from probe import runner
from probe.archive import Archive
from probe.config import Config, ConfigError, Settings, load
from probe.exporter import ResultsCollector, make_app
from probe.model import Result, Target, is_special

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
    ) -> None:
        """`configure` applies the command line to a freshly loaded targets file."""
        self.probe_targets = probe_targets
        self.targets_path = Path(targets_path)
        self.configure = configure
        self.config = configure(load(targets_path))  # a broken file at start is fatal
        self.urls = {t.url for t in self.config.targets}
        self.collector = ResultsCollector(self.settings.vantage, self.settings.country)
        self.archive = Archive(data_dir) if data_dir else None
        self.stop = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.rounds = 0
        self.round_started: float | None = None
        self.last_round_seconds: float | None = None
        self.measured_in_round = 0
        self._stamp = self._file_stamp()

    @property
    def settings(self) -> Settings:
        return self.config.settings

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
        return started is None or time.time() - started < 3 * self.settings.interval + 60

    def probe_allowed(self, target: Target) -> tuple[bool, Callable[[str], bool] | None]:
        if target.url in self.urls:
            return True, None
        if self.probe_targets != "any":
            return False, None
        ranges = self.settings.public_ranges
        return True, lambda address: not is_special(address, ranges)

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.targets_path.stat()
        except OSError:
            return None
        return st.st_mtime, st.st_size

    def reload(self) -> None:
        """Read the targets file again; keep the old list if the new one is broken."""
        self._stamp = self._file_stamp()
        try:
            config = self.configure(load(self.targets_path))
        except ConfigError as exc:
            log.error("targets not reloaded, keeping %d targets: %s", len(self.config.targets), exc)
            return
        self.config = config
        self.urls = {t.url for t in config.targets}
        self.collector.relabel(config.settings.vantage, config.settings.country)
        self.collector.keep_only(self.urls)
        log.info("reloaded %s: %d targets", self.targets_path, len(config.targets))

    def _record(self, result: Result, done: int, total: int) -> None:
        self.measured_in_round = done
        # a round started before a reload may finish a target the new list no longer has: its
        # series must not come back (the measurement is still evidence, so it is archived)
        if result.measurement.target.url in self.urls:
            self.collector.record(result)
        if self.archive is not None:
            try:
                self.archive.append(result.to_json())
            except OSError as exc:  # a full disk must not stop the measurements
                log.error("archive: cannot write under %s: %s", self.archive.directory, exc)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_PERIOD)
            if self.reload_requested.is_set() or self._file_stamp() != self._stamp:
                self.reload_requested.clear()
                self.reload()

    async def _rounds(self) -> None:
        interval = self.settings.interval
        _settle_memory()
        await self._sleep(random.uniform(0, min(30.0, interval * JITTER)))
        while not self.stop.is_set():
            started = time.monotonic()
            self.rounds += 1
            self.round_started = time.time()
            self.measured_in_round = 0
            config = self.config
            try:
                _, ended = await runner.run(
                    config.targets, config.settings, stop=self.stop, progress=self._record
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
            wait = self.settings.interval * random.uniform(1 - JITTER, 1 + JITTER)
            await self._sleep(max(0.0, wait - (time.monotonic() - started)))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()

    async def run(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        app_runner = web.AppRunner(make_app(self), handle_signals=False, access_log=None)
        await app_runner.setup()
        await web.TCPSite(app_runner, host, port).start()
        log.info(
            "serving %d targets on http://%s:%d/ every %.0fs",
            len(self.config.targets),
            host,
            port,
            self.settings.interval,
        )
        watcher = asyncio.ensure_future(self._watch())
        try:
            await self._rounds()
        finally:
            watcher.cancel()
            await app_runner.cleanup()
            if self.archive is not None:
                self.archive.close()
            log.info("stopped")
