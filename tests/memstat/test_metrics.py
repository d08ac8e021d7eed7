"""memstat's /metrics text: latest figures per VM process, health, vanished VMs gone."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from stats_log_collector.memstat.metrics import MemstatCollector, PollHealth, registry_for
from stats_log_collector.memstat.sample import Sample

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)


def sample(vm: str, rss: int, pss: int | None = None) -> Sample:
    pod = f"virt-launcher-{vm}-x"
    return Sample(NOW, "default", vm, pod, "node1", "procfs", "qemu-kvm", 42, rss, pss_bytes=pss)


def test_latest_figures_and_health() -> None:
    collector = MemstatCollector(
        [sample("vm1", 215_000_000, pss=200_000_000)], PollHealth(polls=3, failures=1)
    )
    text = generate_latest(registry_for(collector)).decode()
    labels = 'namespace="default",node="node1",pod="virt-launcher-vm1-x",process="qemu-kvm",vm="vm1"'
    assert f"memstat_rss_bytes{{{labels}}} 2.15e+08" in text
    assert f"memstat_pss_bytes{{{labels}}} 2e+08" in text
    assert "memstat_working_set_bytes{" not in text  # unknown for this source: no series
    assert "memstat_polls_total 3.0" in text and "memstat_poll_failures_total 1.0" in text


def test_a_vanished_vm_has_no_series_after_the_next_poll() -> None:
    collector = MemstatCollector([sample("vm1", 1), sample("vm2", 2)])
    registry = registry_for(collector)
    assert 'vm="vm2"' in generate_latest(registry).decode()
    collector.latest = [sample("vm1", 1)]
    assert 'vm="vm2"' not in generate_latest(registry).decode()
