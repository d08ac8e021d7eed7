"""What a run reads: streams per launcher container, handler targets per node, starting points."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from stats_log_collector.kube import Pod, Vmi
from stats_log_collector.kube.models import ContainerState
from stats_log_collector.logs_collector.cursor import NANOS, Cursor
from stats_log_collector.logs_collector.plan import (
    Plan,
    VmRef,
    closed_key,
    handler_key,
    init_key,
    launcher_key,
    make_plan,
)

NOW = 1_795_000_000 * NANOS
HOUR = 3600 * NANOS
DATA = Path("/data")


def vmi(name: str, node: str, *nodes: str, namespace: str = "vms") -> Vmi:
    return Vmi(namespace, name, f"uid-{name}", node, "Running", nodes=(node, *nodes))


def launcher(vm: Vmi, pod: str, node: str, restarts: int = 0, phase: str = "Running") -> Pod:
    labels = {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vm.uid}
    states = (ContainerState("compute", restarts, True),)
    return Pod(vm.namespace, pod, f"uid-{pod}", node, phase, ("compute", "guest-console-log"), states, labels)


def handler(node: str) -> Pod:
    return Pod("kubevirt", f"virt-handler-{node}", f"uid-h-{node}", node, "Running", ("virt-handler",))


HANDLERS = {node: handler(node) for node in ("n1", "n2", "n3")}


def plan(vmis: list[Vmi], pods: list[Pod], cursors: dict[str, Cursor] | None = None, **kw: object) -> Plan:
    options = {"now_nanos": NOW, "interval_nanos": HOUR, "data_dir": DATA, "per_namespace": False, **kw}
    return make_plan(vmis, pods, HANDLERS, cursors or {}, **options)  # type: ignore[arg-type]


def test_first_run_reads_the_last_interval_of_every_container_and_node() -> None:
    vm = vmi("a", "n1")
    result = plan([vm], [launcher(vm, "virt-launcher-a-x", "n1")])
    assert [(job.pod, job.container, job.start, job.previous) for job in result.launcher_jobs] == [
        ("virt-launcher-a-x", "compute", Cursor(NOW - HOUR), None),
        ("virt-launcher-a-x", "guest-console-log", Cursor(NOW - HOUR), None),
    ]
    assert result.launcher_jobs[0].folder == DATA / "a"
    [job] = result.handler_jobs
    assert (job.node, job.pod, job.since) == ("n1", "virt-handler-n1", NOW - HOUR)
    assert not result.problems


def test_migration_reads_both_pods_and_both_nodes() -> None:
    vm = vmi("a", "n1", "n2")
    pods = [launcher(vm, "virt-launcher-a-src", "n1"), launcher(vm, "virt-launcher-a-dst", "n2")]
    result = plan([vm], pods)
    assert {job.pod for job in result.launcher_jobs} == {"virt-launcher-a-src", "virt-launcher-a-dst"}
    assert [job.node for job in result.handler_jobs] == ["n1", "n2"]


def test_a_node_handler_is_read_once_from_its_earliest_cursor() -> None:
    a, b = vmi("a", "n1"), vmi("b", "n1")
    cursors = {
        handler_key(VmRef("vms", "a"), a.uid, "virt-handler-n1"): Cursor(NOW - 50, 2),
        handler_key(VmRef("vms", "b"), b.uid, "virt-handler-n1"): Cursor(NOW - 90, 1),
    }
    result = plan([a, b], [launcher(a, "pa", "n1"), launcher(b, "pb", "n1")], cursors)
    [job] = result.handler_jobs
    assert job.since == NOW - 90 and [t.start for t in job.targets] == [
        Cursor(NOW - 50, 2),
        Cursor(NOW - 90, 1),
    ]


def test_a_restarted_container_reads_its_previous_run_first() -> None:
    vm = vmi("a", "n1")
    key = launcher_key(VmRef("vms", "a"), "pa", "compute")
    result = plan([vm], [launcher(vm, "pa", "n1", restarts=1)], {key: Cursor(NOW - 10, 3, restarts=0)})
    job = next(job for job in result.launcher_jobs if job.container == "compute")
    assert job.previous == Cursor(NOW - 10, 3, 0) and job.current == Cursor(NOW - 10, 0, 1)
    assert job.start == Cursor(NOW - 10, 3, 0) and not result.notes
    result = plan([vm], [launcher(vm, "pa", "n1", restarts=3)], {key: Cursor(NOW - 10, 3, restarts=0)})
    job = next(job for job in result.launcher_jobs if job.container == "compute")
    assert job.previous == Cursor(NOW - 10) and job.current == Cursor(NOW - 10, 0, 3)
    assert "restarted 3 times" in result.notes[0][1]


def test_new_stream_of_a_known_vm_starts_at_its_oldest_cursor() -> None:
    vm = vmi("a", "n1", "n2")  # migrated: the pod and the handler on n2 are new
    cursors = {launcher_key(VmRef("vms", "a"), "old-pod", "compute"): Cursor(NOW - 3 * HOUR)}
    result = plan([vm], [launcher(vm, "new-pod", "n2")], cursors)
    assert {job.start.nanos for job in result.launcher_jobs} == {NOW - 3 * HOUR}
    assert {t.start.nanos for job in result.handler_jobs for t in job.targets} == {NOW - 3 * HOUR}


def test_problems_are_reported_per_vm() -> None:
    lonely, elsewhere = vmi("lonely", "n1"), vmi("elsewhere", "n9")
    pending = vmi("pending", "n1")
    result = plan(
        [lonely, elsewhere, pending],
        [launcher(elsewhere, "pe", "n9"), launcher(pending, "pp", "n1", phase="Pending")],
    )
    assert [(str(vm), reason) for vm, reason in result.problems] == [
        ("vms/lonely", "no virt-launcher pod"),
        ("vms/elsewhere", "no virt-handler pod on node n9"),
    ]
    assert not [job for job in result.launcher_jobs if job.pod == "pp"]


def test_folders_per_namespace_when_several_are_watched() -> None:
    a, b = vmi("a", "n1"), vmi("a", "n1", namespace="other")
    result = plan([a, b], [launcher(a, "p1", "n1"), launcher(b, "p2", "n1")], per_namespace=True)
    assert {job.folder for job in result.launcher_jobs} == {DATA / "vms" / "a", DATA / "other" / "a"}


def modern(vm: Vmi, pod: str, console_restarts: int = 0, init_done: bool = True) -> Pod:
    """A KubeVirt >= 1.6 launcher pod: guest-console-log a native sidecar, two init containers."""
    started = datetime.fromtimestamp(NOW // NANOS - 7200, UTC)
    init_states = tuple(
        ContainerState(name, 0, not init_done, init_done, started)
        for name in ("container-disk-binary", "volumecontainerdisk-init")
    )
    return Pod(
        vm.namespace,
        pod,
        f"uid-{pod}",
        vm.node,
        "Running",
        ("compute",),
        (ContainerState("compute", 0, True),),
        {"kubevirt.io/created-by": vm.uid},
        init_containers=("guest-console-log", "container-disk-binary", "volumecontainerdisk-init"),
        sidecars=frozenset({"guest-console-log"}),
        init_container_states=(ContainerState("guest-console-log", console_restarts, True), *init_states),
    )


def test_native_sidecars_like_containers_completed_init_containers_whole_then_never() -> None:
    vm = vmi("a", "n1")
    first = plan([vm], [modern(vm, "p")])
    jobs = {job.container: job for job in first.launcher_jobs}
    assert list(jobs) == ["guest-console-log", "container-disk-binary", "volumecontainerdisk-init", "compute"]
    assert jobs["guest-console-log"].key == launcher_key(VmRef("vms", "a"), "p", "guest-console-log")
    assert jobs["guest-console-log"].current == Cursor(NOW - HOUR)
    whole = jobs["container-disk-binary"]
    assert whole.key == init_key(VmRef("vms", "a"), "p", "container-disk-binary")
    assert whole.current == Cursor(0) and whole.start == Cursor(NOW - 7200 * NANOS) and whole.previous is None
    # collected: no job any more, but the key stays known (the store does not forget it)
    cursors = {job.key: job.current for job in first.launcher_jobs}
    cursors[whole.key] = Cursor(NOW - 7000 * NANOS)
    again = plan([vm], [modern(vm, "p", console_restarts=1)], cursors)
    assert [job.container for job in again.launcher_jobs] == ["guest-console-log", "compute"]
    assert whole.key in again.keys and whole.key in again.done
    sidecar = again.launcher_jobs[0]
    assert sidecar.previous == Cursor(NOW - HOUR) and sidecar.current == Cursor(NOW - HOUR, 0, 1)
    # a frozen init cursor is not where the VM stands: a new stream still starts an interval ago
    assert plan([vm], [modern(vm, "q")], {whole.key: Cursor(NOW - 7000 * NANOS)}).launcher_jobs[0].start == (
        Cursor(NOW - HOUR)
    )


def test_running_init_containers_wait_and_containerless_pods_are_skipped() -> None:
    vm = vmi("a", "n1")
    result = plan([vm], [modern(vm, "p", init_done=False)])
    assert [job.container for job in result.launcher_jobs] == ["guest-console-log", "compute"]
    empty = Pod("vms", "e", "uid-e", "n1", "Running", (), (), {"kubevirt.io/created-by": vm.uid})
    skipped = plan([vm], [empty])
    assert skipped.launcher_jobs == [] and skipped.skipped == [
        (VmRef("vms", "a"), "pod e has no containers in its spec")
    ]


def test_a_pod_initialising_reads_only_the_init_containers_that_ran() -> None:
    vm = vmi("a", "n1")
    pod = dataclasses.replace(modern(vm, "p", init_done=False), phase="Pending")
    assert [job.container for job in plan([vm], [pod]).launcher_jobs] == ["guest-console-log"]
    done = dataclasses.replace(modern(vm, "p"), phase="Pending")
    assert [job.container for job in plan([vm], [done]).launcher_jobs] == [
        "guest-console-log",
        "container-disk-binary",
        "volumecontainerdisk-init",
    ]


def test_a_vmi_gone_since_the_last_run_gets_one_last_handler_window() -> None:
    gone, kept = VmRef("vms", "gone"), vmi("kept", "n1")
    gone_key = handler_key(gone, "uid-gone", "virt-handler-n1")
    stale_key = handler_key(VmRef("vms", "old"), "uid-old", "virt-handler-replaced")  # handler gone too
    cursors = {gone_key: Cursor(NOW - 600, 3), stale_key: Cursor(NOW - 900)}
    result = plan([kept], [launcher(kept, "pk", "n1")], cursors)
    [job] = result.handler_jobs
    targets = {target.key: target for target in job.targets}
    assert targets[gone_key].start == Cursor(NOW - 600, 3) and targets[gone_key].folder == DATA / "gone"
    assert targets[gone_key].identity.uid == "uid-gone"
    assert result.final == [gone_key] and gone_key not in result.keys  # read once, then forgotten
    assert stale_key not in targets and not result.problems


def test_a_vmi_whose_pods_are_closed_or_that_finished_is_not_missing_a_pod() -> None:
    stopped = dataclasses.replace(vmi("a", "n1"), phase="Succeeded")
    closed = vmi("b", "n1")
    cursors = {closed_key(VmRef("vms", "b"), "pb"): Cursor(NOW)}
    assert plan([stopped, closed], [], cursors).problems == []
    assert plan([vmi("c", "n1")], []).problems == [(VmRef("vms", "c"), "no virt-launcher pod")]


def test_a_closed_pod_is_not_read_but_its_keys_are_kept() -> None:
    vm = vmi("a", "n1")
    pod = launcher(vm, "pa", "n1", phase="Succeeded")
    ref = VmRef("vms", "a")
    cursors = {
        closed_key(ref, "pa"): Cursor(NOW),
        launcher_key(ref, "pa", "compute"): Cursor(NOW - 5 * HOUR),
    }
    result = plan([vm, vmi("other", "n1")], [pod], cursors)
    assert [job for job in result.launcher_jobs if job.pod == "pa"] == []
    assert set(result.done) >= set(cursors)
    # a closed pod's frozen cursor does not pull the VM's new streams back five hours
    fresh = plan([vm], [pod, launcher(vm, "pa2", "n2")], cursors)
    assert {job.start.nanos for job in fresh.launcher_jobs} == {NOW - HOUR}
