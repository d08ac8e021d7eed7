"""memstat's kubelet source at 10,000 VMs on 500 nodes: VMs kept from watches next to a list per poll.

Why: listing every VMI and launcher pod at every poll moves tens of MB of JSON per poll at this size,
for objects that rarely change; the inventory (memstat/inventory.py) lists them once and then follows
watch events. Both run here in one process against the same test cluster (a real HTTP server in a
process of its own, populated with ``--vms`` VMs on ``--nodes`` nodes), one after the other.

Reported per poll (median of ``--polls``, after one warm-up poll): requests the server saw, bytes of
answers the client read (``KubeClient.bytes_read``: bodies, watch events included), wall time, CPU of
this process (the collector) and of the server. Then memstat itself, as a real process polling every
``--interval`` seconds for ``--process-polls`` polls: its VmRSS and VmHWM (peak) holding every VM's
series, and its CPU per poll in that steady state.

    .venv/bin/python bench/bench_memstat_watch.py [--vms 10000] [--nodes 500] [--polls 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bench_memstat import NAMESPACE, ClusterProcess, ListedVms, Poll

from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.memstat.inventory import Inventory
from stats_log_collector.memstat.kubelet_source import KubeletSource
from stats_log_collector.memstat.vm_figures import vm_figures
from stats_log_collector.settings import KubeSettings


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def kubelet_poll(source: KubeletSource) -> Poll:
    async def poll() -> int:  # the per-VM figures too, as the poller computes them
        samples = await source.poll(datetime.now(UTC))
        vm_figures(samples, source.vm_memory)
        return len(samples)

    return poll


async def measure(cluster: ClusterProcess, client: KubeClient, poll: Poll, polls: int) -> dict[str, float]:
    """Medians over ``polls`` polls."""
    rows: dict[str, list[float]] = {
        key: [] for key in ("requests", "bytes", "samples", "wall", "cpu", "server")
    }
    for _ in range(polls):
        cluster.call("clear")
        server, read = cluster.call("cpu"), client.bytes_read
        wall, cpu = time.perf_counter(), time.process_time()
        rows["samples"].append(await poll())
        rows["wall"].append(time.perf_counter() - wall)
        rows["cpu"].append(time.process_time() - cpu)
        rows["bytes"].append(client.bytes_read - read)
        rows["server"].append(cluster.call("cpu") - server)
        rows["requests"].append(cluster.call("requests"))
    return {key: statistics.median(values) for key, values in rows.items()}


async def side_by_side(cluster: ClusterProcess, polls: int) -> None:
    settings = KubeSettings(kube_api_url=cluster.url, kube_request_timeout_secs=120.0, kube_retries=1)
    client = await KubeClient.connect(settings, RetryPolicy(retries=1, base_delay=0.01))
    inventory = Inventory(client, [NAMESPACE], sync_timeout=600)
    stop = asyncio.Event()
    watching = asyncio.create_task(inventory.run(stop))
    try:
        began = time.perf_counter()
        await inventory.wait_synced()
        synced = time.perf_counter() - began
        approaches = {
            "list per poll (before)": KubeletSource(client, ListedVms(client, [NAMESPACE])),
            "watch (inventory)": KubeletSource(client, inventory),
        }
        print(f"inventory synced (one paginated list of VMIs and of pods) in {synced:.1f} s")
        print(
            f"{'approach':<24} {'requests':>9} {'MB from API':>12} {'samples':>8} {'wall s':>7}"
            f" {'client CPU s':>12} {'server CPU s':>12}"
        )
        for name, source in approaches.items():
            poll = kubelet_poll(source)
            await poll()  # warm: connections open, models built, as in a running collector
            row = await measure(cluster, client, poll, polls)
            print(
                f"{name:<24} {row['requests']:>9.0f} {row['bytes'] / 1e6:>12.2f} {row['samples']:>8.0f}"
                f" {row['wall']:>7.2f} {row['cpu']:>12.2f} {row['server']:>12.2f}"
            )
        print(
            f"watch counters: lists {sum(c.lists for c in inventory.caches)}, events "
            f"{sum(c.events for c in inventory.caches)}, watches {sum(c.watches for c in inventory.caches)}"
        )
    finally:
        stop.set()
        await watching
        await client.close()


def memstat_process(cluster: ClusterProcess, interval: int, polls: int) -> None:
    """memstat as a real process: RSS and peak RSS after ``polls`` polls, CPU per poll once running."""
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "KUBE_API_URL": cluster.url,
            "NAMESPACE": NAMESPACE,
            "DATA_DIR": data,
            "HTTP_PORT": "18089",
            "POLL_INTERVAL_SECS": str(interval),
            "KUBE_REQUEST_TIMEOUT_SECS": "120",
            "LOG_LEVEL": "WARNING",
            # as the in-process polls above: the cluster process's API is plain HTTP, and without a
            # kubeconfig there is no CA to check its kubelets' certificates against
            "KUBELET_ACCESS": "proxy",
        }
        env.pop("KUBECONFIG", None)
        command = [sys.executable, "-m", "stats_log_collector", "memstat"]
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        try:
            began = time.monotonic()
            while not _ready(18089):
                if process.poll() is not None or time.monotonic() - began > 600:
                    raise RuntimeError("memstat did not become ready")
                time.sleep(0.5)
            ready = time.monotonic() - began
            cpu = cpu_seconds(process.pid)
            time.sleep(interval * polls)
            per_poll = (cpu_seconds(process.pid) - cpu) / polls
            figures = memory(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    print(
        f"\nmemstat process ({interval} s interval): ready (first good poll) after {ready:.1f} s; after"
        f" {polls} more polls VmRSS {figures['VmRSS'] / 1024:.0f} MiB,"
        f" VmHWM {figures['VmHWM'] / 1024:.0f} MiB, CPU {per_poll:.2f} s per poll"
    )


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--polls", type=int, default=3)
    parser.add_argument("--interval", type=int, default=5, help="the memstat process's POLL_INTERVAL_SECS")
    parser.add_argument("--process-polls", type=int, default=6, help="0: skip the memstat process")
    args = parser.parse_args()
    print(f"{args.vms} VMs on {args.nodes} nodes; test cluster in its own process")
    cluster = ClusterProcess(args.vms, args.nodes)
    try:
        asyncio.run(side_by_side(cluster, args.polls))
        if args.process_polls:
            memstat_process(cluster, args.interval, args.process_polls)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
