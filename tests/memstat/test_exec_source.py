"""The exec source: its scan script on this machine's /proc, and one exec per pod against the test cluster."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import CommandResult, KubeVirtCluster, launcher_processes, proc_status
from stats_log_collector.kube import KubeClient
from stats_log_collector.memstat.exec_source import ExecSource, samples_from_scan, scan_command, split_scan
from stats_log_collector.memstat.sample import VmPod
from tests.memstat.watched import delete_unseen

AT = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)
NAMES = ("virt-launcher", "virtqemud", "virtlogd", "qemu-kvm")
TARGET = VmPod("vms", "vm1", "virt-launcher-vm1-abcde", "node1")


def exec_paths(cluster: KubeVirtCluster) -> list[str]:
    return [r.path for r in cluster.requests() if r.path.endswith("/exec")]


# --- pure -----------------------------------------------------------------------------------------------


def test_split_scan_ignores_a_marker_whose_process_exited() -> None:
    output = "### pid 7\n### pid 82\nName:\tqemu-kvm\nVmRSS:\t 10 kB\n### pid x\nName:\ty\n"
    assert split_scan(output) == [(82, "Name:\tqemu-kvm\nVmRSS:\t 10 kB\n")]


def test_samples_from_scan_every_pid_of_a_name_under_its_configured_name() -> None:
    long_name = "virt-launcher-monitor"  # the kernel reports "virt-launcher-m"
    output = "".join(
        f"### pid {pid}\n{proc_status(name, pid, vm_rss_kb=rss, rss_file_kb=rss // 4)}"
        for pid, name, rss in ((1, long_name, 1000), (82, "qemu-kvm", 200_000), (90, "qemu-kvm", 3000))
    )
    samples = samples_from_scan(output, TARGET, (long_name, "qemu-kvm"), AT)
    assert [(s.process, s.pid, s.rss_bytes) for s in samples] == [
        (long_name, 1, 1000 * 1024),
        ("qemu-kvm", 82, 200_000 * 1024),
        ("qemu-kvm", 90, 3000 * 1024),
    ]
    qemu = samples[1]
    assert (qemu.source, qemu.namespace, qemu.vm, qemu.pod, qemu.node) == ("exec", *TARGET.__dict__.values())
    assert qemu.rss_file_bytes == 50_000 * 1024
    assert qemu.rss_anon_bytes == 150_000 * 1024
    assert qemu.status_kb["VmRSS"] == 200_000 and qemu.timestamp == AT


def scan_record(pid: int, name: str, argv: list[str], rss_kb: int) -> str:
    """One process as the scan script prints it: marker, status, cmdline marker, argv, newline."""
    cmdline = "".join(f"{arg}\0" for arg in argv)
    return f"### pid {pid}\n{proc_status(name, pid, vm_rss_kb=rss_kb)}### cmdline\n{cmdline}\n"


def test_any_qemu_is_sampled_under_its_whole_name_whatever_process_names_says() -> None:
    output = "".join(
        [
            scan_record(
                1, "virt-launcher-monitor", ["/usr/bin/virt-launcher-monitor", "--name", "vm1"], 18_000
            ),
            scan_record(25, "virtqemud", ["/usr/sbin/virtqemud"], 31_000),
            # comm "qemu-system-x86" (15 characters), argv[0] says the rest
            scan_record(
                82, "qemu-system-x86_64", ["/usr/bin/qemu-system-x86_64", "-name", "guest=vms_vm1"], 215_000
            ),
            scan_record(90, "qemu-kvm", ["/usr/libexec/qemu-kvm", "-name", "guest=vms_vm1"], 9_000),
            # exec -a: argv[0] renamed, comm kept
            scan_record(91, "qemu-system-aarch64", ["renamed", "-S"], 4_000),
            # a status, then nothing: exited before its cmdline was read
            f"### pid 92\n{proc_status('qemu-kvm', 92, vm_rss_kb=1)}",
            "### pid 93\n### cmdline\n\n",  # exited before its status was read
        ]
    )
    samples = samples_from_scan(output, TARGET, ("virt-launcher-monitor", "virtqemud"), AT)
    assert [(s.process, s.pid, s.rss_bytes) for s in samples] == [
        ("virt-launcher-monitor", 1, 18_000 * 1024),
        ("virtqemud", 25, 31_000 * 1024),
        ("qemu-system-x86_64", 82, 215_000 * 1024),
        ("qemu-kvm", 90, 9_000 * 1024),
        ("qemu-system-aar", 91, 4_000 * 1024),
        ("qemu-kvm", 92, 1024),
    ]
    assert split_scan(output)[-1][0] == 92


def test_scan_command_cuts_names_as_the_kernel_does() -> None:
    assert scan_command(["virt-launcher-monitor", "qemu-kvm", "qemu-kvm"])[3:] == [
        "sh",
        "virt-launcher-m",
        "qemu-kvm",
    ]


def test_the_scan_script_on_this_machine_finds_every_pid_of_a_name(tmp_path: Path) -> None:
    # Two real processes with one name (a copy of sleep): both must be read. The name is this run's own
    # and not QEMU-like, since the script also reports every QEMU on the machine (a demo's, another run's).
    name = f"vmhelper-{os.getpid() % 100_000}"
    sleeper = tmp_path / name
    sleeper.write_bytes(Path("/bin/sleep").read_bytes())
    sleeper.chmod(0o755)
    children = [subprocess.Popen([str(sleeper), "30"]) for _ in range(2)]
    try:
        output = subprocess.run(scan_command([name]), capture_output=True, text=True, check=True)
        samples = [s for s in samples_from_scan(output.stdout, TARGET, [name], AT) if s.process == name]
        assert sorted(s.pid or 0 for s in samples) == sorted(child.pid for child in children)
        for sample in samples:
            status = Path(f"/proc/{sample.pid}/status").read_text()
            assert f"{sample.status_kb['VmRSS']} kB" in status
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert os.getpid() not in {s.pid for s in samples}


def test_the_scan_script_finds_a_qemu_system_process_not_in_process_names(tmp_path: Path) -> None:
    # A copy of sleep named as an upstream QEMU binary: its comm is cut to "qemu-system-x86".
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_bytes(Path("/bin/sleep").read_bytes())
    qemu.chmod(0o755)
    child = subprocess.Popen([str(qemu), "30"])
    try:
        output = subprocess.run(scan_command(["virtlogd"]), capture_output=True, text=True, check=True)
        samples = samples_from_scan(output.stdout, TARGET, ["virtlogd"], AT)
    finally:
        child.kill()
        child.wait()
    mine = [s for s in samples if s.pid == child.pid]
    assert [s.process for s in mine] == ["qemu-system-x86_64"]


# --- against the cluster --------------------------------------------------------------------------------


async def test_figures_are_what_was_set_with_one_exec_per_pod(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=3, vms_per_namespace=5, log_lines=0)
    first = population.launcher_of(population.vmis[0])
    kubevirt_cluster.set_processes(
        "vms",
        first.name,
        {
            12: ("virt-launcher", proc_status("virt-launcher", 12, vm_rss_kb=58_000)),
            82: ("qemu-kvm", proc_status("qemu-kvm", 82, vm_rss_kb=215_000, rss_shmem_kb=1000)),
            97: ("qemu-kvm", proc_status("qemu-kvm", 97, vm_rss_kb=7_000)),
            99: ("bash", proc_status("bash", 99, vm_rss_kb=3_000)),
        },
    )
    kubevirt_cluster.clear_requests()

    samples = await ExecSource(client, await inventory(["vms"]), NAMES).poll(AT)

    mine = {(s.process, s.pid): s for s in samples if s.pod == first.name}
    assert {key: s.rss_bytes for key, s in mine.items()} == {
        ("virt-launcher", 12): 58_000 * 1024,
        ("qemu-kvm", 82): 215_000 * 1024,
        ("qemu-kvm", 97): 7_000 * 1024,
    }
    assert mine[("qemu-kvm", 82)].rss_shmem_bytes == 1000 * 1024
    others = [s for s in samples if s.pod != first.name]
    assert {(s.vm, s.process) for s in others} == {
        (v.name, name) for v in population.vmis[1:] for name in NAMES
    }
    assert sorted(exec_paths(kubevirt_cluster)) == sorted(
        f"/api/v1/namespaces/vms/pods/{population.launcher_of(v).name}/exec" for v in population.vmis
    )


async def test_failing_pods_are_skipped_and_the_others_sampled(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    caplog: pytest.LogCaptureFixture,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=5, log_lines=0)
    vanished, refused, failing, empty, *fine = population.vmis
    kubevirt_cluster.inject(f"/pods/{population.launcher_of(refused).name}/exec$", 500, times=None)
    kubevirt_cluster.set_processes("vms", population.launcher_of(empty).name, {})

    def handler(namespace: str, pod: str, container: str, command: list[str]) -> CommandResult:
        if pod == population.launcher_of(failing).name:
            return CommandResult(stderr=b"sh: not found\n", exit_code=127)
        return kubevirt_cluster.api.default_exec(namespace, pod, container, command)

    kubevirt_cluster.set_exec_handler(handler)
    source = ExecSource(client, await inventory(["vms"]), NAMES)
    delete_unseen(kubevirt_cluster, "vms", population.launcher_of(vanished).name)
    with caplog.at_level(logging.WARNING):
        samples = await source.poll(AT)

    assert {s.vm for s in samples} == {v.name for v in fine}
    assert source.skipped == 4  # counted in memstat_poll_failures
    skipped = {getattr(r, "vm", None): r.getMessage() for r in caplog.records if "skipped" in r.getMessage()}
    assert skipped == {
        vanished.name: "VM skipped for this sample: exec failed",
        refused.name: "VM skipped for this sample: exec failed",
        failing.name: "VM skipped for this sample: the status scan failed",
        empty.name: "VM skipped for this sample: no matching process",
    }


async def test_several_namespaces_all_namespaces_and_bounded_execs(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("a", "b", "c"), nodes=2, vms_per_namespace=3, log_lines=0)
    every = {(v.namespace, v.name) for v in population.vmis}

    samples = await ExecSource(client, await inventory(["a", "c"]), ["qemu-kvm"]).poll(AT)
    assert {(s.namespace, s.vm) for s in samples} == {k for k in every if k[0] in ("a", "c")}

    running, most = 0, 0

    async def slow(namespace: str, pod: str, container: str, command: list[str]) -> CommandResult:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        return kubevirt_cluster.api.default_exec(namespace, pod, container, command)

    kubevirt_cluster.set_exec_handler(slow)
    kubevirt_cluster.clear_requests()
    samples = await ExecSource(client, await inventory(["*"]), ["qemu-kvm"], max_concurrency=2).poll(AT)
    assert {(s.namespace, s.vm) for s in samples} == every
    assert len(exec_paths(kubevirt_cluster)) == len(every)
    assert most == 2


def table_of(processes: dict[int, Any]) -> dict[int, tuple[str, str, tuple[str, ...]]]:
    return {pid: (p.name, p.status, p.argv) for pid, p in processes.items()}


async def test_a_qemu_system_process_is_found_through_the_real_exec_path(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=1, vms_per_namespace=2, log_lines=0)
    cross, upstream = population.vmis
    pod = population.launcher_of(cross).name
    processes = launcher_processes(
        cross.name, 300_000, namespace="vms", emulator="/usr/bin/qemu-system-x86_64"
    )
    kubevirt_cluster.set_processes("vms", pod, table_of(processes))

    source = ExecSource(client, await inventory(["vms"]), ["virt-launcher", "virtqemud", "virtlogd"])
    samples = await source.poll(AT)

    by_vm = {(s.vm, s.process): s for s in samples}
    assert by_vm[(cross.name, "qemu-system-x86_64")].rss_bytes == 300_000 * 1024
    assert by_vm[(cross.name, "qemu-system-x86_64")].pid == 82
    assert (upstream.name, "qemu-kvm") in by_vm
    assert {p for v, p in by_vm if v == cross.name} == {
        "virt-launcher",
        "virtqemud",
        "virtlogd",
        "qemu-system-x86_64",
    }
    assert source.skipped == 0


async def test_a_pod_without_qemu_is_counted_every_poll_and_logged_once(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    caplog: pytest.LogCaptureFixture,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=1, vms_per_namespace=3, log_lines=0)
    gone, *fine = population.vmis
    pod = population.launcher_of(gone).name
    kubevirt_cluster.set_processes("vms", pod, table_of(launcher_processes(gone.name, emulator=None)))
    source = ExecSource(client, await inventory(["vms"]), NAMES)

    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            samples = await source.poll(AT)
            assert source.skipped == 1  # memstat_poll_failures counts it every poll
    # its helpers are still sampled; the other VMs keep their QEMU
    assert {s.process for s in samples if s.vm == gone.name} == {"virt-launcher", "virtqemud", "virtlogd"}
    assert {s.vm for s in samples if s.process == "qemu-kvm"} == {v.name for v in fine}
    warned = [r for r in caplog.records if "no QEMU process" in r.getMessage()]
    assert [(getattr(r, "vm", None), getattr(r, "pod", None)) for r in warned] == [(gone.name, pod)]

    # QEMU back: no longer counted; gone again: logged again
    kubevirt_cluster.set_processes("vms", pod, table_of(launcher_processes(gone.name, namespace="vms")))
    await source.poll(AT)
    assert source.skipped == 0
    kubevirt_cluster.set_processes("vms", pod, table_of(launcher_processes(gone.name, emulator=None)))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await source.poll(AT)
    assert source.skipped == 1
    assert len([r for r in caplog.records if "no QEMU process" in r.getMessage()]) == 1
