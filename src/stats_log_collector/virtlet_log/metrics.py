"""virtlet-log's Prometheus metrics: the watcher's live counters, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .watcher import ConsoleLogWatcher


class WatcherCollector(Collector):
    def __init__(self, watcher: ConsoleLogWatcher) -> None:
        self._watcher = watcher

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._watcher.stats
        yield CounterMetricFamily("virtlet_log_lines", "Log lines written to kubelet log files", stats.lines)
        yield CounterMetricFamily("virtlet_log_read_bytes", "Console bytes read", stats.bytes_read)
        yield CounterMetricFamily(
            "virtlet_log_written_bytes", "Bytes written to kubelet log files", stats.bytes_written
        )
        yield CounterMetricFamily(
            "virtlet_log_errors", "Errors (I/O, full disk, files skipped, unwatchable dirs)", stats.errors
        )
        yield GaugeMetricFamily("virtlet_log_files", "Console files followed", self._watcher.files)
        yield GaugeMetricFamily(
            "virtlet_log_waiting_files",
            "Console files waiting for their pod log directory",
            self._watcher.waiting,
        )
        yield GaugeMetricFamily("virtlet_log_behind_bytes", "Console bytes not read yet", stats.behind)


def registry_for(watcher: ConsoleLogWatcher) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WatcherCollector(watcher))
    return registry
