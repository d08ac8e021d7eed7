"""The procfs source (MEMSTAT_SOURCE=procfs): figures from this node's /proc, names from the API.

The API only names what /proc shows (pod UID -> VM, pod, namespace: this node's launcher pods, kept from
a watch by the ``Inventory``);
without Kubernetes credentials VMs are named from QEMU's ``-name``, a supported use on a plain host.
Why: docs/memstat.md, "procfs: the node's /proc, read directly".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime

from ..kube import KubeError, Pod
from ..settings import MemstatSettings
from .inventory import VmInventory
from .procfs import Scanner, cgroup_root_for, poll_procfs
from .sample import Sample, VmPod
from .vm_figures import VmKey, VmMemory

log = logging.getLogger(__name__)


class ProcfsSource:
    name = "procfs"

    def __init__(self, settings: MemstatSettings, inventory: VmInventory | None, node: str) -> None:
        self._settings = settings
        self._inventory = inventory
        self._node = node
        self._pods: dict[str, VmPod] = {}
        self._expected: list[VmPod] = []  # this node's running launcher pods
        self._scanner = Scanner(
            settings.proc_root, settings.process_names, pss_max_bytes=settings.procfs_pss_max_bytes
        )
        self._cgroup_root = cgroup_root_for(settings.proc_root)
        self._pod_memory: dict[VmKey, VmMemory] = {}  # the launcher pods' requests and limits (API)
        self.skipped = 0
        self.vm_memory: Mapping[VmKey, VmMemory] = {}

    async def poll(self, at: datetime) -> list[Sample]:
        if self._inventory is not None:
            try:
                self._pods = self._pod_index(await self._inventory.launcher_pods())
            except KubeError as exc:  # keep naming with what we knew: figures still come from /proc
                log.warning("cannot refresh pod names, using the last known", extra={"error": str(exc)})
        resolver = self._pods if self._inventory is not None else None
        settings = self._settings
        samples, from_proc = await asyncio.to_thread(
            poll_procfs,
            self._scanner,
            at,
            resolver,
            self._node,
            pss=settings.procfs_pss,
            cgroup_root=self._cgroup_root,
        )
        self.vm_memory = {key: self._merge(key, found) for key, found in from_proc.items()}
        missing = len(self._report_missing(samples)) if resolver is not None else 0
        self.skipped = missing + self._scanner.failed
        return samples

    def _merge(self, key: VmKey, from_proc: VmMemory) -> VmMemory:
        """The guest's RAM from QEMU's -m; the pod's request and limit from the API, the limit from
        QEMU's cgroup where the API has none (no Kubernetes, or a pod without a limit)."""
        pod = self._pod_memory.get(key)
        if pod is None:
            return from_proc
        limit = pod.memory_limit_bytes if pod.memory_limit_bytes is not None else from_proc.memory_limit_bytes
        return dataclasses.replace(
            from_proc, memory_request_bytes=pod.memory_request_bytes, memory_limit_bytes=limit
        )

    def _report_missing(self, samples: list[Sample]) -> list[VmPod]:
        """This node's running launcher pods (as last listed) with no process sampled: a log line each."""
        sampled = {(s.namespace, s.pod) for s in samples}
        missing = [pod for pod in self._expected if (pod.namespace, pod.pod) not in sampled]
        for pod in missing:
            log.warning(
                "VM skipped for this sample: no matching process",
                extra={"namespace": pod.namespace, "vm": pod.vm, "pod": pod.pod, "node": pod.node},
            )
        return missing

    def _pod_index(self, pods: list[Pod]) -> dict[str, VmPod]:
        index = {
            pod.uid: VmPod(
                pod.namespace, pod.labels.get("vm.kubevirt.io/name", pod.name), pod.name, pod.node or ""
            )
            for pod in pods
        }
        self._expected = [index[pod.uid] for pod in pods if pod.phase == "Running" and pod.node == self._node]
        self._pod_memory = {
            (index[pod.uid].namespace, index[pod.uid].vm): VmMemory(
                None, pod.memory_request_bytes, pod.memory_limit_bytes
            )
            for pod in pods
            if pod.phase == "Running" and pod.node == self._node
        }
        return index
