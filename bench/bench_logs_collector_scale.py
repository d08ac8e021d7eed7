"""logs-collector at 10,000 VMs on 500 nodes: one run, its memory, and a stop of 1,000 VMs at once.

Why: at that size a list of every VMI and launcher pod per run is tens of megabytes of JSON, and an
hourly collection loses what a VM logged since the last run when its pod goes (a stop, a migration).
Running, logs-collector keeps the objects from watches and collects a pod as soon as it is going.

Setup: the KubeVirt test cluster runs in its own process (this file with ``--serve-cluster``: a real
HTTP server on 127.0.0.1, populated with small logs per VM, taking a few commands on stdin). Each
logs-collector is a real process, measured from outside: wall time, CPU, and its peak RSS (VmHWM).

Reported, side by side in one run:

* today's list-per-run (``--once``: lists VMIs, launcher and handler pods, then reads every stream)
  and the watched mode (the caches' first list, then the first run planned from their snapshots):
  wall, CPU, peak RSS, API requests;
* a stop of 1,000 VMs: their pods deleted at once with a grace period, each after a numbered last
  line; the time until every one of those lines is in its VM's folder, that each is there exactly
  once, and that all were read before their pods went (no "deleted before its last lines" warning).
  The list-per-run mode has no figure here: it reads a pod only at the next run, when it is gone.

    .venv/bin/python bench/bench_logs_collector_scale.py [--vms 10000] [--nodes 500] [--stop 1000]
        [--grace 60] [--log-lines 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_logs_collector import COLLECTOR, NAMESPACE, collector_env, run_process

from kubevirt_test_cluster import KubeVirtCluster

MARK = "last line before the stop"


# ---- the test cluster, in its own process ------------------------------------------------------------


def serve_cluster(vms: int, nodes: int, log_lines: int) -> None:
    """Serve a populated cluster; commands on stdin, one answer line each on stdout."""
    with KubeVirtCluster() as cluster:
        population = cluster.populate((NAMESPACE,), nodes=nodes, vms_per_namespace=vms, log_lines=log_lines)
        pods = sorted(pod.name for pod in population.launcher_pods)
        print(f"url {cluster.url}", flush=True)
        for line in sys.stdin:
            command, *rest = line.split()
            if command == "mark":  # a numbered last line in the compute log of the first N pods
                chosen = pods[: int(rest[0])]
                for pod in chosen:
                    cluster.append_log(NAMESPACE, pod, "compute", f"{MARK} {pod}")
                print(" ".join(chosen), flush=True)
            elif command == "requests":  # how many since the last ask
                print(len(cluster.requests()), flush=True)
                cluster.clear_requests()
            elif command == "pods":
                print(len(cluster.call(lambda api: api.store.list(_pod_type(), NAMESPACE))), flush=True)
            elif command == "quit":
                return


def _pod_type() -> object:
    from kubevirt_test_cluster.resources import POD

    return POD


class ClusterProcess:
    def __init__(self, vms: int, nodes: int, log_lines: int) -> None:
        command = [sys.executable, __file__, "--serve-cluster", str(vms), str(nodes), str(log_lines)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self._answer().split()[1]

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        self.ask_quietly("quit")
        self.process.wait(timeout=30)

    def ask_quietly(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()


# ---- the watched logs-collector, a long-running process -------------------------------------------------


class Watched:
    """``logs-collector`` running (watches, early collections), its stderr kept in a file."""

    def __init__(self, env: dict[str, str], stderr: Path) -> None:
        self.stderr = stderr
        self.began = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-c", COLLECTOR, "logs-collector"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(stderr, "wb"),  # noqa: SIM115 (the child holds it)
        )

    def text(self) -> str:
        return self.stderr.read_text(errors="replace")

    def wait_for(self, condition: str, count: int = 1, timeout: float = 3600) -> float:
        """Seconds since start until ``condition`` appears ``count`` times in the log."""
        deadline = time.perf_counter() + timeout
        while self.text().count(condition) < count:
            if self.process.poll() is not None:
                raise SystemExit(f"logs-collector exited: {self.text()[-2000:]}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out waiting for {condition!r}")
            time.sleep(0.05)
        return time.perf_counter() - self.began

    def status(self, field: str) -> float:
        """A /proc/<pid>/status figure in MiB (VmHWM: peak RSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def summary_field(text: str, name: str) -> str:
    found = re.findall(rf"collection done.*?\b{name}=([0-9.]+)", text)
    return found[-1] if found else "?"


async def delete_pods(url: str, pods: list[str], grace: int) -> None:
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def delete(pod: str) -> None:
            path = f"{url}/api/v1/namespaces/{NAMESPACE}/pods/{pod}"
            async with session.delete(path, params={"gracePeriodSeconds": str(grace)}) as response:
                assert response.status == 200, await response.text()

        await asyncio.gather(*(delete(pod) for pod in pods))


def marks_in_folders(data: Path, pods: list[str]) -> dict[str, int]:
    """How many times each pod's marked line is in its VM's compute files."""
    found = dict.fromkeys(pods, 0)
    for pod in pods:
        vm = pod.removeprefix("virt-launcher-").rsplit("-", 1)[0]
        for path in (data / vm).glob(f"{pod}.compute.*.log.gz"):
            found[pod] += gzip.decompress(path.read_bytes()).count(f"{MARK} {pod}\n".encode())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--stop", type=int, default=1000)
    parser.add_argument("--grace", type=int, default=60)
    parser.add_argument("--log-lines", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve-cluster", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_cluster:
        serve_cluster(*args.serve_cluster)
        return

    began = time.perf_counter()
    cluster = ClusterProcess(args.vms, args.nodes, args.log_lines)
    print(f"setup: {args.vms} VMs on {args.nodes} nodes, in {time.perf_counter() - began:.0f} s")
    with tempfile.TemporaryDirectory(prefix="bench-logs-scale-") as scratch:
        env = collector_env(cluster.url, args.concurrency, scratch)
        rows = []
        cluster.ask("requests")
        listed = Path(scratch, "listed")
        wall, cpu, rss, _ = run_process(
            [sys.executable, "-c", COLLECTOR, "logs-collector", "--once"], {**env, "DATA_DIR": str(listed)}
        )
        rows.append(("list per run (--once)", wall, cpu, rss, int(cluster.ask("requests"))))

        watched_dir = Path(scratch, "watched")
        watched = Watched(
            {**env, "DATA_DIR": str(watched_dir), "COLLECT_INTERVAL_SECS": "3600"},
            Path(scratch, "watched.stderr"),
        )
        first = watched.wait_for("collection done")
        text = watched.text()
        rows.append(("watched (caches' list + run)", first, watched.cpu(), watched.status("VmHWM"), 0))
        rows[-1] = (*rows[-1][:4], int(cluster.ask("requests")))
        run_seconds = float(summary_field(text, "duration_s"))

        chosen = cluster.ask(f"mark {args.stop}").split()
        cpu_before = watched.cpu()
        stop_began = time.perf_counter()
        asyncio.run(delete_pods(cluster.url, chosen, args.grace))
        deleted_in = time.perf_counter() - stop_began
        while True:
            counts = marks_in_folders(watched_dir, chosen)
            if all(counts.values()):
                break
            if time.perf_counter() - stop_began > args.grace:
                missing = sum(1 for n in counts.values() if not n)
                raise SystemExit(f"{missing} pods' last lines not collected within the grace period")
            time.sleep(0.5)
        collected_in = time.perf_counter() - stop_began
        stop_cpu = watched.cpu() - cpu_before
        twice = sum(1 for n in counts.values() if n > 1)
        while int(cluster.ask("pods")) > args.vms - args.stop:  # the grace periods end
            time.sleep(1.0)
        time.sleep(2.0)  # the DELETED events reach the collector
        lost = watched.text().count("deleted before its last lines could be read")
        peak = watched.status("VmHWM")
        watched.stop()
        cluster.close()

    header = ("mode", "wall s", "CPU s", "peak RSS MiB", "API requests")
    row = "{:<30} {:>8} {:>7} {:>13} {:>13}"
    print(row.format(*header))
    for name, wall, cpu, rss, requests in rows:
        print(row.format(name, f"{wall:.1f}", f"{cpu:.1f}", f"{rss:.0f}", requests))
    print(f"watched: the run itself (planned from the caches) took {run_seconds:.1f} s")
    print(
        f"stop of {args.stop} VMs (pods deleted with a {args.grace} s grace period, the DELETEs sent in "
        f"{deleted_in:.1f} s): every last line in its folder after {collected_in:.1f} s, "
        f"CPU {stop_cpu:.1f} s; "
        f"collected twice: {twice}; pods gone before their last lines were read: {lost}; "
        f"peak RSS after the stop {peak:.0f} MiB"
    )
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs (wall times depend on it)")


if __name__ == "__main__":
    main()
