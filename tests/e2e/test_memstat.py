"""memstat's procfs figures for the demo's QEMU processes: the right VM names, and VmRSS within 2%.

"At the same moment": /proc/<pid>/status is read just before and just after a sample newer than the
first read; when the two reads agree (the guest has finished filling its memory), the sample taken
between them must be within 2% of them.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pytest

from stats_log_collector.demo.cgroup import limit_bytes
from stats_log_collector.demo.guest import parse_guest_line
from tests.e2e.conftest import BOOT_TIMEOUT, RunningDemo, vm_rss_bytes
from tests.helpers import http, wait_for

TOLERANCE = 0.02
STABLE = 0.005

pytestmark = pytest.mark.e2e


def latest_samples(demo: RunningDemo) -> dict[str, dict[str, object]]:
    status, body = http(demo.port, "/api/vms")
    assert status == 200
    # /api/vms: one object per VM, its latest samples in "processes" (the demo's VMs: one QEMU each).
    rows = [{**vm, **process} for vm in json.loads(body) for process in vm["processes"]]
    return {str(row["vm"]): row for row in rows if row["vm"] in demo.names}


def test_vm_names_and_pids_come_from_qemu(demo: RunningDemo) -> None:
    wait_for(lambda: set(latest_samples(demo)) == set(demo.names), "a sample of every VM", BOOT_TIMEOUT)
    for vm, row in latest_samples(demo).items():
        assert row["source"] == "procfs"
        assert row["process"] == "qemu-system-x86_64"  # the full name, not the 15-byte comm
        assert row["pid"] == demo.qemu_pid(vm)


def test_rss_matches_proc_status_within_2_percent(demo: RunningDemo) -> None:
    for vm in demo.names:
        pid = demo.qemu_pid(vm)
        assert pid is not None
        compared: list[tuple[int, int, int]] = []

        def agree(vm: str = vm, pid: int = pid, compared: list[tuple[int, int, int]] = compared) -> bool:
            before, asked = vm_rss_bytes(pid), datetime.now().astimezone()
            wait_for(lambda: _timestamp(latest_samples(demo)[vm]) > asked, f"a new sample of {vm}", 30)
            sample, after = latest_samples(demo)[vm], vm_rss_bytes(pid)
            assert before is not None and after is not None
            if abs(after - before) > STABLE * before:
                return False  # still growing: the guest is filling its memory
            compared.append((before, int(str(sample["rss_bytes"])), after))
            return True

        wait_for(agree, f"{vm}'s memory to settle", BOOT_TIMEOUT)
        before, sampled, after = compared[-1]
        assert abs(sampled - before) <= TOLERANCE * before, (vm, before, sampled, after)
        assert abs(sampled - after) <= TOLERANCE * after, (vm, before, sampled, after)


def test_memory_differs_between_vms_as_the_guests_hold_it(demo: RunningDemo) -> None:
    """The guest holding more memory has the larger QEMU RSS, by at least half the difference held."""
    small, big = demo.guests[0], demo.guests[1]

    def holding() -> bool:  # the last line printed, not one of an earlier boot
        lines = (
            parse_guest_line(line) for line in demo.layout.console_log(big.name).read_text().splitlines()
        )
        held = [line.held_mib for line in lines if line is not None]
        return bool(held) and held[-1] == big.hold_mib

    wait_for(holding, f"{big.name} to hold its memory", BOOT_TIMEOUT)
    wait_for(lambda: bool(latest_samples(demo)), "samples", 30)
    samples = latest_samples(demo)
    difference = int(str(samples[big.name]["rss_bytes"])) - int(str(samples[small.name]["rss_bytes"]))
    assert difference > (big.hold_mib - small.hold_mib) // 2 * 2**20


def test_csv_has_rows_of_every_vm(demo: RunningDemo) -> None:
    def rows() -> list[dict[str, str]]:
        status, body = http(demo.port, "/mem-stats.csv")
        assert status == 200
        return list(csv.DictReader(io.StringIO(body.decode())))

    wait_for(lambda: {row["vm"] for row in rows()} >= set(demo.names), "CSV rows of every VM", BOOT_TIMEOUT)


def _timestamp(row: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(row["timestamp"]).replace("Z", "+00:00"))


def test_per_vm_guest_memory_overhead_and_headroom(demo: RunningDemo) -> None:
    """Each demo VM's figures in /api/vms: its guest memory exactly QEMU's -m, the overhead what QEMU
    uses beyond it, and (where the demo put it in a memory cgroup) the limit and headroom from it."""
    wait_for(lambda: set(latest_samples(demo)) == set(demo.names), "a sample of every VM", BOOT_TIMEOUT)
    with_cgroups = "memory cgroups  none" not in demo.stdout
    status, body = http(demo.port, "/api/vms")
    assert status == 200
    by_vm = {vm["vm"]: vm for vm in json.loads(body)}
    for guest in demo.guests:
        vm = by_vm[guest.name]
        measured = sum(process["rss_bytes"] for process in vm["processes"])
        assert vm["source"] == "procfs" and vm["measured_bytes"] == measured
        assert vm["guest_memory_bytes"] == guest.memory_mib << 20
        assert vm["overhead_bytes"] == measured - (guest.memory_mib << 20)
        assert vm["memory_request_bytes"] is None and vm["requested_overhead_bytes"] is None  # no Kubernetes
        if with_cgroups:  # the tightest limit on QEMU's cgroup and its parents: the demo's
            assert vm["memory_limit_bytes"] == limit_bytes(guest.memory_mib)
            assert vm["headroom_bytes"] == limit_bytes(guest.memory_mib) - measured
