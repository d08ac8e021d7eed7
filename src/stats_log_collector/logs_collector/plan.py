"""What one run reads, decided from the API's objects and the stored cursors: pure, tested directly.

Every container of every launcher pod of a VMI, from its cursor, and one virt-handler target per node
the VMI is on (grouped by node); a stream seen for the first time starts COLLECT_INTERVAL_SECS ago, or
at its VM's oldest cursor. Details: docs/logs-collector.md, "What a run reads".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..kube import Pod, Vmi, match_launcher_pods
from .cursor import Cursor
from .handler_split import VmIdentity
from .layout import UnusableName, vm_folder


@dataclasses.dataclass(frozen=True)
class VmRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class LauncherJob:
    vm: VmRef
    folder: Path
    pod: str
    container: str
    key: str
    start: Cursor  # names the file: the window starts here
    previous: Cursor | None  # read the previous run of the container from here first
    current: Cursor  # then the current run from here


@dataclasses.dataclass(frozen=True)
class HandlerTarget:
    vm: VmRef
    identity: VmIdentity
    folder: Path
    key: str
    start: Cursor


@dataclasses.dataclass(frozen=True)
class HandlerJob:
    node: str
    namespace: str
    pod: str
    targets: tuple[HandlerTarget, ...]

    @property
    def since(self) -> int:
        return min(target.start.nanos for target in self.targets)


@dataclasses.dataclass
class Plan:
    launcher_jobs: list[LauncherJob] = dataclasses.field(default_factory=list)
    handler_jobs: list[HandlerJob] = dataclasses.field(default_factory=list)
    problems: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)  # failures found planning
    notes: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)  # lines the API no longer has
    vms: int = 0

    @property
    def keys(self) -> list[str]:
        keys = [job.key for job in self.launcher_jobs]
        return keys + [target.key for job in self.handler_jobs for target in job.targets]


def launcher_key(vm: VmRef, pod: str, container: str) -> str:
    return f"launcher/{vm.namespace}/{vm.name}/{pod}/{container}"


def handler_key(vm: VmRef, uid: str, handler_pod: str) -> str:
    return f"handler/{vm.namespace}/{vm.name}/{uid}/{handler_pod}"


def make_plan(
    vmis: Sequence[Vmi],
    launcher_pods: Sequence[Pod],
    handlers: Mapping[str, Pod],
    cursors: Mapping[str, Cursor],
    *,
    now_nanos: int,
    interval_nanos: int,
    data_dir: Path,
    per_namespace: bool,
) -> Plan:
    plan = Plan(vms=len(vmis))
    first_start = now_nanos - interval_nanos
    by_vm_prefix: dict[str, int] = {}
    for key, cursor in cursors.items():
        prefix = _vm_prefix(key)
        by_vm_prefix[prefix] = min(by_vm_prefix.get(prefix, cursor.nanos), cursor.nanos)
    handler_targets: dict[str, list[HandlerTarget]] = {}
    for vmi in vmis:
        vm = VmRef(vmi.namespace, vmi.name)
        try:
            folder = vm_folder(data_dir, vm.namespace, vm.name, per_namespace)
        except UnusableName as exc:  # a hostile API answer (a VMI named ".."): this VM only is skipped
            plan.problems.append((vm, str(exc)))
            continue
        oldest = by_vm_prefix.get(f"{vm.namespace}/{vm.name}")
        new_start = first_start if oldest is None else min(first_start, oldest)
        pods = match_launcher_pods(vmi, launcher_pods)
        if not pods:
            plan.problems.append((vm, "no virt-launcher pod"))
        for pod in pods:
            if pod.phase == "Pending":
                continue  # containers not started: no log yet
            for container in pod.containers:
                plan.launcher_jobs.append(
                    _launcher_job(vm, folder, pod, container, cursors, new_start, plan.notes)
                )
        nodes = list(vmi.nodes) + [pod.node for pod in pods if pod.node and pod.node not in vmi.nodes]
        for node in nodes:
            handler = handlers.get(node)
            if handler is None:
                plan.problems.append((vm, f"no virt-handler pod on node {node}"))
                continue
            key = handler_key(vm, vmi.uid, handler.name)
            start = cursors.get(key) or Cursor(new_start)
            target = HandlerTarget(vm, VmIdentity(vm.namespace, vm.name, vmi.uid), folder, key, start)
            handler_targets.setdefault(node, []).append(target)
    for node, targets in sorted(handler_targets.items()):
        handler = handlers[node]
        plan.handler_jobs.append(HandlerJob(node, handler.namespace, handler.name, tuple(targets)))
    return plan


def _launcher_job(
    vm: VmRef,
    folder: Path,
    pod: Pod,
    container: str,
    cursors: Mapping[str, Cursor],
    new_start: int,
    notes: list[tuple[VmRef, str]],
) -> LauncherJob:
    key = launcher_key(vm, pod.name, container)
    restarts = pod.restart_count(container)
    cursor = cursors.get(key)
    if cursor is None:
        start = Cursor(new_start, 0, restarts)
        previous = Cursor(new_start) if restarts > 0 else None
        return LauncherJob(vm, folder, pod.name, container, key, start, previous, start)
    if restarts <= cursor.restarts:
        return LauncherJob(vm, folder, pod.name, container, key, cursor, None, cursor)
    if restarts > cursor.restarts + 1:
        notes.append(
            (
                vm,
                f"{pod.name}/{container} restarted {restarts - cursor.restarts} times since the last "
                "collection: the API keeps only the previous run, earlier ones are lost",
            )
        )
    previous = cursor if restarts == cursor.restarts + 1 else Cursor(cursor.nanos)
    current = Cursor(cursor.nanos, 0, restarts)
    return LauncherJob(vm, folder, pod.name, container, key, cursor, previous, current)


def _vm_prefix(key: str) -> str:
    """``namespace/name`` of the VM a cursor key belongs to."""
    parts = key.split("/")
    return f"{parts[1]}/{parts[2]}" if len(parts) > 2 else key


def handler_identities(job: HandlerJob) -> list[VmIdentity]:
    return [target.identity for target in job.targets]
