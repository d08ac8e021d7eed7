"""The kubelet source, kubelets read directly against through the API server's node proxy, in one run.

Why: KUBELET_ACCESS=direct (the default) reads ``https://<node>:<port>/stats/summary`` from each kubelet,
authorized as ``get nodes/stats``; KUBELET_ACCESS=proxy sends the same request through the API server
(``/api/v1/nodes/<node>/proxy/stats/summary``), which needs ``get nodes/proxy`` and costs the API server
one proxied request per node per poll. Both run here against the same KubeVirt test cluster, in a
process of its own as an API server and its kubelets are: its API over HTTP, one HTTPS kubelet per node
with certificates of the cluster CA and the token check. The figures compare request counts and client
work, not a real cluster's latency: here the API is plain HTTP, so only the direct path pays for TLS,
while a real API server speaks TLS to the client and again to the kubelet, a hop and a second TLS
session for every proxied request. The API server's share of the work is what direct access removes.

Reported per poll (median of ``--polls``, after one warm-up poll that opens connections and lists the
nodes): requests the API server saw, requests the kubelets saw, samples, wall time, CPU of the client
(the collector), CPU of the cluster process.

    .venv/bin/python bench/bench_kubelet_access.py [--sizes 1000:50 10000:500] [--polls 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.kubelet import SummaryReader, summary_reader
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.memstat.kubelet_source import KubeletSource
from stats_log_collector.memstat.vm_figures import vm_figures
from stats_log_collector.settings import KubeletSettings, KubeSettings

NAMESPACE = "vms"


class ClusterProcess:
    """The test cluster in a process of its own: the client's wall time and CPU are its own."""

    def __init__(self, vms: int, nodes: int, kubeconfig: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve_cluster, args=(child_end, vms, nodes, kubeconfig), daemon=True
        )
        self._process.start()
        self._pipe.recv()  # the kubeconfig is written

    def call(self, command: str) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def close(self) -> None:
        self.call("stop")
        self._process.join(10)


def _serve_cluster(pipe: Connection, vms: int, nodes: int, kubeconfig: Path) -> None:
    with KubeVirtCluster() as cluster:
        cluster.populate((NAMESPACE,), nodes=nodes, vms_per_namespace=vms, log_lines=0)
        cluster.write_kubeconfig(kubeconfig)
        pipe.send(None)
        while (command := pipe.recv()) != "stop":
            if command == "clear":
                cluster.clear_requests()
                cluster.clear_kubelet_requests()
                pipe.send(None)
            elif command == "counts":
                pipe.send((len(cluster.requests()), len(cluster.kubelet_requests())))
            elif command == "cpu":
                times = os.times()
                pipe.send(times.user + times.system)
        pipe.send(None)


@dataclass(frozen=True)
class PollFigures:
    api_requests: int
    kubelet_requests: int
    samples: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float


async def measure(cluster: ClusterProcess, source: KubeletSource, polls: int) -> PollFigures:
    """Medians over ``polls`` polls, each computing the per-VM figures as the poller does."""
    rows = []
    for _ in range(polls):
        cluster.call("clear")
        server = cluster.call("cpu")
        wall, cpu = time.perf_counter(), time.process_time()
        samples = await source.poll(datetime.now(UTC))
        vm_figures(samples, source.vm_memory)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server = cluster.call("cpu") - server
        api, kubelet = cluster.call("counts")
        rows.append((api, kubelet, len(samples), wall, cpu, server))
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    return PollFigures(int(medians[0]), int(medians[1]), int(medians[2]), *medians[3:])


async def run(sizes: list[tuple[int, int]], polls: int) -> None:
    print(
        f"{'VMs':>6} {'nodes':>5} {'KUBELET_ACCESS':<15} {'API req':>8} {'kubelet req':>11} {'samples':>8}"
        f" {'wall s':>7} {'client CPU s':>12} {'server CPU s':>12}"
    )
    for vms, nodes in sizes:
        with tempfile.TemporaryDirectory() as folder:
            kubeconfig = Path(folder) / "kubeconfig"
            cluster = ClusterProcess(vms, nodes, kubeconfig)
            try:
                kube = KubeSettings(kubeconfig=kubeconfig, kube_request_timeout_secs=60.0, kube_retries=1)
                client = await KubeClient.connect(kube, RetryPolicy(retries=1, base_delay=0.01))
                try:
                    figures = {}
                    for access in ("proxy", "direct"):
                        reader: SummaryReader = await summary_reader(
                            client, KubeletSettings(kubelet_access=access), kube
                        )
                        try:
                            source = KubeletSource(client, [NAMESPACE], reader=reader)
                            await source.poll(datetime.now(UTC))  # warm: connections open, nodes listed
                            figures[access] = result = await measure(cluster, source, polls)
                        finally:
                            await reader.close()
                        print(
                            f"{vms:>6} {nodes:>5} {access:<15} {result.api_requests:>8}"
                            f" {result.kubelet_requests:>11} {result.samples:>8} {result.wall_s:>7.3f}"
                            f" {result.client_cpu_s:>12.3f} {result.server_cpu_s:>12.3f}"
                        )
                    proxy, direct = figures["proxy"], figures["direct"]
                    wall = direct.wall_s / proxy.wall_s
                    client_cpu = direct.client_cpu_s / proxy.client_cpu_s
                    server_cpu = direct.server_cpu_s / proxy.server_cpu_s
                    print(
                        f"{'':>6} {'':>5} {'direct/proxy':<15} {'':>8} {'':>11} {'':>8}"
                        f" {wall:>7.2f} {client_cpu:>12.2f} {server_cpu:>12.2f}"
                    )
                finally:
                    await client.close()
            finally:
                cluster.close()


def size(text: str) -> tuple[int, int]:
    vms, _, nodes = text.partition(":")
    return int(vms), int(nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=size, nargs="*", default=[(1000, 50), (10000, 500)], help="VMS:NODES")
    parser.add_argument("--polls", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.sizes, args.polls))


if __name__ == "__main__":
    main()
