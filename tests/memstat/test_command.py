"""``stats-log-collector memstat`` as a real process: procfs on real processes, kubelet on the cluster."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stats_log_collector.testing import KubeVirtCluster


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def memstat(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], int]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        environ.update(
            {"DATA_DIR": str(tmp_path / "data"), "HTTP_PORT": str(port), "POLL_INTERVAL_SECS": "1", **env}
        )
        environ["HOME"] = str(tmp_path)  # no ~/.kube/config unless a test gives one
        process = subprocess.Popen(
            [sys.executable, "-m", "stats_log_collector", "memstat", *args],
            env=environ,
            stderr=open(tmp_path / "memstat.stderr", "ab"),  # noqa: SIM115
        )
        started.append(process)
        return process, port

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def fake_vm(tmp_path: Path) -> Iterator[int]:
    """A process named qemu-kvm holding 64 MiB, started as QEMU is: ``-name guest=...``."""
    binary = tmp_path / "qemu-kvm"
    binary.symlink_to(os.path.realpath(sys.executable))
    process = subprocess.Popen(
        [
            str(binary),
            "-c",
            "import sys, time; x = bytearray(64 << 20); print('ready', flush=True); time.sleep(120)",
            "-name",
            "guest=testvm,debug-threads=on",
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    yield process.pid
    process.kill()
    process.wait()


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []


def vm_rss_bytes(pid: int) -> int:
    line = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")
    )
    return int(line.split()[1]) * 1024


def test_procfs_on_a_plain_host(memstat, fake_vm: int, tmp_path: Path) -> None:
    process, port = memstat(MEMSTAT_SOURCE="procfs")
    wait_for(lambda: http(port, "/readyz")[0] == 200, "ready after the first poll")
    csv_path = tmp_path / "data" / "mem-stats.csv"
    wait_for(lambda: any(row["pid"] == str(fake_vm) for row in csv_rows(csv_path)), "a row for the VM")
    expected = vm_rss_bytes(fake_vm)
    row = [row for row in csv_rows(csv_path) if row["pid"] == str(fake_vm)][-1]
    assert row["vm"] == "testvm" and row["process"] == "qemu-kvm" and row["source"] == "procfs"
    assert abs(int(row["rss_bytes"]) - expected) / expected < 0.02
    assert int(row["rss_bytes"]) > 64 << 20
    _, body = http(port, "/api/vms")
    assert any(entry["vm"] == "testvm" for entry in json.loads(body))
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


def test_port_in_use_is_one_error_and_exit_1(memstat, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        process, _ = memstat(MEMSTAT_SOURCE="procfs", HTTP_PORT=str(taken.getsockname()[1]))
        assert process.wait(timeout=20) == 1
    assert b"cannot listen on HTTP_PORT" in (tmp_path / "memstat.stderr").read_bytes()
