"""``stats-log-collector memstat`` as a real process: procfs on real processes, kubelet on the cluster."""

from __future__ import annotations

import csv
import io
import json
import signal
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.sample import VmPod
from tests.helpers import http, wait_for
from tests.memstat.history import write_history


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []


def vm_rss_bytes(pid: int) -> int:
    line = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")
    )
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("pss", ["true", "false"])
def test_procfs_on_a_plain_host(memstat, fake_vm: int, tmp_path: Path, pss: str) -> None:
    process, port = memstat(MEMSTAT_SOURCE="procfs", PROCFS_PSS=pss)
    wait_for(lambda: http(port, "/readyz")[0] == 200, "ready after the first poll")
    csv_path = tmp_path / "data" / "mem-stats.csv"
    wait_for(lambda: any(row["pid"] == str(fake_vm) for row in csv_rows(csv_path)), "a row for the VM")
    expected = vm_rss_bytes(fake_vm)
    row = [row for row in csv_rows(csv_path) if row["pid"] == str(fake_vm)][-1]
    assert row["vm"] == "testvm" and row["process"] == "qemu-kvm" and row["source"] == "procfs"
    assert abs(int(row["rss_bytes"]) - expected) / expected < 0.02
    assert int(row["rss_bytes"]) > 64 << 20
    assert (int(row["pss_bytes"]) > 60 << 20) if pss == "true" else row["pss_bytes"] == ""
    _, body = http(port, "/api/vms")
    assert any(entry["vm"] == "testvm" for entry in json.loads(body))
    # One row per VM per poll in vm-stats.csv, served at /vm-stats.csv: no -m, no Kubernetes, so only
    # the measured figure (its processes' RSS) is known.
    vm_rows = [r for r in csv_rows(tmp_path / "data" / "vm-stats.csv") if r["vm"] == "testvm"]
    assert vm_rows and int(vm_rows[-1]["measured_bytes"]) > 64 << 20
    assert vm_rows[-1]["guest_memory_bytes"] == vm_rows[-1]["overhead_bytes"] == ""
    status, served = http(port, "/vm-stats.csv?vm=testvm")
    assert status == 200 and served.startswith(b"timestamp,namespace,vm,pod,node,source,guest_memory_bytes,")
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0 and time.monotonic() - began < 5


def test_kubelet_source_against_the_test_cluster(
    memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=3, log_lines=0)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    for index, vmi in enumerate(population.vmis):
        pod = population.launcher_of(vmi)
        kubevirt_cluster.set_container_memory(
            "vms", pod.name, "compute", (200 + index) << 20, (210 + index) << 20
        )
    process, port = memstat(KUBECONFIG=str(kubeconfig), NAMESPACE="vms")
    csv_path = tmp_path / "data" / "mem-stats.csv"
    wait_for(lambda: len({row["vm"] for row in csv_rows(csv_path)}) == 3, "rows for the 3 VMs")
    by_vm = {row["vm"]: row for row in csv_rows(csv_path)}
    for index, vmi in enumerate(population.vmis):
        assert by_vm[vmi.name]["rss_bytes"] == str((200 + index) << 20)
        assert by_vm[vmi.name]["working_set_bytes"] == str((210 + index) << 20)
        assert by_vm[vmi.name]["source"] == "kubelet" and by_vm[vmi.name]["process"] == "compute"
    _, metrics = http(port, "/metrics")
    assert metrics.count(b"memstat_rss_bytes{") == 3
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_port_in_use_is_one_error_and_exit_2(memstat, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        process, _ = memstat(MEMSTAT_SOURCE="procfs", HTTP_PORT=str(taken.getsockname()[1]))
        assert process.wait(timeout=20) == 2
    assert b"HTTP_PORT: cannot listen on" in (tmp_path / "memstat.stderr").read_bytes()


def test_the_dashboard_series_are_read_from_the_history_at_start(memstat, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with CsvStore(tmp_path / "data", max_csv_bytes=3_000) as store:  # archives and a live file
        for minute in range(120, 0, -1):
            at = now - timedelta(minutes=minute)
            store.append(
                [VmPod("ns", "old-vm", "pod").sample(at, "kubelet", "compute", None, rss_bytes=minute << 20)]
            )
        assert store.archives()
    _, port = memstat(MEMSTAT_SOURCE="procfs")

    def series() -> dict[str, object]:
        status, body = http(port, "/api/series?since=-3h&points=180")
        return json.loads(body) if status == 200 else {}

    wait_for(lambda: series().get("complete") is True, "the history read")
    values = [v for v in series()["series"]["ns/old-vm"] if v is not None]  # type: ignore[index]
    assert sorted(values) == [minute << 20 for minute in range(1, 121)]


def test_sigterm_while_the_history_is_still_being_read(memstat, tmp_path: Path) -> None:
    write_history(tmp_path / "data", vms=100, hours=24)  # 1.7 million rows: seconds of reading
    process, port = memstat(MEMSTAT_SOURCE="procfs", PROC_ROOT=str(tmp_path))
    wait_for(lambda: http(port, "/readyz")[0] == 200, "ready")
    assert b'"complete": false' in http(port, "/api/series?since=-1m")[1]
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0 and time.monotonic() - began < 5
