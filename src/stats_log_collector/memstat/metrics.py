"""memstat's Prometheus metrics: the latest sample of every VM process or container, and poll health.

A custom Collector reads the latest poll at scrape time instead of keeping Gauge children, so a VM that
went away simply has no series in the next scrape: nothing to remember to delete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .sample import Sample

LABELS = ("namespace", "vm", "pod", "node", "process")
# (metric name, Sample field, help)
FIGURES = (
    ("memstat_rss_bytes", "rss_bytes", "Resident set size of the VM's process or container"),
    ("memstat_working_set_bytes", "working_set_bytes", "Working set of the VM's container (kubelet source)"),
    ("memstat_pss_bytes", "pss_bytes", "Proportional set size of the VM's process (procfs source)"),
    ("memstat_swap_bytes", "swap_bytes", "Swapped-out memory of the VM's process"),
)


@dataclasses.dataclass
class PollHealth:
    polls: int = 0
    failures: int = 0  # VMs or nodes skipped in a poll (a failed poll as a whole counts once)
    skipped_ticks: int = 0
    last_duration_s: float = 0.0
    last_samples: int = 0
    last_success_unix: float = 0.0


class MemstatCollector(Collector):
    def __init__(self, latest: Iterable[Sample] | None = None, health: PollHealth | None = None) -> None:
        self.latest: Sequence[Sample] = list(latest or ())
        self.health = health or PollHealth()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        for name, field, text in FIGURES:
            family = GaugeMetricFamily(name, text, labels=LABELS)
            for sample in self.latest:
                value = getattr(sample, field)
                if value is not None:
                    family.add_metric([getattr(sample, label) for label in LABELS], value)
            yield family
        health = self.health
        yield CounterMetricFamily("memstat_polls", "Polls run", health.polls)
        yield CounterMetricFamily(
            "memstat_poll_failures", "VMs or nodes skipped because of an error", health.failures
        )
        yield CounterMetricFamily(
            "memstat_skipped_ticks", "Sample times skipped because a poll overran", health.skipped_ticks
        )
        yield GaugeMetricFamily(
            "memstat_poll_duration_seconds", "Duration of the last poll", health.last_duration_s
        )
        yield GaugeMetricFamily(
            "memstat_last_poll_samples", "Rows written by the last poll", health.last_samples
        )
        yield GaugeMetricFamily(
            "memstat_last_success_timestamp_seconds",
            "When the last good poll ended",
            health.last_success_unix,
        )


def registry_for(collector: MemstatCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
