"""A small KubeVirt cluster whose every log line is known, and readers of what the collector wrote.

``Scenario`` writes timestamped lines to launcher containers and to virt-handler logs (JSON lines about
each VM interleaved, klog text lines naming VMs, node lines about nobody) and remembers, per VM, which
lines must end up in which stream. ``collected`` reads back every window file of a VM, in window order.
Exactness is then one comparison: the collected lines equal the written lines, in order, no more.
"""

from __future__ import annotations

import gzip
import itertools
import time
from collections import defaultdict
from pathlib import Path

import pytest

from kubevirt_test_cluster import (
    KubeVirtCluster,
    PodRef,
    VmiRef,
    format_rfc3339_nano,
    handler_line,
    klog_line,
    launcher_line,
)
from kubevirt_test_cluster.objects import LAUNCHER_SHAPE_VERSION
from stats_log_collector.config import load
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.logs_collector.collector import Collector, RunSummary
from stats_log_collector.settings import KubeSettings, LogsCollectorSettings

FAST = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05)
NANOS = 1_000_000_000
StreamKey = tuple[str, str]  # (pod, container) or (handler pod, "")


class Scenario:
    def __init__(self, cluster: KubeVirtCluster, data_dir: Path) -> None:
        self.cluster = cluster
        self.data_dir = data_dir
        self.expected: dict[str, dict[StreamKey, list[bytes]]] = defaultdict(lambda: defaultdict(list))
        self.vmis: dict[str, VmiRef] = {}
        self.pods: dict[str, list[PodRef]] = {}
        self.handlers: dict[str, PodRef] = {}
        # stamps 0.37 s apart, starting 20 minutes ago: windows start in different seconds
        self._clock = itertools.count(time.time_ns() - 1200 * NANOS, 370_000_000)
        self._serial = itertools.count()

    def stamp(self) -> int:
        return next(self._clock)

    def node(self, name: str) -> None:
        self.cluster.add_node(name)
        self.handlers[name] = self.cluster.add_handler_pod(name)

    def vm(
        self,
        name: str,
        node: str,
        namespace: str = "vms",
        kubevirt_version: str = LAUNCHER_SHAPE_VERSION,
        init_lines: int = 0,
    ) -> VmiRef:
        """A VMI and its launcher pod as ``kubevirt_version`` shapes it; ``init_lines`` lines in each of
        its completed init containers (written before any run: they have exited)."""
        vmi = self.cluster.add_vmi(namespace, name, node)
        self.vmis[name] = vmi
        pod = self.cluster.add_launcher_pod(vmi, kubevirt_version=kubevirt_version)
        self.pods[name] = [pod]
        for container in pod.init_containers:
            self._write(name, pod, container, init_lines)
        return vmi

    def launcher(self, vm: str, lines: int = 3, pod: PodRef | None = None, same_stamp: bool = False) -> None:
        """``lines`` lines in each container of the VM's (current) pod; optionally all with one stamp."""
        pod = pod or self.pods[vm][-1]
        for container in pod.containers:
            self._write(vm, pod, container, lines, same_stamp)

    def _write(self, vm: str, pod: PodRef, container: str, lines: int, same_stamp: bool = False) -> None:
        stamp = self.stamp()
        for _ in range(lines):
            stamp = stamp if same_stamp else self.stamp()
            text = launcher_line(f"event {next(self._serial)}", uid=self.vmis[vm].uid, time_nanos=stamp)
            self.cluster.append_log(pod.namespace, pod.name, container, text, stamp)
            self.expected[vm][(pod.name, container)].append(f"{format_rfc3339_nano(stamp)} {text}".encode())

    def handler(self, node: str, about: list[str], text_lines: bool = True) -> None:
        """Interleaved handler lines on ``node``: JSON about each VM, text naming one, node noise."""
        pod = self.handlers[node]
        for vm in about:
            vmi = self.vmis[vm]
            entries: list[tuple[str | None, str]] = [
                (
                    None,
                    handler_line(
                        f"sync {next(self._serial)}", name=vmi.name, namespace=vmi.namespace, uid=vmi.uid
                    ),
                ),
                (None, klog_line("Node heartbeat succeeded")),
                (None, handler_line("Updating cluster config", pos="configuration.go:375")),
            ]
            if text_lines:
                entries.append(
                    (vm, klog_line(f"Processing vmi {vmi.namespace}/{vmi.name} {next(self._serial)}"))
                )
            for owner, text in [(vm if i == 0 else owner, text) for i, (owner, text) in enumerate(entries)]:
                stamp = self.stamp()
                self.cluster.append_log(pod.namespace, pod.name, "virt-handler", text, stamp)
                if owner is not None:
                    line = f"{format_rfc3339_nano(stamp)} {text}".encode()
                    self.expected[owner][(pod.name, "")].append(line)

    def folder(self, vm: str) -> Path:
        return self.data_dir / vm

    def collected(self, vm: str) -> dict[StreamKey, list[bytes]]:
        return collected(self.folder(vm))

    def assert_exact(self, vms: list[str] | None = None) -> None:
        for vm in vms or list(self.vmis):
            expected = {key: lines for key, lines in self.expected[vm].items() if lines}
            assert self.collected(vm) == expected, vm


def collected(folder: Path) -> dict[StreamKey, list[bytes]]:
    """Every window file of a VM folder, decompressed, concatenated per stream in window order."""
    streams: dict[StreamKey, list[bytes]] = defaultdict(list)
    if not folder.exists():
        return {}
    for path in sorted(folder.glob("*.log.gz"), key=lambda p: (p.name.rsplit(".", 3)[0], p.name)):
        parts = path.name.split(".")
        key = (parts[0], parts[1]) if len(parts) == 5 else (parts[0], "")
        streams[key] += gzip.decompress(path.read_bytes()).splitlines()
    return dict(streams)


def collector_settings(data_dir: Path, **env: str) -> LogsCollectorSettings:
    return load(LogsCollectorSettings, {}, {"DATA_DIR": str(data_dir), "NAMESPACE": "vms", **env})


async def collect(
    cluster: KubeVirtCluster, data_dir: Path, request_timeout: float = 5.0, **env: str
) -> RunSummary:
    """One run, in this process, against the test cluster."""
    kube = KubeSettings(kube_api_url=cluster.url, kube_request_timeout_secs=request_timeout, kube_retries=1)
    client = await KubeClient.connect(kube, FAST)
    collector = Collector(client, collector_settings(data_dir, **env))
    collector.open()
    try:
        return await collector.run()
    finally:
        collector.close()
        await client.close()


@pytest.fixture
def scenario(kubevirt_cluster: KubeVirtCluster, tmp_path: Path) -> Scenario:
    built = Scenario(kubevirt_cluster, tmp_path / "data")
    built.node("node-1")
    built.node("node-2")
    return built
