"""The procfs source (MEMSTAT_SOURCE=procfs): figures from this node's /proc, names from the API.

The API only names what /proc shows (pod UID -> VM, pod, namespace: one list per namespace per poll);
without Kubernetes credentials VMs are named from QEMU's ``-name``, a supported use on a plain host.
Why: docs/memstat.md, "procfs: the node's /proc, read directly".
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from ..kube import KubeClient, KubeError
from ..settings import MemstatSettings
from .procfs import Scanner, sample_procfs
from .sample import Sample, VmPod

log = logging.getLogger(__name__)


class ProcfsSource:
    name = "procfs"

    def __init__(self, settings: MemstatSettings, client: KubeClient | None, node: str) -> None:
        self._settings = settings
        self._client = client
        self._node = node
        self._pods: dict[str, VmPod] = {}
        self._expected: list[VmPod] = []  # this node's running launcher pods
        self._scanner = Scanner(
            settings.proc_root, settings.process_names, pss_max_bytes=settings.procfs_pss_max_bytes
        )
        self.skipped = 0

    async def poll(self, at: datetime) -> list[Sample]:
        if self._client is not None:
            try:
                self._pods = await self._pod_index(self._client)
            except KubeError as exc:  # keep naming with what we knew: figures still come from /proc
                log.warning("cannot refresh pod names, using the last known", extra={"error": str(exc)})
        resolver = self._pods if self._client is not None else None
        settings = self._settings
        samples = await asyncio.to_thread(
            sample_procfs,
            self._scanner,
            settings.process_names,
            at,
            resolver,
            self._node,
            pss=settings.procfs_pss,
        )
        missing = len(self._report_missing(samples)) if resolver is not None else 0
        self.skipped = missing + self._scanner.failed
        return samples

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

    async def _pod_index(self, client: KubeClient) -> dict[str, VmPod]:
        pods = await client.list_launcher_pods(self._settings.namespace)
        index = {
            pod.uid: VmPod(
                pod.namespace, pod.labels.get("vm.kubevirt.io/name", pod.name), pod.name, pod.node or ""
            )
            for pod in pods
        }
        self._expected = [index[pod.uid] for pod in pods if pod.phase == "Running" and pod.node == self._node]
        return index
