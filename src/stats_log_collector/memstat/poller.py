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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ..kube import KubeError
from ..schedule import next_tick
from .csvstore import CsvStore
from .sample import Sample
from .state import LiveState
from .vm_figures import VmKey, VmMemory, vm_figures

log = logging.getLogger(__name__)

MAX_BACKLOG_ROWS = 200_000


class SampleSource(Protocol):
    """What the poller samples from: the kubelet, exec and procfs sources."""

    name: str
    skipped: int  # VMs (or nodes) the last poll had to leave out, each with a log line
    # What the last poll learnt of each VM's memory besides its samples (guest memory, the pod's
    # request and limit...): the per-VM figures are computed from it and the samples.
    vm_memory: Mapping[VmKey, VmMemory]

    def poll(self, at: datetime) -> Awaitable[list[Sample]]: ...


class Poller:
    def __init__(
        self,
        source: SampleSource,
        store: CsvStore,
        state: LiveState,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        vm_store: CsvStore | None = None,
    ) -> None:
        self._source = source
        self._state = state
        self._interval = interval
        self._clock = clock
        self._samples = _Writer(store)
        self._figures = _Writer(vm_store) if vm_store is not None else None

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
        figures = vm_figures(samples, self._source.vm_memory)
        self._samples.write(samples)
        if self._figures is not None:
            self._figures.write(figures)
        duration = self._clock() - began
        self._state.publish(samples, duration, self._source.skipped, skipped, figures)
        log.debug("polled", extra={"samples": len(samples), "duration_s": round(duration, 3)})
        return samples


class _Writer:
    """One CSV store and the rows it could not take yet (a full disk), written first next time."""

    def __init__(self, store: CsvStore) -> None:
        self._store = store
        self._backlog: list[Any] = []

    def write(self, new_rows: Sequence[Any]) -> None:
        rows = self._backlog + list(new_rows)
        try:
            self._store.append(rows)
        except OSError as exc:
            dropped = max(0, len(rows) - MAX_BACKLOG_ROWS)
            self._backlog = rows[dropped:]
            log.error(
                "cannot write %s, keeping the rows for the next poll",
                self._store.layout.name,
                extra={"error": str(exc), "backlog_rows": len(self._backlog), "dropped_rows": dropped},
            )
            return
        self._backlog = []
