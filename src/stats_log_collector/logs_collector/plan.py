"""What one run reads, decided from the API's objects and the stored cursors: pure, tested directly.

Every container that ran in every launcher pod of a VMI: regular containers and native sidecars from
their cursors, init containers once, whole, when they have completed; and one virt-handler target per
node the VMI is on (grouped by node). A stream seen for the first time starts COLLECT_INTERVAL_SECS
ago, or at its VM's oldest cursor. Details: docs/logs-collector.md, "What a run reads".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from ..kube import Pod, Vmi, match_launcher_pods
from ..kube.models import INIT, REGULAR
from .cursor import NANOS, Cursor
from .handler_split import VmIdentity
from .layout import UnusableName, vm_folder
from .triggers import FINISHED_PHASES


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


@dataclasses.dataclass(frozen=True)
class PodWork:
    """One launcher pod to read: its jobs are made from the cursors of the moment (``pod_jobs``), so a
    collection that ran in between (an early one, triggered by the pod's changes) is never repeated."""

    vm: VmRef
    folder: Path
    pod: Pod
    new_start: int  # where a stream seen for the first time starts


@dataclasses.dataclass
class PodJobs:
    jobs: list[LauncherJob] = dataclasses.field(default_factory=list)
    notes: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)
    done: list[str] = dataclasses.field(default_factory=list)  # keys kept, nothing to read
    closed: bool = False  # collected to its end when it finished: never read again


@dataclasses.dataclass
class Plan:
    pods: list[PodWork] = dataclasses.field(default_factory=list)
    launcher_jobs: list[LauncherJob] = dataclasses.field(default_factory=list)
    handler_jobs: list[HandlerJob] = dataclasses.field(default_factory=list)
    problems: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)  # failures found planning
    notes: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)  # lines the API no longer has
    skipped: list[tuple[VmRef, str]] = dataclasses.field(default_factory=list)  # shapes not understood
    done: list[str] = dataclasses.field(default_factory=list)  # init containers collected in a past run
    final: list[str] = dataclasses.field(default_factory=list)  # last windows: forget the key once read
    vms: int = 0

    @property
    def keys(self) -> list[str]:
        """Every stream still there, read this run or not (the store forgets the others in time)."""
        keys = [job.key for job in self.launcher_jobs] + self.done
        final = set(self.final)
        return keys + [t.key for job in self.handler_jobs for t in job.targets if t.key not in final]


def launcher_key(vm: VmRef, pod: str, container: str) -> str:
    return f"launcher/{vm.namespace}/{vm.name}/{pod}/{container}"


def init_key(vm: VmRef, pod: str, container: str) -> str:
    """An init container's cursor: its presence is the durable record that it was collected."""
    return f"init/{vm.namespace}/{vm.name}/{pod}/{container}"


def handler_key(vm: VmRef, uid: str, handler_pod: str) -> str:
    return f"handler/{vm.namespace}/{vm.name}/{uid}/{handler_pod}"


def closed_key(vm: VmRef, pod: str) -> str:
    """Present once a finished pod was collected to its end: its streams are never read again."""
    return f"closed/{vm.namespace}/{vm.name}/{pod}"


def vm_oldest(cursors: Mapping[str, Cursor]) -> dict[str, int]:
    """Per VM (``namespace/name``), its oldest cursor among the streams that still move: not the
    frozen ones (init containers collected whole, pods closed when they finished)."""
    closed = {key[len("closed/") :] for key in cursors if key.startswith("closed/")}
    oldest: dict[str, int] = {}
    for key, cursor in cursors.items():
        if key.startswith(("init/", "closed/")):
            continue
        parts = key.split("/")
        if key.startswith("launcher/") and len(parts) > 4 and "/".join(parts[1:4]) in closed:
            continue
        prefix = f"{parts[1]}/{parts[2]}" if len(parts) > 2 else key
        oldest[prefix] = min(oldest.get(prefix, cursor.nanos), cursor.nanos)
    return oldest


def new_stream_start(oldest: Mapping[str, int], vm: VmRef, first_start: int) -> int:
    """A stream seen for the first time starts at ``first_start``, or at its VM's oldest cursor."""
    at = oldest.get(f"{vm.namespace}/{vm.name}")
    return first_start if at is None else min(first_start, at)


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
    oldest = vm_oldest(cursors)
    closed_vms = {"/".join(key.split("/")[1:3]) for key in cursors if key.startswith("closed/")}
    handler_targets: dict[str, list[HandlerTarget]] = {}
    for vmi in vmis:
        vm = VmRef(vmi.namespace, vmi.name)
        try:
            folder = vm_folder(data_dir, vm.namespace, vm.name, per_namespace)
        except UnusableName as exc:  # a hostile API answer (a VMI named ".."): this VM only is skipped
            plan.problems.append((vm, str(exc)))
            continue
        new_start = new_stream_start(oldest, vm, first_start)
        pods = match_launcher_pods(vmi, launcher_pods)
        if not pods and vmi.phase not in FINISHED_PHASES and str(vm) not in closed_vms:
            plan.problems.append((vm, "no virt-launcher pod"))
        for pod in pods:
            work = PodWork(vm, folder, pod, new_start)
            plan.pods.append(work)
            jobs = pod_jobs(work, cursors)
            plan.launcher_jobs += jobs.jobs
            plan.notes += jobs.notes
            plan.skipped += jobs.skipped
            plan.done += jobs.done
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
    _last_handler_windows(plan, handler_targets, vmis, handlers, cursors, data_dir, per_namespace)
    for node, targets in sorted(handler_targets.items()):
        handler = handlers[node]
        plan.handler_jobs.append(HandlerJob(node, handler.namespace, handler.name, tuple(targets)))
    return plan


def _last_handler_windows(
    plan: Plan,
    handler_targets: dict[str, list[HandlerTarget]],
    vmis: Sequence[Vmi],
    handlers: Mapping[str, Pod],
    cursors: Mapping[str, Cursor],
    data_dir: Path,
    per_namespace: bool,
) -> None:
    """A VMI gone since the last run (a stopped VM) still has lines in the virt-handler logs after its
    cursor, and the handler pods stay: one last window each, then the key is forgotten (``final``)."""
    live = {(vmi.namespace, vmi.name) for vmi in vmis}
    nodes = {pod.name: node for node, pod in handlers.items()}
    for key, cursor in cursors.items():
        parts = key.split("/")
        if parts[0] != "handler" or len(parts) != 5 or (parts[1], parts[2]) in live:
            continue
        _, namespace, name, uid, handler_pod = parts
        node = nodes.get(handler_pod)
        if node is None:
            continue  # that handler pod is gone too: nothing to read; pruned with the unseen keys
        vm = VmRef(namespace, name)
        try:
            folder = vm_folder(data_dir, namespace, name, per_namespace)
        except UnusableName:
            continue
        target = HandlerTarget(vm, VmIdentity(namespace, name, uid), folder, key, cursor)
        handler_targets.setdefault(node, []).append(target)
        plan.final.append(key)


def pod_jobs(work: PodWork, cursors: Mapping[str, Cursor], only: Collection[str] | None = None) -> PodJobs:
    """The jobs of one launcher pod from ``cursors``: its regular containers and native sidecars, its
    finished init containers (``only``: just those containers); nothing for a closed pod. What does
    not fit the Pod API is skipped (that container, or the pod) and said."""
    result = PodJobs()
    vm, pod = work.vm, work.pod
    closed = closed_key(vm, pod.name)
    if closed in cursors:
        result.closed = True
        keys = [closed] + [launcher_key(vm, pod.name, c) for c in (*pod.init_containers, *pod.containers)]
        keys += [init_key(vm, pod.name, c) for c in pod.init_containers]
        result.done = [key for key in keys if key in cursors]
        return result
    for problem in pod.problems:
        result.skipped.append((vm, f"pod {pod.name}: {problem}"))
    if not pod.containers:
        result.skipped.append((vm, f"pod {pod.name} has no containers in its spec"))
        return result
    for container in (*pod.init_containers, *pod.containers):
        if only is not None and container not in only:
            continue
        if pod.phase == "Pending" and not _has_run(pod, container):
            continue  # not started (a pod initialising runs its sidecars, its containers wait): no log yet
        if pod.kind_of(container) != INIT:
            result.jobs.append(_launcher_job(work, container, cursors, result.notes))
            continue
        key = init_key(vm, pod.name, container)
        state = pod.state(container)
        cursor = cursors.get(key)
        if state is None or not state.terminated:
            continue  # still running or never started (the pod failed before): collected once finished
        if cursor is not None and state.restart_count <= cursor.restarts:
            result.done.append(key)
            continue
        if cursor is None:  # the whole log, in one file named after the start of the container's run
            started = state.started.timestamp() if state.started else work.new_start / NANOS
            whole = Cursor(0, 0, state.restart_count)
            start = Cursor(int(started) * NANOS, 0, state.restart_count)
            result.jobs.append(LauncherJob(vm, work.folder, pod.name, container, key, start, None, whole))
        else:  # it ran again (a pod restartPolicy other than Never): its new run, after its old one
            result.jobs.append(_launcher_job(work, container, cursors, result.notes, key))
    return result


def _has_run(pod: Pod, container: str) -> bool:
    """Started at least once: an init container of a pod still initialising may have (regular ones
    start only once every init container has finished or, for a sidecar, started)."""
    state = pod.state(container)
    return pod.kind_of(container) != REGULAR and state is not None and (state.running or state.terminated)


def _launcher_job(
    work: PodWork,
    container: str,
    cursors: Mapping[str, Cursor],
    notes: list[tuple[VmRef, str]],
    key: str | None = None,
) -> LauncherJob:
    vm, folder, pod, new_start = work.vm, work.folder, work.pod, work.new_start
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


def handler_identities(job: HandlerJob) -> list[VmIdentity]:
    return [target.identity for target in job.targets]
