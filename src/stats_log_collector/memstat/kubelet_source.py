"""The ``kubelet`` source: every VM's ``compute`` container memory from the node Summary API.

The default: one Summary request per node that runs a VM, whatever the number of VMs on it, instead of
execs per pod; a node or VM that cannot be read is skipped for that sample with one log line. Why:
docs/memstat.md, "kubelet: the node Summary API". :func:`samples_from_summary` is pure;
:func:`launchers` (VMs, pods and what the API says of their memory) builds the targets the shared
``Inventory`` (memstat/inventory.py) hands this source and the exec source, from watches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..kube.client import CREATED_BY_LABEL, VM_NAME_LABEL, KubeClient, match_launcher_pods
from ..kube.errors import KubeError, KubeUnavailable
from ..kube.models import JSON, Pod, Vmi
from .sample import Sample, VmPod
from .vm_figures import VmKey, VmMemory

if TYPE_CHECKING:
    from .inventory import VmInventory

log = logging.getLogger(__name__)

SOURCE = "kubelet"
CONTAINER = "compute"
DEFAULT_MAX_CONCURRENCY = 16


def launcher_targets(vmis: Iterable[Vmi], pods: Iterable[Pod]) -> list[VmPod]:
    """Each VMI paired with its active, running launcher pod; VMIs without one are left out."""
    return [target for target, _ in launchers(vmis, pods)]


def vm_memory_of(vmi: Vmi, pod: Pod) -> VmMemory:
    """What the API says of a VM's memory: the VMI's guest memory, its launcher pod's request and limit."""
    return VmMemory(vmi.guest_memory_bytes, pod.memory_request_bytes, pod.memory_limit_bytes)


def launchers(vmis: Iterable[Vmi], pods: Iterable[Pod]) -> list[tuple[VmPod, VmMemory]]:
    """Each VMI paired with its active, running launcher pod, and what they say of its memory.

    Pods are indexed once (by the VMI UID label, and by the VM's hostname label for older pods), so
    pairing is linear in the number of VMs rather than VMs x pods. ``match_launcher_pods`` then picks
    the active pod of a migrating VM (the one on the VMI's node).
    """
    by_uid: dict[tuple[str, str], list[Pod]] = defaultdict(list)
    by_name: dict[tuple[str, str], list[Pod]] = defaultdict(list)
    for pod in pods:
        if pod.phase != "Running" or not pod.node:
            continue
        if uid := pod.labels.get(CREATED_BY_LABEL):
            by_uid[(pod.namespace, uid)].append(pod)
        if name := pod.labels.get(VM_NAME_LABEL):
            by_name[(pod.namespace, name)].append(pod)
    targets = []
    for vmi in vmis:
        candidates = by_uid.get((vmi.namespace, vmi.uid)) or by_name.get(
            (vmi.namespace, vmi.launcher_hostname), []
        )
        matched = match_launcher_pods(vmi, candidates)
        if matched and matched[0].node:
            target = VmPod(vmi.namespace, vmi.name, matched[0].name, matched[0].node)
            targets.append((target, vm_memory_of(vmi, matched[0])))
    return targets


def group_by_node(targets: Iterable[VmPod]) -> dict[str, list[VmPod]]:
    grouped: dict[str, list[VmPod]] = defaultdict(list)
    for target in targets:
        grouped[target.node].append(target)
    return dict(grouped)


def samples_from_summary(
    summary: JSON, targets: Iterable[VmPod], at: datetime
) -> tuple[list[Sample], list[VmPod]]:
    """The ``compute`` container sample of each target found in ``summary``, and the targets missing.

    The answer is outside input: a pod entry that is not an object, has no ``podRef``, or figures that
    are not whole numbers (``"rssBytes": "12k"``) leave its VM missing; the other VMs are sampled.
    """
    memory = _container_memory(summary, CONTAINER)
    samples, missing = [], []
    for target in targets:
        figures = memory.get((target.namespace, target.pod))
        sample = _sample(target, figures, at) if figures is not None else None
        if sample is None:
            missing.append(target)
        else:
            samples.append(sample)
    return samples, missing


def pod_working_sets(summary: object) -> dict[tuple[str, str], int]:
    """``(namespace, pod) -> workingSetBytes`` of each well-formed pod (all its containers) of a Summary."""
    found = {}
    for pod in _list(summary.get("pods") if isinstance(summary, dict) else None):
        ref, memory = pod.get("podRef"), pod.get("memory")
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not isinstance(memory, dict):
            continue
        if (value := _figure(memory.get("workingSetBytes"))) is not None:
            found[(str(ref.get("namespace", "")), ref["name"])] = value
    return found


def _container_memory(summary: object, container: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``(namespace, pod) -> memory`` of ``container`` for every well-formed pod of a Summary document."""
    found = {}
    for pod in _list(summary.get("pods") if isinstance(summary, dict) else None):
        ref = pod.get("podRef")
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            continue
        for entry in _list(pod.get("containers")):
            if entry.get("name") == container and isinstance(entry.get("memory"), dict):
                found[(str(ref.get("namespace", "")), ref["name"])] = entry["memory"]
    return found


def _list(value: object) -> list[dict[str, Any]]:
    """The objects of a JSON list; anything else (null, a string, null items) is left out."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _figure(value: object) -> int | None:
    """A byte figure as the Summary API gives it (a JSON integer); anything else is None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _sample(target: VmPod, memory: dict[str, Any], at: datetime) -> Sample | None:
    rss = _figure(memory.get("rssBytes"))
    if rss is None:
        return None
    return target.sample(
        at, SOURCE, CONTAINER, None, rss_bytes=rss, working_set_bytes=_figure(memory.get("workingSetBytes"))
    )


def memory_by_vm(found: Iterable[tuple[VmPod, VmMemory]]) -> dict[VmKey, VmMemory]:
    return {(target.namespace, target.vm): memory for target, memory in found}


class KubeletSource:
    """Samples every VM of the inventory with one Summary request per node."""

    name = SOURCE

    def __init__(
        self, client: KubeClient, inventory: VmInventory, max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    ) -> None:
        self._client = client
        self._inventory = inventory
        self._max_concurrency = max_concurrency
        self.skipped = 0
        self.vm_memory: Mapping[VmKey, VmMemory] = {}

    async def poll(self, at: datetime) -> list[Sample]:
        """One sample of every VM that could be read; ``at`` is the scheduled sample time.

        VMs and pods come from the inventory's watches; before their first lists are in (bounded),
        ``KubeError``: with no list there is nothing to sample, and the caller counts a failed poll.
        """
        found = await self._inventory.vm_targets()
        memory = memory_by_vm(found)
        nodes = group_by_node(target for target, _ in found)
        limit = asyncio.Semaphore(self._max_concurrency)
        per_node = await asyncio.gather(
            *(self._sample_node(node, targets, at, limit, memory) for node, targets in sorted(nodes.items()))
        )
        if nodes and not any(samples for samples, _ in per_node):
            # With VMs and pods kept from watches, an API that fails shows here: a poll that could read
            # no node at all has failed (as a failed list made it fail), and readiness says so.
            raise KubeUnavailable(f"no node could be sampled ({len(nodes)} nodes)")
        self.skipped = sum(missed for _, missed in per_node)
        self.vm_memory = memory
        return [sample for samples, _ in per_node for sample in samples]

    async def _sample_node(
        self,
        node: str,
        targets: list[VmPod],
        at: datetime,
        limit: asyncio.Semaphore,
        memory: dict[VmKey, VmMemory],
    ) -> tuple[list[Sample], int]:
        """The node's samples, and how many of its VMs were left out; each of its VMs' measured figure
        in ``memory`` becomes its whole pod's working set, where the summary has it."""
        async with limit:
            try:
                summary = await self._client.stats_summary(node)
            except KubeError as exc:
                log.warning(
                    "node skipped for this sample",
                    extra={"node": node, "vms": len(targets), "error": str(exc)},
                )
                return [], len(targets)
        try:
            samples, missing = samples_from_summary(summary, targets, at)
        except Exception as exc:  # an answer shaped like nothing foreseen fails this node, not the poll
            log.warning(
                "node skipped for this sample: unreadable summary",
                extra={"node": node, "vms": len(targets), "error": repr(exc)},
            )
            return [], len(targets)
        working_sets = pod_working_sets(summary)
        for target in targets:
            key = (target.namespace, target.vm)
            if (pod := working_sets.get((target.namespace, target.pod))) is not None and key in memory:
                memory[key] = dataclasses.replace(memory[key], measured_bytes=pod)
        for target in missing:
            log.warning(
                "VM skipped for this sample: its pod is not in the node summary, or has no usable figures",
                extra={"namespace": target.namespace, "vm": target.vm, "pod": target.pod, "node": node},
            )
        return samples, len(missing)
