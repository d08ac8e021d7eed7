"""memstat's live state: what the poller publishes and the HTTP server reads, apart from both.

Health has two questions with two different cures. ``/healthz`` (liveness): has the poll loop finished
an attempt, good or bad, lately? If not, the loop is stuck and a restart helps. ``/readyz`` (readiness):
has a poll succeeded lately? If not, the API (or /proc) is failing, a restart would not help, and the
samples served are stale.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from .metrics import MemstatCollector
from .sample import Sample
from .series import PROCESS_LEVELS, RETENTION_SECS, SeriesCache
from .vm_figures import VmFigures, VmKey

MISSED_POLLS = 3  # polls in a row that may be missing before health or readiness fails
FORGET_EVERY_SECS = 3600  # how often VMs gone for longer than the series keep are forgotten


@dataclasses.dataclass
class LiveState:
    """What the poller publishes for the server: the latest poll's samples, and how polling goes."""

    collector: MemstatCollector = dataclasses.field(default_factory=MemstatCollector)
    series: SeriesCache = dataclasses.field(default_factory=SeriesCache)
    # The per-VM page's series per process: kept at PROCESS_LEVELS, from polls only (not seeded).
    process_series: SeriesCache = dataclasses.field(default_factory=lambda: SeriesCache(PROCESS_LEVELS))
    # Every VM polled since the start, by its last figures: the page of a VM that stopped or moved away
    # keeps showing its history for as long as the series hold it (RETENTION_SECS).
    last_seen: dict[VmKey, VmFigures] = dataclasses.field(default_factory=dict)
    _next_forget: float = dataclasses.field(default=0.0, init=False)
    # How long one attempt may wait on the API beyond its interval: KUBE_REQUEST_TIMEOUT_SECS per try.
    request_timeout_s: float = 30.0
    # POLL_INTERVAL_SECS; the poller reports its own with every attempt (this is the setting's default).
    interval_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    started: float = dataclasses.field(init=False)
    last_attempt: float | None = dataclasses.field(default=None, init=False)
    last_success: float | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def ready(self) -> bool:
        return self.not_ready() is None

    def not_ready(self) -> str | None:
        """Why ``/readyz`` fails (no good poll for MISSED_POLLS intervals), or None."""
        if self.last_success is None:
            return "waiting for the first good poll"
        silent = self.clock() - self.last_success
        if silent > MISSED_POLLS * self.interval_s:
            return f"no good poll for {silent:.0f} s"
        return None

    def not_alive(self) -> str | None:
        """Why ``/healthz`` fails (the loop finished no attempt for too long: it is stuck), or None."""
        since = self.last_attempt if self.last_attempt is not None else self.started
        silent = self.clock() - since
        if silent > MISSED_POLLS * self.interval_s + self.request_timeout_s:
            return f"the poll loop has finished no poll for {silent:.0f} s"
        return None

    def attempt_finished(self, interval_s: float) -> None:
        """The poll loop finished a poll, good or bad; polls run every ``interval_s``."""
        self.interval_s = interval_s
        self.last_attempt = self.clock()

    def publish(
        self,
        samples: Sequence[Sample],
        duration_s: float,
        failures: int,
        skipped_ticks: int,
        figures: Sequence[VmFigures] = (),
    ) -> None:
        health = self.collector.health
        health.polls += 1
        health.failures += failures
        health.skipped_ticks += skipped_ticks
        health.last_duration_s = duration_s
        health.last_samples = len(samples)
        health.last_success_unix = time.time()
        self.last_success = self.clock()
        self.collector.latest = list(samples)
        self.collector.latest_vms = list(figures)
        self.series.add_samples(samples)
        self.series.add_figures(figures)
        self.process_series.add_processes(samples)
        for vm in figures:
            self.last_seen[(vm.namespace, vm.vm)] = vm
        if figures and (now := figures[0].timestamp.timestamp()) >= self._next_forget:
            self._next_forget = now + FORGET_EVERY_SECS
            old = [
                key for key, vm in self.last_seen.items() if vm.timestamp.timestamp() < now - RETENTION_SECS
            ]
            for key in old:  # their series are gone too
                del self.last_seen[key]
