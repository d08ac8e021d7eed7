"""memstat sources side by side: API requests and time per poll for 100 and 1,000 VMs on 50 nodes.

Why: the original sampled with two execs per pod per poll (``pidof``, then ``cat /proc/<pid>/status``), one
pod after the other, so its cost grows with the number of VMs; the exec source needs one exec per pod (run
concurrently, bounded), and the kubelet source one Summary request per node whatever the number of VMs.
All four run here against the same KubeVirt test cluster (a real HTTP server on 127.0.0.1, in a process
of its own as a real API server and its kubelets are), so the figures compare request counts and client
work, not a real cluster's latency. The test cluster indexes pods by node, so one Summary costs the
server the node's pods only, as it costs a real kubelet.

Reported per poll (median of ``--polls``, after one warm-up poll): requests seen by the server, wall
time, CPU of the client process (the collector), CPU of the server process. Then the procfs source over
``--procfs`` real QEMU-named processes, PSS on and off, next to ``ps`` reading the same /proc.

    .venv/bin/python bench/bench_memstat.py [--vms 100 1000] [--nodes 50] [--polls 3] [--procfs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient, KubeError, Pod
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.memstat.exec_source import ExecSource
from stats_log_collector.memstat.inventory import Targets
from stats_log_collector.memstat.kubelet_source import KubeletSource, launchers
from stats_log_collector.memstat.procfs import Scanner, sample_procfs
from stats_log_collector.memstat.procstatus import parse_status
from stats_log_collector.memstat.vm_figures import vm_figures
from stats_log_collector.settings import KubeSettings

NAMESPACE = "vms"
PROCESS_NAMES = ("virt-launcher", "virtqemud", "virtlogd", "qemu-kvm")
Poll = Callable[[], Awaitable[int]]  # returns the number of samples taken


async def original_poll(client: KubeClient) -> int:
    """The original's loop: every launcher pod, one after the other, ``pidof`` then ``cat`` of one PID."""
    samples = 0
    for pod in await client.list_launcher_pods([NAMESPACE]):
        try:
            pidof = await client.exec(NAMESPACE, pod.name, "compute", ["pidof", "virt-launcher"])
            pid = pidof.stdout.split()[0].decode()  # the original kept only the first PID
            status = await client.exec(NAMESPACE, pod.name, "compute", ["cat", f"/proc/{pid}/status"])
        except (KubeError, IndexError):
            continue
        samples += bool(parse_status(status.stdout.decode())[1])
    return samples


class ListedVms:
    """VMs and launcher pods listed at every poll: what the sources did before they kept them from
    watches (memstat/inventory.py); the reference of bench_memstat_watch.py, and here the same cost for
    every approach, as the original listed its pods each poll too."""

    def __init__(self, client: KubeClient, namespaces: Sequence[str]) -> None:
        self._client = client
        self._namespaces = tuple(namespaces)

    async def vm_targets(self) -> Targets:
        vmis, pods = await asyncio.gather(
            self._client.list_vmis(self._namespaces), self._client.list_launcher_pods(self._namespaces)
        )
        return launchers(vmis, pods)

    async def launcher_pods(self) -> list[Pod]:
        return await self._client.list_launcher_pods(self._namespaces)


def approaches(client: KubeClient) -> dict[str, Poll]:
    kubelet = KubeletSource(client, ListedVms(client, [NAMESPACE]))
    exec_source = ExecSource(client, ListedVms(client, [NAMESPACE]), PROCESS_NAMES)

    # Each poll also computes the per-VM figures, as the poller does: their cost is part of a poll's.
    async def kubelet_poll() -> int:
        samples = await kubelet.poll(datetime.now(UTC))
        vm_figures(samples, kubelet.vm_memory)
        return len(samples)

    async def exec_poll() -> int:
        samples = await exec_source.poll(datetime.now(UTC))
        vm_figures(samples, exec_source.vm_memory)
        return len(samples)

    return {
        "original (2 execs/pod, serial)": lambda: original_poll(client),
        "exec source (1 exec/pod)": exec_poll,
        "kubelet source (1 req/node)": kubelet_poll,
    }


class ClusterProcess:
    """The test cluster in a process of its own, as the API server and kubelets are on a real cluster.

    In the bench's own process the emulated server would share the GIL with the client and the two
    would slow each other down; here the client's wall time and CPU are its own, and the server's CPU
    is read from its process.
    """

    def __init__(self, vms: int, nodes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(target=_serve_cluster, args=(child_end, vms, nodes), daemon=True)
        self._process.start()
        self.url: str = self._pipe.recv()

    def call(self, command: str) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def close(self) -> None:
        self.call("stop")
        self._process.join(10)


def _serve_cluster(pipe: Connection, vms: int, nodes: int) -> None:
    with KubeVirtCluster() as cluster:
        cluster.populate((NAMESPACE,), nodes=nodes, vms_per_namespace=vms, log_lines=0)
        pipe.send(cluster.url)
        while (command := pipe.recv()) != "stop":
            if command == "clear":
                cluster.clear_requests()
                pipe.send(None)
            elif command == "requests":
                pipe.send(len(cluster.requests()))
            elif command == "cpu":
                times = os.times()
                pipe.send(times.user + times.system)
        pipe.send(None)


async def measure(cluster: ClusterProcess, poll: Poll, polls: int) -> tuple[int, int, float, float, float]:
    """Medians over ``polls`` polls: requests, samples, wall s, client CPU s, server CPU s."""
    requests, samples, walls, cpus, servers = [], [], [], [], []
    for _ in range(polls):
        cluster.call("clear")
        server = cluster.call("cpu")
        wall, cpu = time.perf_counter(), time.process_time()
        samples.append(await poll())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        servers.append(cluster.call("cpu") - server)
        requests.append(cluster.call("requests"))
    return (
        int(statistics.median(requests)),
        int(statistics.median(samples)),
        statistics.median(walls),
        statistics.median(cpus),
        statistics.median(servers),
    )


async def run(vm_counts: list[int], nodes: int, polls: int) -> None:
    print(
        f"{'VMs':>5} {'approach':<32} {'requests':>9} {'samples':>8} {'wall s':>8} {'client CPU s':>12}"
        f" {'server CPU s':>13}"
    )
    for vms in vm_counts:
        cluster = ClusterProcess(vms, nodes)
        try:
            settings = KubeSettings(kube_api_url=cluster.url, kube_request_timeout_secs=60.0, kube_retries=1)
            client = await KubeClient.connect(settings, RetryPolicy(retries=1, base_delay=0.01))
            try:
                for name, poll in approaches(client).items():
                    await poll()  # warm: connections open, as in a running collector
                    requests, samples, wall, cpu, server = await measure(cluster, poll, polls)
                    print(
                        f"{vms:>5} {name:<32} {requests:>9} {samples:>8} {wall:>8.3f} {cpu:>12.3f}"
                        f" {server:>13.3f}"
                    )
            finally:
                await client.close()
        finally:
            cluster.close()


@contextlib.contextmanager
def qemu_like_processes(count: int) -> Iterator[list[int]]:
    """``count`` real processes that look like QEMU to a /proc scan: comm ``qemu-kvm``, ``-name guest=vmN``.

    Each is ``/bin/sh`` (through a symlink, so comm is the link's name) blocked on ``read``: about 1 MiB
    each, so a thousand fit anywhere. Real QEMU has more mappings, which makes PSS dearer, not cheaper.
    """
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "qemu-kvm"
        binary.symlink_to("/bin/sh")
        children = [
            subprocess.Popen(
                [str(binary), "-c", "read x", "-name", f"guest=vm{i},debug-threads=on"], stdin=subprocess.PIPE
            )
            for i in range(count)
        ]
        try:
            yield [child.pid for child in children]
        finally:
            for child in children:
                child.kill()
            for child in children:
                child.wait()


def timed(work: Callable[[], int], repeat: int) -> tuple[int, float, float]:
    """Median (items, wall s, CPU s of this process and its children) over ``repeat`` runs."""
    items, walls, cpus = [], [], []
    for _ in range(repeat):
        before, wall = os.times(), time.perf_counter()
        items.append(work())
        walls.append(time.perf_counter() - wall)
        after = os.times()
        cpus.append(sum(after[:4]) - sum(before[:4]))
    return int(statistics.median(items)), statistics.median(walls), statistics.median(cpus)


def run_procfs(count: int, repeat: int) -> None:
    """procfs source over ``count`` real QEMU-named processes, PSS on and off, next to ``ps``."""
    names = PROCESS_NAMES

    def ps() -> int:  # procps reads stat + status of every process: a floor a /proc reader can aim at
        out = subprocess.run(["ps", "-e", "-o", "pid=,rss=,comm="], capture_output=True, check=True).stdout
        return out.count(b"qemu-kvm")

    def poll(pss: bool, scanner: Scanner | None) -> Callable[[], int]:
        def one() -> int:
            source = scanner if scanner is not None else Scanner("/proc", names)
            return len(sample_procfs(source, names, datetime.now(UTC), node="bench", pss=pss))

        return one

    with qemu_like_processes(count) as pids:
        time.sleep(0.5)
        print(f"\nprocfs over {len(pids)} QEMU-named processes ({len(os.listdir('/proc'))} entries in /proc),"
              f" median of {repeat}")  # fmt: skip
        print(f"{'approach':<44} {'samples':>8} {'wall ms':>8} {'CPU ms':>7} {'wall vs ps':>10}")
        rows: list[tuple[str, Callable[[], int]]] = [
            ("ps -e -o pid,rss,comm (reference)", ps),
            ("procfs, PSS on, first scan", poll(True, None)),
            ("procfs, PSS off, first scan", poll(False, None)),
        ]
        for pss in (True, False):
            scanner = Scanner("/proc", names)
            scanner.scan(pss=pss)  # what a running collector knows after its first poll
            rows.append(
                (
                    f"procfs, PSS {'on' if pss else 'off'} (PROCFS_PSS={str(pss).lower()}), steady",
                    poll(pss, scanner),
                )
            )
        reference = None
        for name, work in rows:
            items, wall, cpu = timed(work, repeat)
            reference = reference or wall
            print(f"{name:<44} {items:>8} {wall * 1000:>8.1f} {cpu * 1000:>7.1f} {wall / reference:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--polls", type=int, default=3)
    parser.add_argument("--procfs", type=int, default=1000, help="QEMU-named processes for procfs (0: skip)")
    args = parser.parse_args()
    asyncio.run(run(args.vms, args.nodes, args.polls))
    if args.procfs:
        run_procfs(args.procfs, max(5, args.polls))


if __name__ == "__main__":
    main()
