"""The kubelet Summary API behind ``GET /api/v1/nodes/{node}/proxy/stats/summary``.

One request per node returns the memory of every container on it (``rssBytes``,
``workingSetBytes``, ``usageBytes``), which is how a collector can watch a thousand VMs without a
thousand execs. The API server only proxies this to kubelet; kmock has nothing of it. The document
here carries the fields of the real one that a memory collector reads, with the figures tests set.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class ContainerMemory:
    rss_bytes: int
    working_set_bytes: int
    usage_bytes: int
    page_faults: int = 0
    major_page_faults: int = 0

    @classmethod
    def of(cls, rss_bytes: int, working_set_bytes: int, usage_bytes: int | None = None) -> ContainerMemory:
        usage = usage_bytes if usage_bytes is not None else working_set_bytes + working_set_bytes // 10
        return cls(
            rss_bytes,
            working_set_bytes,
            usage,
            page_faults=rss_bytes // 4096,
            major_page_faults=rss_bytes // MiB,
        )

    def document(self, at: str) -> dict[str, Any]:
        return {
            "time": at,
            "usageBytes": self.usage_bytes,
            "workingSetBytes": self.working_set_bytes,
            "rssBytes": self.rss_bytes,
            "pageFaults": self.page_faults,
            "majorPageFaults": self.major_page_faults,
        }


DEFAULT_MEMORY = ContainerMemory.of(12 * MiB, 16 * MiB)
MemoryKey = tuple[str, str, str]  # namespace, pod, container


def _total(memories: Iterable[ContainerMemory]) -> ContainerMemory:
    figures = list(memories)
    return ContainerMemory(
        sum(m.rss_bytes for m in figures),
        sum(m.working_set_bytes for m in figures),
        sum(m.usage_bytes for m in figures),
        sum(m.page_faults for m in figures),
        sum(m.major_page_faults for m in figures),
    )


def _pod_stats(
    pod: Mapping[str, Any], memory: Mapping[MemoryKey, ContainerMemory], at: str
) -> dict[str, Any]:
    meta = pod["metadata"]
    started = pod.get("status", {}).get("startTime", meta.get("creationTimestamp", at))
    figures = {
        spec["name"]: memory.get((meta["namespace"], meta["name"], spec["name"]), DEFAULT_MEMORY)
        for spec in _running_containers(pod.get("spec", {}))
    }
    containers = [
        {
            "name": name,
            "startTime": started,
            "cpu": {"time": at, "usageNanoCores": 1_500_000, "usageCoreNanoSeconds": 9_000_000_000},
            "memory": figure.document(at),
            "rootfs": {"time": at, "usedBytes": 36_864, "inodesUsed": 9},
            "logs": {"time": at, "usedBytes": 4_096, "inodesUsed": 1},
        }
        for name, figure in figures.items()
    ]
    total = _total(figures.values())
    return {
        "podRef": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid", "")},
        "startTime": started,
        "containers": containers,
        "cpu": {
            "time": at,
            "usageNanoCores": 1_500_000 * len(containers),
            "usageCoreNanoSeconds": 9_000_000_000 * len(containers),
        },
        "memory": {**total.document(at), "availableBytes": 0},
        "process_stats": {"process_count": 5 * len(containers)},
    }


def summary(
    node_name: str, pods: Iterable[Mapping[str, Any]], memory: Mapping[MemoryKey, ContainerMemory]
) -> dict[str, Any]:
    """The Summary document of one node, for the running pods given."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pod_stats = [_pod_stats(pod, memory, at) for pod in pods]
    node_total = _total(
        ContainerMemory(p["memory"]["rssBytes"], p["memory"]["workingSetBytes"], p["memory"]["usageBytes"])
        for p in pod_stats
    )
    system = ContainerMemory.of(400 * MiB, 600 * MiB)
    node_memory = ContainerMemory(
        node_total.rss_bytes + system.rss_bytes,
        node_total.working_set_bytes + system.working_set_bytes,
        node_total.usage_bytes + system.usage_bytes,
    )
    return {
        "node": {
            "nodeName": node_name,
            "systemContainers": [
                {
                    "name": "kubelet",
                    "startTime": at,
                    "memory": ContainerMemory.of(90 * MiB, 110 * MiB).document(at),
                },
                {
                    "name": "runtime",
                    "startTime": at,
                    "memory": ContainerMemory.of(60 * MiB, 80 * MiB).document(at),
                },
            ],
            "startTime": at,
            "cpu": {"time": at, "usageNanoCores": 250_000_000, "usageCoreNanoSeconds": 123_456_789_000},
            "memory": {
                **node_memory.document(at),
                "availableBytes": 64 * 1024 * MiB - node_memory.working_set_bytes,
            },
        },
        "pods": pod_stats,
    }


def _running_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers kubelet's Summary API reports for a running pod: native sidecars (init
    containers with restartPolicy Always, still running) and the regular containers."""
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    return [*sidecars, *spec.get("containers", [])]
