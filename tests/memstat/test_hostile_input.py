"""memstat against hostile input and faults: a second instance, bad settings, malformed answers, signals.

Real processes, real files and the test cluster over HTTP (issue 13).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.kubelet_source import KubeletSource
from stats_log_collector.memstat.procfs import Scanner, sample_procfs
from stats_log_collector.memstat.sample import VmPod
from tests.helpers import http, wait_for
from tests.memstat.history import write_history


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []


def stderr_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "memstat.stderr"
    return path.read_text().splitlines() if path.exists() else []


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_second_memstat_on_one_data_dir_exits_2_and_touches_nothing(
    memstat, fake_vm: int, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first, port = memstat(MEMSTAT_SOURCE="procfs", POLL_INTERVAL_SECS="3600")
    wait_for(lambda: any(r["pid"] == str(fake_vm) for r in csv_rows(data / "mem-stats.csv")), "a row")
    before = snapshot(data)
    # Tiny MAX_CSV_BYTES: had it opened the store, its first append would rotate the first's CSV.
    second, _ = memstat(MEMSTAT_SOURCE="procfs", MAX_CSV_BYTES="1")
    assert second.wait(timeout=30) == 2
    [line] = [line for line in stderr_lines(tmp_path) if "DATA_DIR" in line]
    assert f"DATA_DIR: {data} is in use by another instance (pid {first.pid})" in line
    assert snapshot(data) == before
    assert http(port, "/readyz")[0] == 200

    first.kill()  # kill -9: the kernel frees the lock; nothing stale is left for an operator
    first.wait()
    third, third_port = memstat(MEMSTAT_SOURCE="procfs")
    wait_for(lambda: http(third_port, "/readyz")[0] == 200, "the next instance runs")
    assert third.poll() is None


def test_missing_proc_root_exits_2_with_one_line(memstat, tmp_path: Path) -> None:
    process, _ = memstat(MEMSTAT_SOURCE="procfs", PROC_ROOT=str(tmp_path / "no-proc"))
    assert process.wait(timeout=30) == 2
    [line] = stderr_lines(tmp_path)
    assert "PROC_ROOT" in line and str(tmp_path / "no-proc") in line and "not a directory" in line


def test_http_port_in_use_exits_2_with_one_line(memstat, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, _ = memstat(MEMSTAT_SOURCE="procfs", HTTP_PORT=str(port))
        assert process.wait(timeout=30) == 2
    [line] = stderr_lines(tmp_path)
    assert "configuration error: HTTP_PORT" in line and f"cannot listen on {port}" in line


def test_a_kubeconfig_that_is_not_one_exits_2_with_one_line(memstat, tmp_path: Path) -> None:
    process, _ = memstat(KUBECONFIG="/etc/passwd")
    assert process.wait(timeout=30) == 2
    [line] = stderr_lines(tmp_path)
    assert "configuration error: KUBECONFIG: /etc/passwd is not a kubeconfig file" in line


def test_sighup_stops_like_sigterm(memstat, fake_vm: int, tmp_path: Path) -> None:
    process, port = memstat(MEMSTAT_SOURCE="procfs")
    wait_for(lambda: http(port, "/readyz")[0] == 200, "ready")
    began = time.monotonic()
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=10) == 0 and time.monotonic() - began < 5
    assert any("stopping" in line and "SIGHUP" in line for line in stderr_lines(tmp_path))
    text = (tmp_path / "data" / "mem-stats.csv").read_bytes()
    assert text.endswith(b"\n") and f",{fake_vm},".encode() in text


def test_legacy_format_without_kubernetes_names_the_vm(memstat, fake_vm: int, tmp_path: Path) -> None:
    memstat(MEMSTAT_SOURCE="procfs", CSV_FORMAT="legacy")
    path = tmp_path / "data" / "mem-stats.csv"
    wait_for(lambda: any(r["process"] == "qemu-kvm" for r in csv_rows(path)), "a legacy row")
    rows = [r for r in csv_rows(path) if r["process"] == "qemu-kvm"]
    # Other QEMUs on the machine (a demo, another run) are sampled too: each row names its VM.
    assert "testvm" in {r["vmName"] for r in rows} and all(r["vmName"] for r in rows)


def test_pss_is_left_empty_above_procfs_pss_max_bytes(memstat, fake_vm: int, tmp_path: Path) -> None:
    # The fake VM holds 64 MiB: above a 16 MiB threshold; this test process (pytest) is no qemu.
    memstat(MEMSTAT_SOURCE="procfs", PROCFS_PSS="true", PROCFS_PSS_MAX_BYTES="16MiB")
    path = tmp_path / "data" / "mem-stats.csv"
    wait_for(lambda: len([r for r in csv_rows(path) if r["pid"] == str(fake_vm)]) >= 2, "two rows")
    rows = [r for r in csv_rows(path) if r["pid"] == str(fake_vm)]
    assert all(r["pss_bytes"] == "" and int(r["rss_bytes"]) > 64 << 20 for r in rows)


async def test_malformed_summaries_skip_their_node_or_pod(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    caplog: pytest.LogCaptureFixture,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=3, vms_per_namespace=6, log_lines=0)
    by_node: dict[str, list[str]] = {}
    for vmi in population.vmis:
        by_node.setdefault(population.launcher_of(vmi).node, []).append(population.launcher_of(vmi).name)
    bad_pod_node, not_an_object_node, good_node = sorted(by_node)
    first, *others = by_node[bad_pod_node]
    kubevirt_cluster.set_raw_summary(
        bad_pod_node,
        {
            "pods": [
                None,
                {"containers": [{"name": "compute", "memory": {"rssBytes": 1}}]},  # no podRef
                {"podRef": {"name": first, "namespace": "vms"},
                 "containers": [{"name": "compute", "memory": {"rssBytes": "12k"}}]},
                *({"podRef": {"name": pod, "namespace": "vms"},
                   "containers": [None, {"name": "compute", "memory": {"rssBytes": 5 << 20}}]}
                  for pod in others),
            ]
        },
    )  # fmt: skip
    kubevirt_cluster.set_raw_summary(not_an_object_node, ["not", "a", "summary"])
    source = KubeletSource(client, await inventory(["vms"]))
    samples = await source.poll(datetime.now(UTC))
    assert sorted(s.pod for s in samples) == sorted(others + by_node[good_node])
    assert all(s.rss_bytes == 5 << 20 for s in samples if s.pod in others)
    assert source.skipped == 1 + len(by_node[not_an_object_node])


def test_a_malformed_summary_is_counted_and_the_process_goes_on(
    memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=4, log_lines=0)
    nodes = sorted({population.launcher_of(vmi).node for vmi in population.vmis})
    kubevirt_cluster.set_raw_summary(nodes[0], {"pods": [None, {"podRef": None}, 7]})
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    process, port = memstat(KUBECONFIG=str(kubeconfig), NAMESPACE="vms")
    good = {
        population.launcher_of(v).name for v in population.vmis if population.launcher_of(v).node == nodes[1]
    }

    def failures() -> float:
        status, body = http(port, "/metrics")
        found = [
            line for line in body.decode().splitlines() if line.startswith("memstat_poll_failures_total")
        ]
        return float(found[0].split()[-1]) if status == 200 and found else 0.0

    wait_for(lambda: failures() >= 2 * (4 - len(good)), "the skipped VMs counted, two polls")
    assert {r["pod"] for r in csv_rows(tmp_path / "data" / "mem-stats.csv")} == good
    assert process.poll() is None


@pytest.mark.parametrize("background", [False, True])
def test_history_reads_during_rotations_see_every_row_once(tmp_path: Path, background: bool) -> None:
    start = datetime(2026, 11, 23, tzinfo=UTC)
    store = CsvStore(tmp_path, max_csv_bytes=4_000, max_archive_bytes=10**9)
    if background:  # not a parameter on the base commit, where the other case must fail on its own
        store = CsvStore(tmp_path, max_csv_bytes=4_000, max_archive_bytes=10**9, background=True)
    appended = 0
    done = threading.Event()
    problems: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not done.is_set():
            at_start = appended
            pids = [int(r["pid"]) for r in csv.DictReader(io.StringIO(b"".join(store.history()).decode()))]
            if pids != list(range(len(pids))) or len(pids) < at_start:
                problems.append(f"read {len(pids)} rows (kept at its start: {at_start}), in order: "
                                f"{pids == sorted(pids)}")  # fmt: skip
            reads += 1

    with store:
        thread = threading.Thread(target=reader)
        thread.start()
        deadline = time.monotonic() + 60
        try:
            poll = 0
            # Many reads across many rotations, however busy the machine (reads slow down as rows grow).
            while poll < 3_000 or (reads < 20 and time.monotonic() < deadline):
                at = start + timedelta(seconds=poll)
                poll += 1
                store.append(
                    [
                        VmPod("ns", "vm", "pod").sample(at, "procfs", "qemu", appended + k, rss_bytes=k)
                        for k in range(2)
                    ]
                )
                appended += 2
                time.sleep(0.0005)  # polls, not a flood: the reader gets its turns, reads stay short
        finally:
            done.set()
            thread.join()
        if background:
            assert store.wait_archived(30)
    assert not problems, problems[:5]
    assert reads >= 20 and len(store.archives()) > 10
    rows = list(csv.DictReader(io.StringIO(b"".join(store.history()).decode())))
    assert [int(r["pid"]) for r in rows] == list(range(appended))


def test_polls_and_http_go_on_during_a_large_rotation(memstat, fake_vm: int, tmp_path: Path) -> None:
    data = tmp_path / "data"
    history = write_history(data, vms=100, target_bytes=500_000_000)
    rotating = data / "mem-stats.csv.rotating"
    process, port = memstat(MEMSTAT_SOURCE="procfs", MAX_CSV_BYTES=str(history.size - 1))
    wait_for(rotating.exists, "the rotation of the large file", timeout=60, interval=0.01)
    latencies: list[float] = []
    rows_during = 0
    while rotating.exists():
        began = time.monotonic()
        status, _ = http(port, "/healthz")
        latencies.append(time.monotonic() - began)
        assert status == 200
        live = data / "mem-stats.csv"
        with open(live, "rb") as f:
            rows_during = max(rows_during, f.read().count(f",{fake_vm},".encode()))
        time.sleep(0.1)
    assert max(latencies) < 1.0, latencies
    assert rows_during >= 2, "polls went on during the rotation"
    assert process.poll() is None
    wait_for(lambda: len(list(data.glob("mem-stats-*.csv.gz"))) == 1, "the archive")
    assert os.path.getsize(next(data.glob("mem-stats-*.csv.gz"))) > 0


def fake_process(proc: Path, pid: int, vm: str, rss_kb: int) -> Path:
    """A /proc/<pid> as the kernel shows a QEMU started with ``-name guest=<vm>`` (files, not a process)."""
    base = proc / str(pid)
    base.mkdir(parents=True)
    (base / "comm").write_text("qemu-kvm\n")
    (base / "cmdline").write_bytes(b"\0".join([b"/usr/libexec/qemu-kvm", b"-name", f"guest={vm}".encode()]))
    (base / "status").write_text(f"Name:\tqemu-kvm\nVmRSS:\t{rss_kb} kB\nRssAnon:\t{rss_kb} kB\n")
    (base / "cgroup").write_text("0::/machine.slice\n")
    (base / "smaps_rollup").write_text(f"Rss:\t{rss_kb} kB\nPss:\t{rss_kb // 2} kB\n")
    return base


def test_a_process_that_cannot_be_read_fails_alone(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    broken = fake_process(proc, 100, "broken", 1000)
    (broken / "status").unlink()
    (broken / "status").mkdir()  # reading it fails with EISDIR: neither data nor "process gone"
    fake_process(proc, 200, "good", 2000)
    scanner = Scanner(proc, ["qemu-kvm"])
    samples = sample_procfs(scanner, ["qemu-kvm"], datetime.now(UTC), node="n1")
    assert [(s.vm, s.rss_bytes) for s in samples] == [("good", 2000 * 1024)]
    assert scanner.failed == 1
