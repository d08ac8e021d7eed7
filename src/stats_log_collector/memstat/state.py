"""memstat's live state: what the poller publishes and the HTTP server reads, apart from both."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from .metrics import MemstatCollector
from .sample import Sample
from .series import SeriesCache


@dataclasses.dataclass
class LiveState:
    """What the poller publishes for the server: the latest poll's samples, and whether one succeeded."""

    collector: MemstatCollector = dataclasses.field(default_factory=MemstatCollector)
    series: SeriesCache = dataclasses.field(default_factory=SeriesCache)

    @property
    def ready(self) -> bool:
        """A poll has succeeded (failed polls count as failures, not polls)."""
        return self.collector.health.polls > 0

    def publish(
        self, samples: Sequence[Sample], duration_s: float, failures: int, skipped_ticks: int
    ) -> None:
        health = self.collector.health
        health.polls += 1
        health.failures += failures
        health.skipped_ticks += skipped_ticks
        health.last_duration_s = duration_s
        health.last_samples = len(samples)
        health.last_success_unix = time.time()
        self.collector.latest = list(samples)
        self.series.add_samples(samples)
