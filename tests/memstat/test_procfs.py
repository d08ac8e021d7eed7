"""The procfs source against real processes on this machine, and a fake PROC_ROOT for pods and races.

The real processes are Python interpreters started through a symlink named like QEMU, so the kernel
gives them that comm; each allocates and touches a known amount of memory and carries a QEMU-style
``-name`` after a ``--`` that the script ignores.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient
from stats_log_collector.memstat.procfs import Scanner, sample_procfs, scan, to_samples
from stats_log_collector.memstat.procfs_source import ProcfsSource
from stats_log_collector.memstat.procstatus import qemu_vm_name
from stats_log_collector.memstat.sample import VmPod
from stats_log_collector.settings import MemstatSettings

NAMES = ("virt-launcher", "virtqemud", "virtlogd", "qemu-kvm")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MIB = 1024 * 1024
UID = "0c6a8d5e-1b2f-4c3d-9e8f-0123456789ab"

ALLOCATE = (
    "import sys, time\n"
    "n = int(sys.argv[1])\n"
    "block = b'\\x01' * (n * 1024 * 1024)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _status_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    children: list[subprocess.Popen[str]] = []

    def start(exe_name: str, mib: int, *extra: str) -> subprocess.Popen[str]:
        link = tmp_path / exe_name
        if not link.exists():
            link.symlink_to(sys.executable)
        child = subprocess.Popen(
            [str(link), "-c", ALLOCATE, str(mib), "--", *extra], stdout=subprocess.PIPE, text=True
        )
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def _wait_ready(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"


def test_real_processes_match_proc_status(spawn) -> None:
    vms = {
        spawn("qemu-kvm", 40, "-name", "vm1,process=qemu-vm1"): ("vm1", "qemu-kvm", 40),
        spawn("qemu-kvm", 80, "-name", "guest=vm2,debug-threads=on"): ("vm2", "qemu-kvm", 80),
        spawn("qemu-system-x86_64", 60, "-name", "vm3"): ("vm3", "qemu-system-x86_64", 60),
    }
    helper = spawn("virtlogd", 1)  # on a plain host a helper serves every VM: tied to none, skipped
    _wait_ready([*vms, helper])

    samples = sample_procfs("/proc", NAMES, NOW, node="host1")
    expected_rss = {child.pid: _status_rss_kb(child.pid) * 1024 for child in vms}

    by_pid = {s.pid: s for s in samples if s.pid in expected_rss or s.pid == helper.pid}
    assert set(by_pid) == set(expected_rss)
    for child, (vm, process, mib) in vms.items():
        sample = by_pid[child.pid]
        assert (sample.vm, sample.process, sample.namespace, sample.pod, sample.node) == (
            vm,
            process,
            "",
            "",
            "host1",
        )
        assert sample.source == "procfs" and sample.timestamp == NOW
        assert abs(sample.rss_bytes - expected_rss[child.pid]) <= 0.02 * expected_rss[child.pid]
        assert sample.rss_bytes >= mib * MIB
        assert sample.pss_bytes is not None and sample.pss_bytes >= mib * MIB * 0.9
        assert sample.rss_anon_bytes is not None and sample.rss_anon_bytes >= mib * MIB
        assert sample.status_kb["VmRSS"] * 1024 == sample.rss_bytes


def _fake_process(
    root: Path,
    pid: int,
    comm: str,
    *,
    argv: tuple[str, ...] = (),
    rss_kb: int = 1000,
    cgroup: str = "0::/user.slice\n",
    status: bool = True,
    rollup: bool = True,
) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in (argv or (comm,))))
    (d / "cgroup").write_text(cgroup)
    if status:
        (d / "status").write_text(
            f"Name:\t{comm}\nPid:\t{pid}\nVmSize:\t{rss_kb * 3} kB\nVmRSS:\t{rss_kb} kB\n"
            f"RssAnon:\t{rss_kb - 10} kB\nRssFile:\t10 kB\nRssShmem:\t0 kB\n"
        )
    if not rollup:  # unreadable (EISDIR here; EACCES without ptrace access on a real /proc)
        (d / "smaps_rollup").mkdir()
    else:
        (d / "smaps_rollup").write_text(f"0-1 ---p 00000000 00:00 0 [rollup]\nRss: {rss_kb} kB\nPss: 7 kB\n")


def test_fake_proc_root_pods_and_races(tmp_path: Path) -> None:
    slice_ = f"kubepods-burstable-pod{UID.replace('-', '_')}.slice"
    systemd = f"0::/kubepods.slice/kubepods-burstable.slice/{slice_}/x\n"
    other_uid = "11111111-2222-3333-4444-555555555555"
    _fake_process(tmp_path, 10, "qemu-kvm", argv=("/usr/libexec/qemu-kvm", "-name", "guest=ns_vm,x=y"),
                  cgroup=systemd, rss_kb=2048)  # fmt: skip
    _fake_process(tmp_path, 11, "virtqemud", cgroup=systemd)
    _fake_process(tmp_path, 12, "virtlogd", cgroup=f"4:memory:/kubepods/pod{other_uid}/c\n")
    _fake_process(tmp_path, 13, "virt-launcher", cgroup=systemd, rollup=False)  # smaps_rollup unreadable
    _fake_process(tmp_path, 14, "qemu-kvm", status=False)  # vanished between comm and status
    _fake_process(tmp_path, 15, "bash")
    _fake_process(tmp_path, 16, "virtlogd")  # plain host helper: skipped
    _fake_process(tmp_path, 17, "qemu-system-x86", argv=("qemu-system-x86_64", "-name", "solo"))
    (tmp_path / "self").mkdir()
    (tmp_path / "18").mkdir()  # vanished before comm could be read

    records = scan(tmp_path, NAMES)
    assert [r.pid for r in records] == [10, 11, 12, 13, 16, 17]
    assert all(r.rollup_kb is None for r in scan(tmp_path, NAMES, pss=False))
    assert records[0].pod_uid == UID and records[3].rollup_kb is None

    pods = {UID: VmPod(namespace="ns", vm="vm-a", pod="virt-launcher-vm-a-xyz")}
    samples = to_samples(records, NOW, pods, node="node1")
    got = [(s.pid, s.process, s.namespace, s.vm, s.pod, s.node, s.pss_bytes) for s in samples]
    assert got == [
        (10, "qemu-kvm", "ns", "vm-a", "virt-launcher-vm-a-xyz", "node1", 7 * 1024),
        (11, "virtqemud", "ns", "vm-a", "virt-launcher-vm-a-xyz", "node1", 7 * 1024),
        (13, "virt-launcher", "ns", "vm-a", "virt-launcher-vm-a-xyz", "node1", None),
        (17, "qemu-system-x86_64", "", "solo", "", "node1", 7 * 1024),
    ]
    assert samples[0].rss_bytes == 2048 * 1024 and samples[0].rss_file_bytes == 10 * 1024

    # A callable resolver works too, and the node the API reports wins over this host's name.
    def lookup(uid: str) -> VmPod | None:
        return VmPod("ns2", "vm-b", "pod-b", node="api-node") if uid == other_uid else None

    assert [(s.pid, s.vm, s.node) for s in to_samples(records, NOW, lookup, node="n")] == [
        (12, "vm-b", "api-node"),
        (17, "solo", "n"),
    ]

    # Without the API, pods are ignored: QEMU is named by its -name, helpers are tied to no VM.
    assert [(s.pid, s.vm) for s in to_samples(records, NOW, None, node="n")] == [(10, "ns_vm"), (17, "solo")]


def test_a_scanner_follows_processes_that_exec_and_pids_that_go(tmp_path: Path) -> None:
    """A kept Scanner reads only status for known processes, yet sees an exec into another program."""
    for name in ("qemu-kvm", "virtlogd"):
        (tmp_path / name).symlink_to("/bin/sh")
    becomes_other = subprocess.Popen(  # a QEMU-named process that then runs something else
        [str(tmp_path / "qemu-kvm"), "-c", "read x; exec sleep 60", "-name", "guest=first"],
        stdin=subprocess.PIPE,
    )
    becomes_qemu = subprocess.Popen(  # a helper that then execs QEMU (as virt-launcher does)
        [str(tmp_path / "virtlogd"), "-c", f"read x; exec {tmp_path / 'qemu-kvm'} -c 'sleep 60' -name late"],
        stdin=subprocess.PIPE,
    )
    ends = subprocess.Popen(
        [str(tmp_path / "qemu-kvm"), "-c", "read x", "-name", "ends"], stdin=subprocess.PIPE
    )
    children = [becomes_other, becomes_qemu, ends]
    try:
        ours = {child.pid for child in children}
        scanner = Scanner("/proc", NAMES)

        def seen() -> dict[int, tuple[str, str | None]]:
            return {
                r.pid: (r.name, qemu_vm_name(r.argv) if r.is_qemu else None)
                for r in scanner.scan(pss=False)
                if r.pid in ours
            }

        deadline = time.monotonic() + 20
        while len(seen()) < 3:  # the shells have not all exec'd their symlinked names yet
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert seen() == {
            becomes_other.pid: ("qemu-kvm", "first"),
            becomes_qemu.pid: ("virtlogd", None),
            ends.pid: ("qemu-kvm", "ends"),
        }
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.close()
        ends.wait()
        deadline = time.monotonic() + 20
        while (now := seen()) != {becomes_qemu.pid: ("qemu-kvm", "late")}:
            assert time.monotonic() < deadline, now
            time.sleep(0.05)
    finally:
        for child in children:
            child.kill()
            child.wait()


async def test_with_the_api_a_running_pod_without_process_is_logged_and_counted(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=6, log_lines=0)
    node = population.nodes[0]
    here = [vmi for vmi in population.vmis if vmi.node == node]
    with_process, without = here[0], here[1]
    pod = population.launcher_of(with_process)
    cgroup = f"0::/kubepods.slice/kubepods-pod{pod.uid.replace('-', '_')}.slice/cri-containerd-1.scope\n"
    _fake_process(tmp_path, 100, "qemu-kvm", argv=("qemu-kvm", "-name", "guest=x"), cgroup=cgroup)
    source = ProcfsSource(
        MemstatSettings(proc_root=tmp_path, namespace=("vms",)),
        await inventory(["vms"], node=node, vmis=False),
        node,
    )
    with caplog.at_level(logging.WARNING):
        samples = await source.poll(NOW)
    got = [(s.vm, s.pod, s.node, s.process) for s in samples]
    assert got == [(with_process.name, pod.name, node, "qemu-kvm")]
    logged = [r for r in caplog.records if r.getMessage().endswith("no matching process")]
    missing = {getattr(r, "vm", None) for r in logged}
    assert without.name in missing and with_process.name not in missing
    assert source.skipped == len(here) - 1  # only this node's pods are expected here


def test_a_process_caught_mid_exec_is_identified_once_its_argv_exists(tmp_path: Path) -> None:
    """exec sets the new comm before the new argv: an empty cmdline must not be remembered as the argv."""
    _fake_process(tmp_path, 42, "qemu-kvm", argv=("qemu-kvm", "-name", "guest=late"))
    (tmp_path / "42" / "cmdline").write_bytes(b"")  # what /proc shows between those two steps
    scanner = Scanner(tmp_path, NAMES)
    assert scanner.scan(pss=False) == []
    (tmp_path / "42" / "cmdline").write_bytes(b"qemu-kvm\0-name\0guest=late\0")
    [record] = scanner.scan(pss=False)
    assert (record.pid, record.name, qemu_vm_name(record.argv)) == (42, "qemu-kvm", "late")
