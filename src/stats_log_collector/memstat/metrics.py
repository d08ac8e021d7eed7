"""memstat's Prometheus metrics: the latest sample of every VM process or container, poll health, and
how the watches that keep its VMs and pods are doing.

A custom Collector reads the latest poll at scrape time instead of keeping Gauge children, so a VM that
went away simply has no series in the next scrape: nothing to remember to delete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..kube import ObjectCache
from .sample import Sample
from .vm_figures import VmFigures

LABELS = ("namespace", "vm", "pod", "node", "process")
# (metric name, Sample field, help)
FIGURES = (
    ("memstat_rss_bytes", "rss_bytes", "Resident set size of the VM's process or container"),
    ("memstat_working_set_bytes", "working_set_bytes", "Working set of the VM's container (kubelet source)"),
    ("memstat_pss_bytes", "pss_bytes", "Proportional set size of the VM's process (procfs source)"),
    ("memstat_swap_bytes", "swap_bytes", "Swapped-out memory of the VM's process"),
)
# Per VM, without the pod: it changes at every migration (kubevirt#16090), which would start new series.
VM_LABELS = ("namespace", "vm", "node")
VM_FIGURES = (
    ("memstat_vm_guest_memory_bytes", "guest_memory_bytes", "The VM's guest RAM (VMI spec, or QEMU's -m)"),
    ("memstat_vm_measured_bytes", "measured_bytes", "The VM's measured memory (pod working set, or RSS sum)"),
    ("memstat_vm_overhead_bytes", "overhead_bytes", "Measured memory beyond the guest RAM"),
    ("memstat_vm_memory_limit_bytes", "memory_limit_bytes", "The memory limit of the VM's launcher pod"),
    ("memstat_vm_headroom_bytes", "headroom_bytes", "The pod's memory limit minus the measured memory"),
    (
        "memstat_vm_memory_request_bytes",
        "memory_request_bytes",
        "The memory request of the VM's launcher pod",
    ),
    (
        "memstat_vm_requested_overhead_bytes",
        "requested_overhead_bytes",
        "The pod's memory request minus the guest RAM: the overhead KubeVirt reserved",
    ),
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
        self.latest_vms: Sequence[VmFigures] = []
        self.health = health or PollHealth()
        self.caches: Sequence[ObjectCache] = []  # the inventory's, once it exists

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        for name, field, text in FIGURES:
            yield _gauge(name, text, LABELS, field, self.latest)
        for name, field, text in VM_FIGURES:
            yield _gauge(name, text, VM_LABELS, field, self.latest_vms)
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
        yield from _watch_families(self.caches)


# (metric name, ObjectCache counter, help); each labelled by the objects watched
WATCH_COUNTERS = (
    ("memstat_watch_lists", "lists", "Full lists of the watched objects (the first included)"),
    ("memstat_watch_relists_expired", "relists_410", "Lists again because the watch's version was too old"),
    ("memstat_watch_events", "events", "Watch events applied (added, modified, deleted)"),
    ("memstat_watch_bad_lines", "bad_lines", "Unusable watch lines or listed objects (each led to a list)"),
    ("memstat_watch_error_events", "error_events", "Watch ERROR events other than 410"),
)


def _watch_families(caches: Sequence[ObjectCache]) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    if not caches:
        return
    objects = GaugeMetricFamily("memstat_watch_objects", "Objects kept from the watch", labels=["objects"])
    synced = GaugeMetricFamily("memstat_watch_synced", "1 once the first list is in", labels=["objects"])
    for cache in caches:
        objects.add_metric([cache.what], len(cache))
        synced.add_metric([cache.what], int(cache.synced))
    yield objects
    yield synced
    for name, field, text in WATCH_COUNTERS:
        family = CounterMetricFamily(name, text, labels=["objects"])
        for cache in caches:
            family.add_metric([cache.what], getattr(cache, field))
        yield family


def _gauge(
    name: str, text: str, labels: Sequence[str], field: str, rows: Iterable[object]
) -> GaugeMetricFamily:
    """One gauge family: ``field`` of each row that knows it, labelled by the rows' ``labels``."""
    family = GaugeMetricFamily(name, text, labels=labels)
    for row in rows:
        value = getattr(row, field)
        if value is not None:
            family.add_metric([getattr(row, label) for label in labels], value)
    return family


def registry_for(collector: MemstatCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
