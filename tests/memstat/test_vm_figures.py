"""The per-VM figures, pure: QEMU's -m, the cgroup memory files, and the figures of one poll."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stats_log_collector.memstat.kubelet_source import pod_working_sets
from stats_log_collector.memstat.sample import Sample
from stats_log_collector.memstat.vm_figures import (
    VmMemory,
    cgroup_limit_files,
    measured_of,
    memory_cgroup,
    qemu_guest_memory,
    vm_figures,
)

AT = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)
MiB = 1 << 20


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["qemu-system-x86_64", "-m", "160"], 160 * MiB),  # a bare number is MiB
        (["qemu", "-m", "160M"], 160 * MiB),
        (["qemu", "-m", "160m"], 160 * MiB),
        (["qemu", "-m", "1G"], 1 << 30),
        (["qemu", "-m", "1.5G"], 3 << 29),
        (["qemu", "-m", "size=4G,slots=2,maxmem=8G"], 4 << 30),  # maxmem is the ceiling, not the RAM
        (["qemu", "-m", "slots=2,size=2048,maxmem=8G"], 2 << 30),
        (["qemu-kvm", "-m", "size=4194304k"], 4 << 30),  # libvirt's form
        (["qemu", "-m", "524288000B"], 524_288_000),
        (["qemu", "-m=256"], 256 * MiB),
        (["qemu", "--m", "128"], 128 * MiB),
        (["qemu", "-m", "128", "-name", "x", "-m", "256"], 256 * MiB),  # the last one counts
    ],
)
def test_qemu_guest_memory(argv: list[str], expected: int) -> None:
    assert qemu_guest_memory(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["qemu-system-x86_64", "-name", "guest=x"],  # QEMU's default RAM: not in argv, not guessed
        ["qemu", "-m"],  # no value
        ["qemu", "-m", "lots"],
        ["qemu", "-m", "1.5"],  # a fraction needs a unit
        ["qemu", "-m", "12Q"],
        ["qemu", "-m", "slots=2,maxmem=8G"],  # no size
        ["qemu", "-m", ""],
        ["qemu", "-m", "99999999999999999999999G"],
        ["qemu", "-machine", "q35", "-mem-path", "/dev/hugepages"],
    ],
)
def test_qemu_guest_memory_unknown(argv: list[str]) -> None:
    assert qemu_guest_memory(argv) is None


V2 = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-ab.scope\n"
V1 = "12:pids:/kubepods/burstable/pod1234/ab\n7:memory:/kubepods/burstable/pod1234/ab\n0::/\n"


def test_memory_cgroup_of_v1_v2_and_nonsense() -> None:
    assert memory_cgroup(V2) == ("v2", V2[3:-1])
    assert memory_cgroup(V1) == ("v1", "/kubepods/burstable/pod1234/ab")  # the memory hierarchy wins
    assert memory_cgroup("") is None and memory_cgroup("garbage\n1:2\n") is None


def test_limit_files_from_the_process_cgroup_up_to_the_root() -> None:
    assert cgroup_limit_files("/sys/fs/cgroup", V1) == [
        "/sys/fs/cgroup/memory/kubepods/burstable/pod1234/ab/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/kubepods/burstable/pod1234/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/kubepods/burstable/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/kubepods/memory.limit_in_bytes",
    ]
    # Seen from inside another cgroup namespace, the path climbs out of it first: from the host's root.
    assert cgroup_limit_files("/host/sys/fs/cgroup", "0::/../../kubepods/b\n") == [
        "/host/sys/fs/cgroup/kubepods/b/memory.max",
        "/host/sys/fs/cgroup/kubepods/memory.max",
    ]
    assert cgroup_limit_files("/sys/fs/cgroup", "0::/\n") == []  # the root has no limit file


def _sample(vm: str, process: str, rss: int, working_set: int | None = None, ns: str = "vms") -> Sample:
    return Sample(
        AT, ns, vm, f"virt-launcher-{vm}-x", "n1", "exec", process, 1, rss, working_set_bytes=working_set
    )


def test_measured_is_the_working_set_where_known_else_the_rss_sum() -> None:
    assert measured_of([]) is None
    assert measured_of([_sample("a", "qemu-kvm", 300, 400)]) == 400
    assert measured_of([_sample("a", "qemu-kvm", 300), _sample("a", "virtqemud", 20, 25)]) == 320


def test_figures_per_vm() -> None:
    samples = [
        _sample("b", "qemu-kvm", 1200 * MiB),
        _sample("b", "virtqemud", 30 * MiB),
        _sample("a", "qemu-kvm", 100 * MiB),
        _sample("c", "qemu-kvm", 100 * MiB, ns="other"),
    ]
    memory = {
        ("vms", "b"): VmMemory(1 << 30, 1294 * MiB, 1400 * MiB),
        ("vms", "a"): VmMemory(160 * MiB, None, None),  # no request, no limit
        ("other", "c"): VmMemory(None, None, None, measured_bytes=150 * MiB),
    }
    c, a, b = vm_figures(samples, memory)  # sorted by namespace, then VM
    assert (b.namespace, b.vm, b.pod, b.node, b.source, b.timestamp) == (
        "vms",
        "b",
        "virt-launcher-b-x",
        "n1",
        "exec",
        AT,
    )
    assert b.measured_bytes == 1230 * MiB and b.guest_memory_bytes == 1 << 30
    assert b.overhead_bytes == 206 * MiB and b.headroom_bytes == 170 * MiB
    assert b.memory_request_bytes == 1294 * MiB and b.requested_overhead_bytes == 270 * MiB
    assert b.memory_limit_bytes == 1400 * MiB
    assert a.overhead_bytes == -60 * MiB  # a guest not yet touching its RAM costs less than its size
    assert a.headroom_bytes is None and a.requested_overhead_bytes is None
    assert c.measured_bytes == 150 * MiB and c.overhead_bytes is None  # the pod's figure when known
    unknown = vm_figures([_sample("d", "qemu-kvm", 5)], {})[0]
    assert (
        unknown.measured_bytes == 5 and unknown.guest_memory_bytes is None and unknown.overhead_bytes is None
    )


def test_pod_working_sets_from_a_summary_hostile_or_not() -> None:
    good = {"podRef": {"namespace": "vms", "name": "p"}, "memory": {"workingSetBytes": 7}}
    summary = {
        "pods": [
            good,
            None,
            "x",
            {"podRef": {"name": "no-memory"}},
            {"podRef": {"name": "string"}, "memory": "lots"},
            {"podRef": {"name": "negative"}, "memory": {"workingSetBytes": -1}},
            {"podRef": {"name": "bool"}, "memory": {"workingSetBytes": True}},
            {"podRef": {"name": "text"}, "memory": {"workingSetBytes": "7"}},
            {"podRef": {"name": 5}, "memory": {"workingSetBytes": 7}},
            {"podRef": "p", "memory": {"workingSetBytes": 7}},
        ]
    }
    assert pod_working_sets(summary) == {("vms", "p"): 7}
    hostile_summaries: list[object] = [None, [], "x", {"pods": None}, {"pods": {"a": good}}]
    for hostile in hostile_summaries:
        assert pod_working_sets(hostile) == {}
