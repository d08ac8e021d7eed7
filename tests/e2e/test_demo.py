"""``stats-log-collector demo`` as a newcomer runs it: what it prints, Ctrl-C, running it again, kill -9.

Across every stop and start, each VM's pod log (CRI, written by the demo's own virtlet-log) stays
exactly its raw console: the boots follow each other in the same files, nothing lost or repeated.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from stats_log_collector.cgroup_limit import memory_limit
from stats_log_collector.demo.cgroup import PARENT, limit_bytes, locate
from stats_log_collector.demo.processes import process_argv, read_pidfile
from tests.e2e.conftest import RunningDemo, assert_console_exact, guest_seqs
from tests.helpers import http, wait_for

pytestmark = pytest.mark.e2e


def test_prints_where_everything_is_and_when_it_showed(demo: RunningDemo) -> None:
    out = demo.stdout
    assert f"http://127.0.0.1:{demo.port}/dashboard?range=300" in out
    for vm in demo.names:
        assert str(demo.layout.pod_log(vm)) in out
        assert f"{vm}: first console line in its pod log after " in out
    wait_for(lambda: "dashboard: every VM has its first point after " in demo.stdout, "the chart report", 60)
    status, listing = http(demo.port, "/logs/")  # the pod logs, browsable
    assert status == 200 and demo.layout.pod_dir(demo.names[0]).name.encode() in listing


def running_pids(demo: RunningDemo) -> dict[str, int]:
    pids = {vm: demo.qemu_pid(vm) for vm in demo.names}
    for name in ("virtlet-log", "memstat"):
        pids[name] = read_pidfile(demo.layout.pidfile(name))
    assert all(pid is not None and process_argv(pid) is not None for pid in pids.values()), pids
    return {name: pid for name, pid in pids.items() if pid is not None}


def assert_pod_logs_exact(demo: RunningDemo, boots: int) -> None:
    for vm in demo.names:
        seqs = assert_console_exact(demo.layout.pod_log(vm), demo.layout.console_log(vm), "cri", vm)
        assert seqs.count(1) >= boots, f"{vm}: {seqs.count(1)} boots in its pod log"


def vm_cgroups(demo: RunningDemo) -> dict[str, Path]:
    """Each VM's QEMU's memory cgroup, read from /proc/<pid>/cgroup; skips where the demo has none."""
    unavailable = re.search(r"memory cgroups  none, (.*)", demo.stdout)
    if unavailable:
        pytest.skip(f"the demo runs its VMs without memory cgroups here: {unavailable[1]}")
    mountinfo = Path("/proc/self/mountinfo").read_text()
    pids = running_pids(demo)
    return {
        vm: locate(mountinfo, Path(f"/proc/{pids[vm]}/cgroup").read_text()).directory for vm in demo.names
    }


def test_each_vm_runs_in_its_memory_cgroup_with_its_limit(demo: RunningDemo) -> None:
    for guest in demo.guests:
        directory = vm_cgroups(demo)[guest.name]
        assert (directory.parent.name, directory.name) == (PARENT, guest.name)
        [limit_file] = [f for f in ("memory.limit_in_bytes", "memory.max") if (directory / f).exists()]
        assert memory_limit((directory / limit_file).read_text()) == limit_bytes(guest.memory_mib)
        assert str(demo.qemu_pid(guest.name)) in (directory / "cgroup.procs").read_text().split()


def test_ctrl_c_stops_everything_keeps_the_data_and_running_again_continues(demo: RunningDemo) -> None:
    before = running_pids(demo)
    cgroups = [] if "memory cgroups  none" in demo.stdout else list(vm_cgroups(demo).values())
    boots = min(guest_seqs(demo.layout.console_log(vm).read_bytes(), vm).count(1) for vm in demo.names)
    assert demo.stop(signal.SIGINT) == 0
    assert all(process_argv(pid) is None for pid in before.values())  # VMs and components gone
    assert "stopped; the VMs' consoles, pod logs and memory samples are in" in demo.stdout
    assert not any(directory.exists() for directory in cgroups)  # removed once their VMs stopped
    assert_pod_logs_exact(demo, boots)  # complete: the last lines were forwarded before the loggers stopped
    assert (demo.layout.memstat / "mem-stats.csv").stat().st_size > 0
    demo.ensure_running()  # the same folders, the same files: the logs continue
    assert_pod_logs_exact(demo, boots + 1)


def test_after_kill_9_of_the_demo_running_again_takes_over(demo: RunningDemo) -> None:
    orphans = running_pids(demo)
    boots = min(guest_seqs(demo.layout.console_log(vm).read_bytes(), vm).count(1) for vm in demo.names)
    demo.stop(signal.SIGKILL)  # its VMs and components live on, in their own sessions
    assert all(process_argv(pid) is not None for pid in orphans.values())
    demo.ensure_running()  # stops what the killed run left (found through the pidfiles), boots again
    assert all(process_argv(pid) is None for pid in orphans.values())
    assert set(running_pids(demo).values()).isdisjoint(orphans.values())
    assert_pod_logs_exact(demo, boots + 1)
