"""What one run reads, decided from the API's objects and the stored cursors: pure, tested directly.

Every container that ran in every launcher pod of a VMI: regular containers and native sidecars from
their cursors, init containers once, whole, when they have completed; and one virt-handler target per
node the VMI is on (grouped by node). A stream seen for the first time starts COLLECT_INTERVAL_SECS
ago, or at its VM's oldest cursor. Details: docs/logs-collector.md, "What a run reads".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..kube import Pod, Vmi, match_launcher_pods
from ..kube.models import INIT, REGULAR
from .cursor import NANOS, Cursor
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
    skipped: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)  # shapes not understood
    done: list[str] = dataclasses.field(default_factory=list)  # init containers collected in a past run
    vms: int = 0

    @property
    def keys(self) -> list[str]:
        """Every stream still there, read this run or not (the store forgets the others in time)."""
        keys = [job.key for job in self.launcher_jobs] + self.done
        return keys + [target.key for job in self.handler_jobs for target in job.targets]


def launcher_key(vm: VmRef, pod: str, container: str) -> str:
    return f"launcher/{vm.namespace}/{vm.name}/{pod}/{container}"


def init_key(vm: VmRef, pod: str, container: str) -> str:
    """An init container's cursor: its presence is the durable record that it was collected."""
    return f"init/{vm.namespace}/{vm.name}/{pod}/{container}"


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
        if key.startswith("init/"):  # frozen at the end of a finished container: not where a VM stands
            continue
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
            _pod_jobs(plan, vm, folder, pod, cursors, new_start)
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


def _pod_jobs(
    plan: Plan, vm: VmRef, folder: Path, pod: Pod, cursors: Mapping[str, Cursor], new_start: int
) -> None:
    """The jobs of one launcher pod: its regular containers and native sidecars, its finished init
    containers; what does not fit the Pod API is skipped (that container, or the pod) and said."""
    for problem in pod.problems:
        plan.skipped.append((vm, f"pod {pod.name}: {problem}"))
    if not pod.containers:
        plan.skipped.append((vm, f"pod {pod.name} has no containers in its spec"))
        return
    for container in (*pod.init_containers, *pod.containers):
        if pod.phase == "Pending" and not _has_run(pod, container):
            continue  # not started (a pod initialising runs its sidecars, its containers wait): no log yet
        if pod.kind_of(container) != INIT:
            plan.launcher_jobs.append(
                _launcher_job(vm, folder, pod, container, cursors, new_start, plan.notes)
            )
            continue
        key = init_key(vm, pod.name, container)
        state = pod.state(container)
        cursor = cursors.get(key)
        if state is None or not state.terminated:
            continue  # still running or never started (the pod failed before): collected once finished
        if cursor is not None and state.restart_count <= cursor.restarts:
            plan.done.append(key)
            continue
        if cursor is None:  # the whole log, in one file named after the start of the container's run
            started = state.started.timestamp() if state.started else new_start / NANOS
            whole = Cursor(0, 0, state.restart_count)
            start = Cursor(int(started) * NANOS, 0, state.restart_count)
            plan.launcher_jobs.append(LauncherJob(vm, folder, pod.name, container, key, start, None, whole))
        else:  # it ran again (a pod restartPolicy other than Never): its new run, after its old one
            plan.launcher_jobs.append(
                _launcher_job(vm, folder, pod, container, cursors, new_start, plan.notes, key)
            )


def _has_run(pod: Pod, container: str) -> bool:
    """Started at least once: an init container of a pod still initialising may have (regular ones
    start only once every init container has finished or, for a sidecar, started)."""
    state = pod.state(container)
    return pod.kind_of(container) != REGULAR and state is not None and (state.running or state.terminated)


def _launcher_job(
    vm: VmRef,
    folder: Path,
    pod: Pod,
    container: str,
    cursors: Mapping[str, Cursor],
    new_start: int,
    notes: list[tuple[VmRef, str]],
    key: str | None = None,
) -> LauncherJob:
    key = key or launcher_key(vm, pod.name, container)
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
