"""The demo's memory cgroups: where they are (pure, on literal /proc text) and real ones where writable.

The formats are the kernel's: /proc/<pid>/cgroup (``id:controllers:path``, v2 as ``0::path``) and
/proc/<pid>/mountinfo (Documentation/filesystems/proc.rst); the limit files are cgroup v1's
``memory.limit_in_bytes`` and cgroup v2's ``memory.max`` (Documentation/admin-guide/cgroup-v2.rst).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stats_log_collector.cgroup_limit import memory_limit, parse_proc_cgroup
from stats_log_collector.demo.cgroup import (
    MIB,
    CgroupUnavailable,
    Hierarchy,
    VmCgroups,
    check_name,
    limit_bytes,
    locate,
    parse_mountinfo,
)
from stats_log_collector.demo.command import Demo
from stats_log_collector.demo.guest import GuestSpec
from stats_log_collector.demo.layout import Layout
from stats_log_collector.demo.qemu import joining
from tests.helpers import wait_for

# This machine's kind: cgroup v1 with the v2 hierarchy mounted beside it ("hybrid").
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/66d27ef1
1:cpu:/
0::/
"""
# A cgroup v2 only machine (systemd).
V2_MOUNTINFO = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
V2_CGROUP = "0::/user.slice/user-1000.slice/session-3.scope\n"


def test_v1_memory_hierarchy_is_preferred_on_a_hybrid_machine() -> None:
    hierarchy = locate(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert hierarchy == Hierarchy(1, Path("/sys/fs/cgroup/memory/process_api/66d27ef1"))
    assert hierarchy.limit_file == "memory.limit_in_bytes"


def test_v2_only() -> None:
    hierarchy = locate(V2_MOUNTINFO, V2_CGROUP)
    assert hierarchy == Hierarchy(2, Path("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope"))
    assert hierarchy.limit_file == "memory.max"


def test_a_mount_of_part_of_the_hierarchy_is_joined_below_its_root() -> None:
    """In a container, the mount's root (mountinfo field 4) is the container's cgroup, not ``/``."""
    mountinfo = "35 31 0:32 /kubepods/pod1 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
    hierarchy = locate(mountinfo, "4:memory:/kubepods/pod1/ctr\n")
    assert hierarchy.directory == Path("/sys/fs/cgroup/memory/ctr")


def test_escaped_mountpoints_are_read_back() -> None:
    [mount] = parse_mountinfo(r"41 31 0:38 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw" + "\n")
    assert mount.mountpoint == "/mnt/my cgroups"
    assert locate(mount_line(mount.mountpoint), "0::/a\n").directory == Path("/mnt/my cgroups/a")


def mount_line(mountpoint: str) -> str:
    return f"41 31 0:38 / {mountpoint.replace(' ', chr(92) + '040')} rw - cgroup2 cgroup2 rw\n"


@pytest.mark.parametrize(
    ("mountinfo", "proc_cgroup", "reason"),
    [
        # Outside our cgroup namespace the path climbs: never followed.
        (HYBRID_MOUNTINFO, "4:memory:/../../other\n", "(v1) is not mounted where it can be seen"),
        # The mount shows another part of the hierarchy.
        (
            "35 31 0:32 /kubepods/pod1 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
            "4:memory:/kubepods/pod2/ctr\n",
            "(v1) is not mounted",
        ),
        # A memory line, but no memory mount (the hierarchy is not mounted in this container).
        (V2_MOUNTINFO, "4:memory:/a\n0::/\n", "(v1) is not mounted"),
        ("", V2_CGROUP, "(v2) is not mounted"),
        (HYBRID_MOUNTINFO, "", "in no memory cgroup"),
        (HYBRID_MOUNTINFO, "garbage\n\x00\n", "in no memory cgroup"),
        ("garbage - \n1 2\n", "0::relative/path\n", "(v2) is not mounted"),
    ],
)
def test_where_there_is_no_usable_cgroup_it_says_why(mountinfo: str, proc_cgroup: str, reason: str) -> None:
    with pytest.raises(CgroupUnavailable, match=reason.replace("(", r"\(").replace(")", r"\)")):
        locate(mountinfo, proc_cgroup)


def test_proc_cgroup_lines() -> None:
    paths = parse_proc_cgroup("5:cpu,cpuacct:/a\n4:memory:/b:with:colons\n0::/c\nnonsense\n")
    assert paths == {"cpu": "/a", "cpuacct": "/a", "memory": "/b:with:colons", "": "/c"}


def test_limit_is_guest_memory_and_qemus_allowance() -> None:
    assert limit_bytes(160) == (160 + 256) * MIB


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "../x", "memory.max", "cgroup.procs", "vm\n1", "é", "v" * 64]
)
def test_names_that_are_not_one_plain_directory_are_refused(name: str) -> None:
    with pytest.raises(CgroupUnavailable, match="cannot be a cgroup's name"):
        check_name(name)
    assert check_name("demo-vm1") == "demo-vm1"


def test_joining_keeps_the_pid_through_exec(tmp_path: Path) -> None:
    """The wrapper writes its PID, then execs the command as that same PID (QEMU's pidfile agrees)."""
    procs = tmp_path / "cgroup.procs"
    done = subprocess.run(joining(procs, ["/bin/sh", "-c", 'echo "$$"']), capture_output=True, text=True)
    assert done.returncode == 0
    assert procs.read_text().strip() == done.stdout.strip()


def test_joining_a_cgroup_that_cannot_be_joined_does_not_run_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = subprocess.run(
        joining(tmp_path / "gone" / "cgroup.procs", ["touch", str(marker)]), capture_output=True
    )
    assert done.returncode == 125
    assert not marker.exists()


# Real cgroups: under this process's own memory cgroup, in a parent of this test run's own.
@pytest.fixture
def cgroups() -> Iterator[VmCgroups]:
    try:
        made = VmCgroups.of_this_process(parent=f"slc-test-{os.getpid()}")
        made.create("probe", 64 * MIB)
    except CgroupUnavailable as exc:
        pytest.skip(f"no writable memory cgroup here: {exc}")
    made.remove("probe")
    yield made
    if made.parent.exists():  # a test that failed half-way
        made.remove_all(path.name for path in made.parent.iterdir() if path.is_dir())


def cgroup_of(pid: int, hierarchy: Hierarchy) -> str:
    key = "memory" if hierarchy.version == 1 else ""
    return parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())[key]


def test_a_vm_cgroup_has_its_limit_and_takes_the_process(cgroups: VmCgroups) -> None:
    limit = limit_bytes(160)
    directory = cgroups.create("vm1", limit)
    assert directory == cgroups.parent / "vm1"
    assert memory_limit((directory / cgroups.hierarchy.limit_file).read_text()) == limit
    process = subprocess.Popen(joining(cgroups.procs_file("vm1"), ["sleep", "30"]))
    try:
        wanted = f"/{cgroups.parent.name}/vm1"
        wait_for(
            lambda: cgroup_of(process.pid, cgroups.hierarchy).endswith(wanted), "the process to join", 10
        )
        assert (directory / "cgroup.procs").read_text().split() == [str(process.pid)]
        assert not cgroups.remove("vm1")  # a process is in it: the kernel refuses, the cgroup stays
        assert directory.is_dir()
    finally:
        process.kill()
        process.wait()
    cgroups.remove_all(["vm1"])
    assert not directory.exists()
    assert not cgroups.parent.exists()


def test_a_stale_cgroup_is_made_afresh(cgroups: VmCgroups) -> None:
    """A run killed with -9 leaves its cgroups; the next run's create() replaces them, new limit included."""
    cgroups.create("vm1", limit_bytes(160))
    directory = cgroups.create("vm1", limit_bytes(256))
    assert memory_limit((directory / cgroups.hierarchy.limit_file).read_text()) == limit_bytes(256)
    cgroups.remove_all(["vm1", "never-made"])
    assert not cgroups.parent.exists()


def test_the_kernel_enforces_the_limit(cgroups: VmCgroups) -> None:
    """What the headroom is about: a process of the VM's cgroup that goes past the limit is killed."""
    if Path("/proc/swaps").read_text().count("\n") > 1:
        pytest.skip("swap is on: past the limit the kernel swaps rather than kills")
    cgroups.create("vm1", 64 * MIB)
    fill = "b = bytearray(256 * 1024 * 1024); print('survived')"
    done = subprocess.run(
        joining(cgroups.procs_file("vm1"), [sys.executable, "-c", fill]), capture_output=True
    )
    assert done.returncode == -signal.SIGKILL
    assert b"survived" not in done.stdout


def test_cgroup_v2_without_the_memory_controller_says_why(tmp_path: Path) -> None:
    """The "neither" case on a real v2 hierarchy that offers no memory controller (hybrid machines)."""
    mountinfo, proc_cgroup = Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text()
    v2_only = "\n".join(line for line in proc_cgroup.splitlines() if line.startswith("0::"))
    try:
        hierarchy = locate(mountinfo, v2_only)
    except CgroupUnavailable as exc:
        pytest.skip(f"no cgroup v2 hierarchy here: {exc}")
    if "memory" in (hierarchy.directory / "cgroup.controllers").read_text().split():
        pytest.skip("cgroup v2 offers the memory controller here: the real tests above cover it")
    cgroups = VmCgroups(hierarchy, parent=f"slc-test-{os.getpid()}")
    with pytest.raises(CgroupUnavailable, match="offers no memory controller"):
        cgroups.create("vm1", limit_bytes(160))
    assert not cgroups.parent.exists()


def demo_with(tmp_path: Path, names: list[str]) -> Demo:
    guests = [GuestSpec(name, 1.0, 0, 128 + 32 * index) for index, name in enumerate(names)]
    return Demo(Layout(tmp_path), guests, tmp_path / "vmlinuz", tmp_path / "initrd", 0, 0.0)


def test_the_demo_gives_every_vm_its_cgroup_or_none_and_says_why(cgroups: VmCgroups, tmp_path: Path) -> None:
    """All or none: a VM whose cgroup cannot be made leaves the others without one; the line says why."""
    prefix = f"slc{os.getpid()}-vm"
    demo = demo_with(tmp_path, [f"{prefix}1", f"{prefix}2"])
    demo._make_cgroups()
    assert demo.cgroups is not None
    for guest in demo.guests:
        limit_file = demo.cgroups.directory(guest.name) / demo.cgroups.hierarchy.limit_file
        assert memory_limit(limit_file.read_text()) == limit_bytes(guest.memory_mib)
    assert demo._cgroups_line() == (
        f"  memory cgroups  {demo.cgroups.parent}/<vm>, limit = guest memory + 256 MiB "
        f"({demo.cgroups.hierarchy.limit_file})"
    )
    demo.cgroups.remove_all(guest.name for guest in demo.guests)

    too_long = "v" * 64  # not a name the settings let through (DEMO_VM_PREFIX), yet handled
    failing = demo_with(tmp_path, [f"{prefix}1", too_long])
    failing._make_cgroups()
    assert failing.cgroups is None
    assert failing._cgroups_line() == (
        "  memory cgroups  none, so memstat shows no limit nor headroom: "
        f"{too_long!r} cannot be a cgroup's name (letters, digits, - and _; 63 at most)"
    )
    assert not (cgroups.hierarchy.directory / "stats-log-collector-demo" / f"{prefix}1").exists()
