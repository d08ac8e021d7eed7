"""Per-VM figures end to end: every field per source, through the test cluster's HTTP API (kubelet,
exec) and real processes (procfs, QEMU's -m, cgroup files), into vm-stats.csv, /vm-stats.csv,
/api/vms and /metrics."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kubevirt_test_cluster import KubeVirtCluster, PodRef, VmiMemory
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.quantity import parse_quantity
from stats_log_collector.memstat.csv_routes import CsvRoutes
from stats_log_collector.memstat.csvstore import VM_LAYOUT, CsvStore
from stats_log_collector.memstat.exec_source import ExecSource
from stats_log_collector.memstat.kubelet_source import KubeletSource
from stats_log_collector.memstat.poller import Poller, SampleSource
from stats_log_collector.memstat.procfs import Scanner, cgroup_root_for, poll_procfs, vm_memory_from_records
from stats_log_collector.memstat.procfs_source import ProcfsSource
from stats_log_collector.memstat.server import build_app
from stats_log_collector.memstat.state import LiveState
from stats_log_collector.memstat.vm_figures import VM_COLUMNS, VmFigures
from stats_log_collector.settings import MemstatSettings

AT = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)
MiB = 1 << 20
NAMES = ("virt-launcher", "virtqemud", "virtlogd", "qemu-kvm")

# What each test VM is given, and what its figures must then be. The launcher's compute container is
# rendered as virt-controller does (renderresources.go: the VMI's request, or limit, plus the overhead).
LIMITED = VmiMemory(guest="1Gi", request="1Gi", limit="2Gi", compute_request="1294Mi", compute_limit="2318Mi")
FRACTION = VmiMemory(guest="1.5Gi", request=None, compute_request="1830Mi")  # no VMI request, no limit
EXPONENT = VmiMemory(guest=None, request="512e6", compute_request="782e6")  # guest from the request
NOTHING = VmiMemory(guest=None, request=None, compute_request=None)  # no memory anywhere
GARBAGE = VmiMemory(guest="lots", request="12k", compute_request="garbage", compute_limit="0")
VMS = {"limited": LIMITED, "fraction": FRACTION, "exponent": EXPONENT, "nothing": NOTHING, "garbage": GARBAGE}
CONSOLE_REQUEST, CONSOLE_LIMIT = 35_000_000, 60_000_000  # the guest-console-log sidecar's (objects.py)

EXPECTED_GUEST = {
    "limited": 1 << 30,
    "fraction": 3 << 29,
    "exponent": 512_000_000,
    "nothing": None,
    "garbage": 12_000,
}
EXPECTED_REQUEST = {
    "limited": 1294 * MiB + CONSOLE_REQUEST,
    "fraction": 1830 * MiB + CONSOLE_REQUEST,
    "exponent": 782_000_000 + CONSOLE_REQUEST,
    "nothing": CONSOLE_REQUEST,  # only the sidecar declares one
    "garbage": None,  # a request that is not a quantity: unknown
}
# Only LIMITED has a limit on every container (the compute's, the sidecar's, the init containers').
EXPECTED_LIMIT = {"limited": 2318 * MiB + CONSOLE_LIMIT}


@pytest.fixture
def launchers(kubevirt_cluster: KubeVirtCluster) -> dict[str, PodRef]:
    """The five VMs on two nodes (limited, exponent, garbage on node-0); each VM's launcher pod."""
    pods = {}
    for index, (name, memory) in enumerate(VMS.items()):
        vmi = kubevirt_cluster.add_vmi("vms", name, f"node-{index % 2}", memory=memory)
        pods[name] = kubevirt_cluster.add_launcher_pod(vmi)
    return pods


@pytest.fixture
def vms(launchers: dict[str, PodRef]) -> dict[str, str]:
    """Each VM's launcher pod name."""
    return {vm: pod.name for vm, pod in launchers.items()}


def _check_spec_fields(figures: dict[str, VmFigures]) -> None:
    assert set(figures) == set(VMS)
    for name, vm in figures.items():
        assert vm.guest_memory_bytes == EXPECTED_GUEST[name], name
        assert vm.memory_request_bytes == EXPECTED_REQUEST[name], name
        assert vm.memory_limit_bytes == EXPECTED_LIMIT.get(name), name
        measured = vm.measured_bytes
        assert measured is not None
        guest, request, limit = EXPECTED_GUEST[name], EXPECTED_REQUEST[name], EXPECTED_LIMIT.get(name)
        assert vm.overhead_bytes == (None if guest is None else measured - guest), name
        assert vm.headroom_bytes == (None if limit is None else limit - measured), name
        assert vm.requested_overhead_bytes == (None if guest is None or request is None else request - guest)


async def _poll(source: SampleSource, tmp_path: Path) -> tuple[LiveState, list[dict[str, str]]]:
    state = LiveState()
    with CsvStore(tmp_path) as store, CsvStore(tmp_path, layout=VM_LAYOUT) as vm_store:
        await Poller(source, store, state, 5, vm_store=vm_store).poll_once(AT)
    text = (tmp_path / "vm-stats.csv").read_text()
    assert text.splitlines()[0] == ",".join(VM_COLUMNS)
    return state, list(csv.DictReader(io.StringIO(text)))


def _check_csv(rows: list[dict[str, str]], state: LiveState) -> None:
    """vm-stats.csv holds exactly the published figures: integers, and empty cells for None."""
    by_vm = {vm.vm: vm for vm in state.collector.latest_vms}
    assert [row["vm"] for row in rows] == sorted(VMS)
    for row in rows:
        vm = by_vm[row["vm"]]
        assert row["timestamp"] == "2026-11-23T12:00:05.000Z" and row["namespace"] == "vms"
        for column in VM_COLUMNS[6:]:
            value = getattr(vm, column)
            assert row[column] == ("" if value is None else str(value)), (row["vm"], column)


async def test_kubelet_source_every_field(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    vms: dict[str, str],
    tmp_path: Path,
    inventory: Callable[..., Any],
) -> None:
    for index, pod in enumerate(vms.values()):
        kubevirt_cluster.set_container_memory(
            "vms", pod, "compute", (900 + index) * MiB, (1000 + index) * MiB
        )
        kubevirt_cluster.set_container_memory("vms", pod, "guest-console-log", 5 * MiB, 7 * MiB)
    kubevirt_cluster.clear_requests()
    state, rows = await _poll(KubeletSource(client, await inventory(["vms"])), tmp_path)
    figures = {vm.vm: vm for vm in state.collector.latest_vms}
    _check_spec_fields(figures)
    for index, name in enumerate(VMS):  # the whole pod's working set: compute + console sidecar
        assert figures[name].measured_bytes == (1000 + index + 7) * MiB
        assert (figures[name].pod, figures[name].source) == (vms[name], "kubelet")
    assert figures["limited"].overhead_bytes == (1007 - 1024) * MiB
    assert figures["limited"].headroom_bytes == 2318 * MiB + CONSOLE_LIMIT - 1007 * MiB
    _check_csv(rows, state)
    # the figures cost no request: two lists and their watches, one summary per node
    assert len(kubevirt_cluster.requests()) == 2 * 2 + 2


async def test_exec_source_every_field(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    vms: dict[str, str],
    tmp_path: Path,
    inventory: Callable[..., Any],
) -> None:
    source = ExecSource(client, await inventory(["vms"]), NAMES)
    state, rows = await _poll(source, tmp_path)
    figures = {vm.vm: vm for vm in state.collector.latest_vms}
    _check_spec_fields(figures)
    for name in VMS:  # the sum of its processes' RSS
        processes = [s for s in state.collector.latest if s.vm == name]
        assert {s.process for s in processes} >= {"qemu-kvm", "virtqemud"}
        assert figures[name].measured_bytes == sum(s.rss_bytes for s in processes)
    _check_csv(rows, state)


def _start_fake_qemu(directory: Path, *args: str) -> subprocess.Popen[bytes]:
    """A process the kernel names qemu-system-x86_64 (the comm qemu-system-x86), holding 48 MiB, with
    QEMU's arguments after its own."""
    binary = directory / "qemu-system-x86_64"
    if not binary.exists():
        binary.symlink_to(os.path.realpath(sys.executable))
    script = "x = bytearray(48 << 20); print('ready', flush=True); import time; time.sleep(120)"
    process = subprocess.Popen([str(binary), "-c", script, *args], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


@pytest.fixture
def fake_qemus(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    started = {
        "m160": _start_fake_qemu(tmp_path, "-name", "guest=m160,debug-threads=on", "-m", "160"),
        "libvirt": _start_fake_qemu(
            tmp_path, "-name", "guest=libvirt", "-m", "size=4194304k,slots=2,maxmem=8G"
        ),
        "nomem": _start_fake_qemu(tmp_path, "-name", "guest=nomem"),
        "badmem": _start_fake_qemu(tmp_path, "-name", "guest=badmem", "-m", "lots"),
    }
    yield started
    for process in started.values():
        process.kill()
        process.wait()


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024


async def test_procfs_on_a_plain_host_guest_memory_from_qemu_m(
    fake_qemus: dict[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    scanner = Scanner("/proc", NAMES)
    samples, memory = poll_procfs(
        scanner, AT, None, "host-1", pss=False, cgroup_root=cgroup_root_for("/proc")
    )
    ours = {s.vm: s for s in samples if s.vm in fake_qemus}
    assert {vm: s.pid for vm, s in ours.items()} == {vm: p.pid for vm, p in fake_qemus.items()}
    assert memory[("", "m160")].guest_memory_bytes == 160 * MiB
    assert memory[("", "libvirt")].guest_memory_bytes == 4 << 30
    assert (
        memory[("", "nomem")].guest_memory_bytes is None and memory[("", "badmem")].guest_memory_bytes is None
    )
    for found in memory.values():  # no Kubernetes: no request; the cgroup's limit where one is set
        assert found.memory_request_bytes is None
        assert found.memory_limit_bytes is None or found.memory_limit_bytes > 0

    class Source:
        name, skipped, vm_memory = "procfs", 0, memory

        async def poll(self, at: datetime) -> list:  # type: ignore[type-arg]
            return samples

    state, _ = await _poll_any(Source(), tmp_path)
    figures = {vm.vm: vm for vm in state.collector.latest_vms if vm.vm in fake_qemus}
    m160 = figures["m160"]
    assert m160.measured_bytes == ours["m160"].rss_bytes and m160.measured_bytes > 48 * MiB
    assert m160.overhead_bytes == m160.measured_bytes - 160 * MiB
    assert figures["nomem"].overhead_bytes is None and figures["nomem"].source == "procfs"
    assert abs(m160.measured_bytes - _rss(fake_qemus["m160"].pid)) < 4 * MiB


async def _poll_any(source: object, tmp_path: Path) -> tuple[LiveState, list[dict[str, str]]]:
    state = LiveState()
    with CsvStore(tmp_path) as store, CsvStore(tmp_path, layout=VM_LAYOUT) as vm_store:
        await Poller(source, store, state, 5, vm_store=vm_store).poll_once(AT)  # type: ignore[arg-type]
    return state, list(csv.DictReader(io.StringIO((tmp_path / "vm-stats.csv").read_text())))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_procfs_limit_from_the_process_cgroup(
    fake_qemus: dict[str, subprocess.Popen[bytes]], tmp_path: Path, version: str
) -> None:
    """The tightest limit on the QEMU's cgroup and its ancestors, from cgroup files laid out as the
    kernel does (a copy of the hierarchy the process's real /proc/<pid>/cgroup names)."""
    records = [r for r in Scanner("/proc", NAMES).scan(pss=False) if r.pid == fake_qemus["m160"].pid]
    [record] = records
    pod = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b.slice"
    container = f"{pod}/cri-containerd-42.scope"
    root = tmp_path / "cgroup"
    if version == "v2":
        cgroup, name, base = f"0::/{container}\n", "memory.max", root
        unlimited = "max\n"
    else:
        cgroup, name, base = f"4:memory:/{container}\n0::/\n", "memory.limit_in_bytes", root / "memory"
        unlimited = "9223372036854771712\n"
    (base / container).mkdir(parents=True)
    (base / container / name).write_text(unlimited)  # the container: no limit of its own
    (base / pod / name).write_text(f"{600 * MiB}\n")  # the pod's
    (base / "kubepods.slice" / name).write_text(f"{64 << 30}\n")  # the node's allocatable
    placed = [record.__class__(**{**record.__dict__, "cgroup": cgroup})]
    memory = vm_memory_from_records(placed, None, "host-1", root)
    assert memory[("", "m160")].memory_limit_bytes == 600 * MiB
    (base / pod / name).write_text(unlimited)
    assert vm_memory_from_records(placed, None, "host-1", root)[("", "m160")].memory_limit_bytes == 64 << 30
    (base / "kubepods.slice" / name).write_text("garbage")
    assert vm_memory_from_records(placed, None, "host-1", root)[("", "m160")].memory_limit_bytes is None
    shutil.rmtree(root)  # no hierarchy at all
    assert vm_memory_from_records(placed, None, "host-1", root)[("", "m160")].memory_limit_bytes is None


@pytest.fixture
def real_qemu() -> Iterator[int]:
    """A real QEMU with 128 MiB of RAM, stopped before its first instruction (-S): its PID."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no QEMU")
    command = ["qemu-system-x86_64", "-accel", "tcg", "-m", "128", "-smp", "1", "-S"]
    command += ["-name", "guest=real,debug-threads=on", "-nodefaults", "-no-user-config", "-display", "none"]
    qemu = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _rss_or_zero(qemu.pid) > 8 * MiB:
        time.sleep(0.1)
    yield qemu.pid
    qemu.kill()
    qemu.wait()


def _rss_or_zero(pid: int) -> int:
    try:
        return _rss(pid)
    except (OSError, StopIteration):
        return 0


async def test_real_qemu_guest_memory_and_overhead(real_qemu: int, tmp_path: Path) -> None:
    samples, memory = poll_procfs(Scanner("/proc", NAMES), AT, None, "host-1", pss=False)
    [found] = [s for s in samples if s.pid == real_qemu]
    assert found.vm == "real" and found.process == "qemu-system-x86_64"
    assert memory[("", "real")].guest_memory_bytes == 128 * MiB

    class Source:
        name, skipped, vm_memory = "procfs", 0, memory

        async def poll(self, at: datetime) -> list:  # type: ignore[type-arg]
            return [s for s in samples if s.vm == "real"]

    state, rows = await _poll_any(Source(), tmp_path)
    [vm] = state.collector.latest_vms
    assert vm.guest_memory_bytes == 128 * MiB and vm.measured_bytes == found.rss_bytes
    assert vm.overhead_bytes == found.rss_bytes - 128 * MiB
    assert rows[0]["overhead_bytes"] == str(found.rss_bytes - 128 * MiB)


# --- /vm-stats.csv, /api/vms, /metrics over HTTP -----------------------------------------------------


@pytest.fixture
async def served(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    vms: dict[str, str],
    tmp_path: Path,
    inventory: Callable[..., Any],
) -> AsyncIterator[tuple[TestServer, LiveState]]:
    state = LiveState()
    store, vm_store = CsvStore(tmp_path), CsvStore(tmp_path, layout=VM_LAYOUT, max_csv_bytes=2000)
    store.open()
    vm_store.open()
    poller = Poller(KubeletSource(client, await inventory(["vms"])), store, state, 5, vm_store=vm_store)
    for second in range(3):  # 3 polls of 5 VMs: past 2,000 bytes, so the file is rotated once
        await poller.poll_once(AT.replace(second=second))
    (tmp_path / "logs").mkdir()
    server = TestServer(build_app(state, tmp_path / "logs", CsvRoutes(store, vm_store).add_routes))
    await server.start_server()
    yield server, state
    await server.close()
    store.close()
    vm_store.close()


async def test_vm_stats_csv_route_filters_gzip_etag(
    served: tuple[TestServer, LiveState], tmp_path: Path
) -> None:
    server, _ = served
    archives = [name for name in os.listdir(tmp_path) if name.endswith(".csv.gz")]
    assert len(archives) == 1 and archives[0].startswith("vm-stats-")  # rotated, under its own names
    async with aiohttp.ClientSession() as session:
        url = server.make_url("/vm-stats.csv")
        async with session.get(url) as response:
            whole = await response.text()
            etag = response.headers["ETag"]
            assert response.headers["Content-Disposition"] == 'inline; filename="vm-stats.csv"'
        rows = list(csv.DictReader(io.StringIO(whole)))
        assert whole.startswith(",".join(VM_COLUMNS) + "\n") and len(rows) == 15
        async with session.get(url, headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        async with session.get(url, params={"vm": "limited", "since": "2026-11-23T12:00:01Z"}) as response:
            kept = list(csv.DictReader(io.StringIO(await response.text())))
        assert [(r["vm"], r["timestamp"]) for r in kept] == [
            ("limited", "2026-11-23T12:00:01.000Z"),
            ("limited", "2026-11-23T12:00:02.000Z"),
        ]
        assert kept[0]["memory_limit_bytes"] == str(2318 * MiB + CONSOLE_LIMIT)
        async with session.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await response.read()).decode() == whole


async def test_api_vms_and_metrics(served: tuple[TestServer, LiveState]) -> None:
    server, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/api/vms")) as response:
            answer = await response.json()
        async with session.get(server.make_url("/metrics")) as response:
            metrics = await response.text()
    assert [vm["vm"] for vm in answer] == sorted(VMS)
    limited = next(vm for vm in answer if vm["vm"] == "limited")
    assert limited["guest_memory_bytes"] == 1 << 30 and limited["source"] == "kubelet"
    assert limited["memory_limit_bytes"] == 2318 * MiB + CONSOLE_LIMIT
    assert limited["headroom_bytes"] == limited["memory_limit_bytes"] - limited["measured_bytes"]
    assert [p["process"] for p in limited["processes"]] == ["compute"]
    assert set(limited["processes"][0]) >= {"process", "pid", "rss_bytes", "pss_bytes", "working_set_bytes"}
    nothing = next(vm for vm in answer if vm["vm"] == "nothing")
    assert nothing["guest_memory_bytes"] is None and nothing["overhead_bytes"] is None
    assert json.dumps(answer)  # plain JSON: null, never NaN
    assert metrics.count("memstat_vm_measured_bytes{") == 5
    assert metrics.count("memstat_vm_memory_limit_bytes{") == 1  # only where a limit is known
    assert metrics.count("memstat_vm_guest_memory_bytes{") == 4
    assert "pod=" not in "".join(line for line in metrics.splitlines() if line.startswith("memstat_vm_"))
    assert parse_quantity("2318Mi") == 2318 * MiB  # the figure the test cluster rendered


def _fake_pid(proc: Path, pid: int, comm: str, argv: tuple[str, ...], rss_kb: int, cgroup: str) -> None:
    """A process directory as /proc shows one (the files the procfs source reads)."""
    d = proc / str(pid)
    d.mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "cgroup").write_text(cgroup)
    (d / "status").write_text(f"Name:\t{comm}\nPid:\t{pid}\nVmRSS:\t{rss_kb} kB\nRssAnon:\t{rss_kb} kB\n")
    (d / "smaps_rollup").write_text(
        f"0-1 ---p 00000000 00:00 0 [rollup]\nRss: {rss_kb} kB\nPss: {rss_kb} kB\n"
    )


async def test_procfs_with_the_api_request_and_limit_from_the_pod_else_the_cgroup(
    client: KubeClient,
    launchers: dict[str, PodRef],
    tmp_path: Path,
    inventory: Callable[..., Any],
) -> None:
    """On a node: guest memory from each QEMU's -m, request and limit from the pods the source lists
    anyway, the limit from the QEMU's cgroup where the pod has none. PROC_ROOT is tmp/proc, so the
    cgroup hierarchy is read from tmp/sys/fs/cgroup."""
    proc, cgroups = tmp_path / "proc", tmp_path / "sys" / "fs" / "cgroup"
    layout = {"limited": ("-m", "size=1048576k,slots=4,maxmem=4G"), "exponent": ("-m", "488")}
    for index, (vm, m_option) in enumerate(layout.items()):
        uid = launchers[vm].uid.replace("-", "_")
        pod_slice = f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice"
        cgroup = f"0::/{pod_slice}/cri-containerd-{index}.scope\n"
        argv = ("/usr/libexec/qemu-kvm", "-name", f"guest=vms_{vm},debug-threads=on", *m_option)
        _fake_pid(proc, 100 + index, "qemu-kvm", argv, (600 + index) * 1024, cgroup)
        _fake_pid(proc, 200 + index, "virtqemud", ("virtqemud",), 20 * 1024, cgroup)
        (cgroups / pod_slice).mkdir(parents=True)
        (cgroups / pod_slice / "memory.max").write_text(f"{1500 * MiB}\n")
    settings = MemstatSettings(proc_root=proc, namespace=("vms",), process_names=NAMES)
    state, rows = await _poll_any(
        ProcfsSource(settings, await inventory(["vms"], node="node-0", vmis=False), "node-0"), tmp_path
    )
    figures = {vm.vm: vm for vm in state.collector.latest_vms}
    assert set(figures) == set(layout)
    limited, exponent = figures["limited"], figures["exponent"]
    assert (limited.pod, limited.node, limited.source) == (launchers["limited"].name, "node-0", "procfs")
    assert limited.guest_memory_bytes == 1 << 30 and exponent.guest_memory_bytes == 488 * MiB  # QEMU's, exact
    assert limited.measured_bytes == 620 * MiB and exponent.measured_bytes == 621 * MiB
    assert limited.memory_request_bytes == EXPECTED_REQUEST["limited"]
    assert exponent.memory_request_bytes == EXPECTED_REQUEST["exponent"]
    assert limited.memory_limit_bytes == EXPECTED_LIMIT["limited"]  # the pod's, from the API
    assert exponent.memory_limit_bytes == 1500 * MiB  # the pod has none: its cgroup's
    assert exponent.headroom_bytes == (1500 - 621) * MiB and limited.overhead_bytes == (620 - 1024) * MiB
    assert exponent.requested_overhead_bytes == 782_000_000 + CONSOLE_REQUEST - 488 * MiB
    assert [(row["vm"], row["memory_limit_bytes"]) for row in rows] == [
        ("exponent", str(1500 * MiB)),
        ("limited", str(EXPECTED_LIMIT["limited"])),
    ]
