"""The sampling loop: on the grid, one poll at a time, rows kept until the disk takes them.

A poll that fails as a whole (the API is down, or any unforeseen error) or partly (a node, a VM) is
counted and logged, and the next tick comes as scheduled. Rows that cannot be written (a full disk) are
kept in memory, up to MAX_BACKLOG_ROWS, and written first on the next tick: a sample is lost only if the
disk stays full for long enough to exhaust that backlog, and then the loss is logged with its size.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from ..kube import KubeError
from ..schedule import next_tick
from .csvstore import CsvStore
from .sample import Sample
from .state import LiveState

log = logging.getLogger(__name__)

MAX_BACKLOG_ROWS = 200_000


class SampleSource(Protocol):
    """What the poller samples from: the kubelet, exec and procfs sources."""

    name: str
    skipped: int  # VMs (or nodes) the last poll had to leave out, each with a log line

    def poll(self, at: datetime) -> Awaitable[list[Sample]]: ...


class Poller:
    def __init__(
        self,
        source: SampleSource,
        store: CsvStore,
        state: LiveState,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._store = store
        self._state = state
        self._interval = interval
        self._clock = clock
        self._backlog: list[Sample] = []

    async def run(self, stop: asyncio.Event) -> None:
        start = self._clock()
        previous: float | None = None
        while not stop.is_set():
            tick = next_tick(start, self._interval, previous, self._clock())
            if tick.skipped:
                log.warning("poll overran the interval, samples skipped", extra={"skipped": tick.skipped})
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, tick.at - self._clock()))
                return
            except TimeoutError:
                pass
            previous = tick.at
            await self.poll_once(datetime.now(UTC), tick.skipped)
            self._state.attempt_finished(self._interval)  # /healthz: the loop is not stuck

    async def poll_once(self, at: datetime, skipped: int = 0) -> list[Sample]:
        began = self._clock()
        try:
            samples = await self._source.poll(at)
        except KubeError as exc:
            log.error("poll failed", extra={"source": self._source.name, "error": str(exc)})
            self._state.collector.health.failures += 1
            return []
        except Exception as exc:  # a bug or an answer nobody foresaw: this poll fails, the process goes on
            log.exception("poll failed", extra={"source": self._source.name, "error": repr(exc)})
            self._state.collector.health.failures += 1
            return []
        self._write(samples)
        duration = self._clock() - began
        self._state.publish(samples, duration, self._source.skipped, skipped)
        log.debug("polled", extra={"samples": len(samples), "duration_s": round(duration, 3)})
        return samples

    def _write(self, samples: list[Sample]) -> None:
        rows = self._backlog + samples
        try:
            self._store.append(rows)
        except OSError as exc:
            dropped = max(0, len(rows) - MAX_BACKLOG_ROWS)
            self._backlog = rows[dropped:]
            log.error(
                "cannot write mem-stats.csv, keeping the rows for the next poll",
                extra={"error": str(exc), "backlog_rows": len(self._backlog), "dropped_rows": dropped},
            )
            return
        self._backlog = []
