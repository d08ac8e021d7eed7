"""logs-collector against the original's approach: 500 VMs on 50 nodes, one hour of logs.

Why: the original ran, for every VM one after the other, ``kubectl logs --since=1h`` of its launcher pod
and of the virt-handler pod of its node, so each node's whole handler log was fetched (and gzipped) once
per VM on it. logs-collector reads each launcher container once and each node's handler log once per
run, splitting it among the node's VMs in one pass, with at most COLLECT_CONCURRENCY streams at once.

Setup: the KubeVirt test cluster (a real HTTP server on 127.0.0.1) runs in this process and serves
2 MB of launcher logs per VM (1.5 MB ``compute``, 0.5 MB ``guest-console-log``) and 50 MB of
virt-handler log per node (JSON lines about its VMs interleaved with node lines and klog text), all
stamped within the last hour. Each approach runs as its own process (``stats-log-collector
logs-collector --once``; the original's loop re-implemented on the same client library), so its wall
time, CPU and peak RSS are its own. The original is run on a sample of VMs (``--original-vms``; every
VM costs the same) and scaled to all VMs; its data volume makes a full run take many minutes.

Reported: wall and CPU seconds, peak RSS, API requests, bytes read from the API, bytes written;
logs-collector's output is checked (every launcher line, every handler line about a VM, nothing else).

    .venv/bin/python bench/bench_logs_collector.py [--vms 500] [--nodes 50] [--launcher-mb 2]
        [--handler-mb 50] [--original-vms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from kubevirt_test_cluster import KubeVirtCluster
from kubevirt_test_cluster.api import KubeApi
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.models import Vmi
from stats_log_collector.settings import KubeSettings

NAMESPACE = "vms"
HANDLER_NAMESPACE = "kubevirt"
NANOS = 1_000_000_000
MiB = 1024 * 1024


# ---- the logs -----------------------------------------------------------------------------------


class Micro:
    """KubeVirt's in-line microsecond timestamps, the date part formatted once per second."""

    def __init__(self) -> None:
        self._second, self._text = -1, b""

    def __call__(self, nanos: int) -> bytes:
        second = nanos // NANOS
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return self._text + b".%06dZ" % (nanos % NANOS // 1000)


def stamps(count: int, start: int, end: int) -> Iterator[int]:
    step = (end - start) // max(count, 1)
    for index in range(count):
        yield start + index * step + (index * 7919) % max(step, 1)


COMPUTE = (
    b'{"component":"virt-launcher","level":"info","msg":"%s","pos":"manager.go:1140",'
    b'"timestamp":"%s","uid":"%s"}'
)
COMPUTE_MESSAGES = (
    b"Synced vmi",
    b"Domain name event: vms_vm Running",
    b"Guest agent is connected, updating domain info and guest OS details for the running domain",
    b"Updating domain XML for the VMI after hotplug of a volume was requested by the controller",
)
HANDLER_VM = (
    b'{"component":"virt-handler","kind":"VirtualMachineInstance","level":"info","msg":"%s",'
    b'"name":"%s","namespace":"%s","pos":"vm.go:1700","timestamp":"%s","uid":"%s"}'
)
HANDLER_MESSAGES = (
    b"Processing event vms/%s",
    b"VMI is in phase: Running | Domain status: Running, reason: Unknown",
    b"Synchronization loop succeeded.",
    b"No update processing required",
)
NODE_LINE = (
    b'{"component":"virt-handler","level":"info","msg":"Node heartbeat succeeded","pos":"heartbeat.go:108",'
    b'"timestamp":"%s"}'
)
KLOG = b"I1123 10:00:00.000000    8123 vm.go:2050] Processing vmi %s/%s: domain stats collected"


def fill(api: KubeApi, pod: str, container: str, lines: Iterator[tuple[int, bytes]]) -> None:
    api.pod_logs.runs(NAMESPACE if container != "virt-handler" else HANDLER_NAMESPACE, pod, container)[
        -1
    ].extend(lines)


def launcher_lines(uid: bytes, size: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    micro = Micro()
    count = size // 200
    for index, nanos in enumerate(stamps(count, start, end)):
        message = COMPUTE_MESSAGES[index % len(COMPUTE_MESSAGES)]
        yield nanos, COMPUTE % (message, micro(nanos), uid)


def console_lines(size: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    count = size // 90
    for index, nanos in enumerate(stamps(count, start, end)):
        yield (
            nanos,
            b"[%12.6f] cloud-init[812]: running modules:final, step %d of the boot" % (index / 7, index),
        )


def handler_lines(vms: list[Vmi], size: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """About 90% JSON lines about the node's VMs, the rest node lines and klog text naming a VM."""
    micro = Micro()
    count = size // 280
    identities = [(vm.name.encode(), vm.namespace.encode(), vm.uid.encode()) for vm in vms]
    for index, nanos in enumerate(stamps(count, start, end)):
        name, namespace, uid = identities[index % len(identities)]
        kind = index % 20
        if kind == 0:
            yield nanos, NODE_LINE % micro(nanos)
        elif kind == 10:
            yield nanos, KLOG % (namespace, name)
        else:
            message = HANDLER_MESSAGES[index % len(HANDLER_MESSAGES)]
            if b"%s" in message:
                message = message % name
            yield nanos, HANDLER_VM % (message, name, namespace, micro(nanos), uid)


def build(cluster: KubeVirtCluster, vms: int, nodes: int, launcher_mb: float, handler_mb: float) -> None:
    population = cluster.populate((NAMESPACE,), nodes=nodes, vms_per_namespace=vms, log_lines=0)
    end = time.time_ns() - 5 * NANOS
    start = end - 3300 * NANOS
    launcher_bytes = int(launcher_mb * MiB)
    by_node: dict[str, list[Vmi]] = {}
    for vmi in population.vmis:
        by_node.setdefault(vmi.node, []).append(Vmi(vmi.namespace, vmi.name, vmi.uid, vmi.node, "Running"))
        pod = population.launcher_of(vmi)
        uid = vmi.uid.encode()
        cluster.call(
            lambda api, pod=pod.name, uid=uid: (
                fill(api, pod, "compute", launcher_lines(uid, launcher_bytes * 3 // 4, start, end)),
                fill(api, pod, "guest-console-log", console_lines(launcher_bytes // 4, start, end)),
            )
        )
    for node, handler in population.handler_pods.items():
        on_node = by_node.get(node, [])
        cluster.call(
            lambda api, name=handler.name, on_node=on_node: fill(
                api, name, "virt-handler", handler_lines(on_node, int(handler_mb * MiB), start, end)
            )
        )


# ---- the original's approach, as a worker process --------------------------------------------------


async def original_worker(url: str, out: Path, sample: int) -> None:
    """The original's loop for the first ``sample`` VMs: one after the other, launcher then handler log."""
    client = await KubeClient.connect(KubeSettings(kube_api_url=url, kube_request_timeout_secs=120))
    since = datetime.fromtimestamp(time.time() - 3600, UTC)
    stamp = time.strftime("%m.%d_%Hh%Mm")
    for vmi in (await client.list_vmis([NAMESPACE]))[:sample]:
        pods = await client.list_pods(NAMESPACE, {"vm.kubevirt.io/name": vmi.name})
        folder = out / vmi.name
        folder.mkdir(parents=True, exist_ok=True)
        if pods:
            await save(
                client, NAMESPACE, pods[0].name, "compute", since, folder / f"{pods[0].name}.{stamp}.log.gz"
            )
        assert vmi.node is not None
        handler = await client.handler_pod(vmi.node, HANDLER_NAMESPACE)
        if handler is not None:
            path = folder / f"{handler.name}.{stamp}.log.gz"
            await save(client, HANDLER_NAMESPACE, handler.name, "virt-handler", since, path)
    await client.close()


async def save(
    client: KubeClient, namespace: str, pod: str, container: str, since: datetime, path: Path
) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip's default level, as `| gzip` did
    with open(path, "wb") as handle:  # noqa: ASYNC230 (the original did one thing at a time)
        async with client.stream_log_chunks(
            namespace, pod, container, since_time=since, timestamps=False
        ) as chunks:
            async for chunk in chunks:
                handle.write(compressor.compress(chunk))
        handle.write(compressor.flush())


# ---- measuring --------------------------------------------------------------------------------------


# A child's ru_maxrss counts the memory of this (big) process it was forked from, so each child reports
# the high-water mark of its own address space (VmHWM) as it exits.
PEAK_RSS = (
    "import atexit, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read()\n"
    "    print('VmHWM', status.split('VmHWM:')[1].split()[0], flush=True)\n"
    "atexit.register(peak)\n"
)
COLLECTOR = PEAK_RSS + "from stats_log_collector.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def collector_env(url: str, concurrency: int, home: str) -> dict[str, str]:
    """logs-collector's environment against the test cluster at ``url`` (no kubeconfig of the machine)."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(
        KUBE_API_URL=url,
        NAMESPACE=NAMESPACE,
        KUBEVIRT_NAMESPACE=HANDLER_NAMESPACE,
        COLLECT_CONCURRENCY=str(concurrency),
        KUBE_REQUEST_TIMEOUT_SECS="120",
        HOME=home,
    )
    return env


def run_process(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall s, CPU s, peak RSS MiB of one child process, and its stdout."""
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"{command} failed with {process.returncode}")
    peak_kib = int(output.split("VmHWM")[-1].split()[0])
    return wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024, output


def du(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def check_output(data: Path, vms: int) -> tuple[int, int]:
    """Every VM folder: launcher lines are all there, handler lines are all about the VM; counts."""
    launcher = handler = 0
    for folder in sorted(p for p in data.iterdir() if not p.name.startswith(".")):
        vm = folder.name.encode()
        for path in folder.glob("*.log.gz"):
            with gzip.open(path) as handle:
                for line in handle:
                    if path.name.startswith("virt-handler-"):
                        assert b'"name":"' + vm + b'"' in line or b"/" + vm + b":" in line, (path, line[:200])
                        handler += 1
                    else:
                        launcher += 1
    return launcher, handler


def expected_counts(vms: int, nodes: int, launcher_mb: float, handler_mb: float) -> tuple[int, int]:
    launcher_bytes = int(launcher_mb * MiB)
    launcher = vms * (launcher_bytes * 3 // 4 // 200 + launcher_bytes // 4 // 90)
    per_node = int(handler_mb * MiB) // 280
    handler_total = per_node * nodes
    about_vms = handler_total - sum(1 for _ in range(per_node) if _ % 20 == 0) * nodes
    return launcher, about_vms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--launcher-mb", type=float, default=2.0)
    parser.add_argument("--handler-mb", type=float, default=50.0)
    parser.add_argument("--original-vms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--original-worker", nargs=3, metavar=("URL", "OUT", "SAMPLE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.original_worker:
        url, out, sample = args.original_worker
        exec(PEAK_RSS)
        asyncio.run(original_worker(url, Path(out), int(sample)))
        return

    began = time.perf_counter()
    with KubeVirtCluster() as cluster, tempfile.TemporaryDirectory(prefix="bench-logs-") as scratch:
        build(cluster, args.vms, args.nodes, args.launcher_mb, args.handler_mb)
        print(
            f"setup: {args.vms} VMs on {args.nodes} nodes, {args.launcher_mb:g} MB per launcher, "
            f"{args.handler_mb:g} MB per handler log, in {time.perf_counter() - began:.0f} s"
        )
        env = collector_env(cluster.url, args.concurrency, scratch)
        rows = []
        cluster.clear_requests()
        ours = Path(scratch, "ours")
        wall, cpu, rss, _ = run_process(
            [sys.executable, "-c", COLLECTOR, "logs-collector", "--once"], {**env, "DATA_DIR": str(ours)}
        )
        requests = len(cluster.requests())
        rows.append(("logs-collector", args.vms, wall, cpu, rss, requests, du(ours)))
        launcher, handler = check_output(ours, args.vms)
        want_launcher, want_handler = expected_counts(args.vms, args.nodes, args.launcher_mb, args.handler_mb)
        assert (launcher, handler) == (want_launcher, want_handler), (
            (launcher, handler),
            (want_launcher, want_handler),
        )

        sample = min(args.original_vms, args.vms)
        cluster.clear_requests()
        theirs = Path(scratch, "original")
        wall, cpu, rss, _ = run_process(
            [sys.executable, __file__, "--original-worker", cluster.url, str(theirs), str(sample)], env
        )
        requests = len(cluster.requests())
        rows.append((f"original, {sample} VMs", sample, wall, cpu, rss, requests, du(theirs)))
        scale = args.vms / sample
        rows.append(
            (
                f"original, x{scale:g} = {args.vms} VMs",
                args.vms,
                wall * scale,
                cpu * scale,
                rss,
                round(requests * scale),
                round(du(theirs) * scale),
            )
        )
    header = ("approach", "VMs", "wall s", "CPU s", "peak RSS MiB", "requests", "written MB")
    row = "{:<28} {:>5} {:>8} {:>7} {:>13} {:>9} {:>11}"
    print(row.format(*header))
    for name, count, wall, cpu, rss, requests, written in rows:
        print(
            row.format(
                name, count, f"{wall:.1f}", f"{cpu:.1f}", f"{rss:.0f}", requests, f"{written / 1e6:.1f}"
            )
        )
    print(
        f"logs-collector output checked: {launcher} launcher lines, {handler} handler lines, each of its VM"
    )
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs (wall times depend on it)")


if __name__ == "__main__":
    main()
