"""Each demo VM in a memory cgroup of its own, with a limit: memstat then shows headroom as on a node.

On a node, each VM's QEMU runs in its pod's memory cgroup, whose limit the kernel enforces (the OOM killer
stops QEMU at it). The demo makes the same: ``<the demo's own memory cgroup>/stats-log-collector-demo/<vm>``
with a limit of the guest's memory (QEMU ``-m``) plus OVERHEAD_ALLOWANCE_MIB. A child of its own cgroup,
so it needs no more right than creating a directory where it already runs, and two machines' layouts
are handled the same way.

The kernel's interfaces (Documentation/admin-guide/cgroup-v1/memory.rst and
Documentation/admin-guide/cgroup-v2.rst):

- cgroup v1: the ``memory`` controller has a hierarchy of its own (``/proc/self/cgroup`` has a line
  ``<id>:memory:<path>``; ``/proc/self/mountinfo`` a ``cgroup`` mount with ``memory`` among its super
  options). The limit is ``memory.limit_in_bytes``.
- cgroup v2: one unified hierarchy (line ``0::<path>``, a ``cgroup2`` mount); the limit is ``memory.max``,
  and a child has it only if its parent's ``cgroup.subtree_control`` enables ``memory``. A non-root cgroup
  that holds processes cannot enable it (the "no internal process" rule), so where the demo's own cgroup
  holds processes v2 refuses and the demo says so.
- Either way a process joins a cgroup by writing its PID to the cgroup's ``cgroup.procs``; an empty cgroup
  is removed with rmdir (which the kernel refuses, EBUSY, while a process is still in it).

The pure part (reading ``/proc/self/cgroup`` and mountinfo, the paths, the limit) is separate from the
I/O (``VmCgroups``).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Literal

from ..cgroup_limit import memory_limit, parse_proc_cgroup

log = logging.getLogger(__name__)

PARENT = "stats-log-collector-demo"
MIB = 1024 * 1024
# QEMU's own memory beyond the guest's: measured under TCG on a 2-core machine, `-m 128` with a booted
# idle guest reached 212 MiB resident (84 MiB over -m), the demo's guests 68 MiB over -m at most (vm1,
# -m 160 holding 32 MiB). 256 MiB is three times that, so a busy machine never gets a demo VM killed.
OVERHEAD_ALLOWANCE_MIB = 256
LIMIT_FILES = {1: "memory.limit_in_bytes", 2: "memory.max"}
# A cgroup's name is one directory name: no separators, no "." or "..", nothing the shell or a later
# reader would have to quote; and, with no dot, never an interface file's name ("memory.max", "cgroup.procs":
# cgroup-v2.rst, "Avoid Name Collisions").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")

Version = Literal[1, 2]


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """Where the demo's own memory cgroup is: its directory and the cgroup version."""

    version: Version
    directory: Path

    @property
    def limit_file(self) -> str:
        return LIMIT_FILES[self.version]


@dataclasses.dataclass(frozen=True)
class Mount:
    root: str  # the part of the hierarchy mounted (mountinfo's field 4)
    mountpoint: str
    fstype: str
    super_options: frozenset[str]


class CgroupUnavailable(Exception):
    """Why the VMs cannot have memory cgroups here; the message is shown to the user as it is."""


def limit_bytes(memory_mib: int) -> int:
    """The limit of a VM whose guest has ``memory_mib`` MiB: the guest's memory and QEMU's allowance."""
    return (memory_mib + OVERHEAD_ALLOWANCE_MIB) * MIB


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise CgroupUnavailable(f"{name!r} cannot be a cgroup's name (letters, digits, - and _; 63 at most)")
    return name


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of /proc/<pid>/mountinfo: ``id parent major:minor root mountpoint options [tags] - type
    source super-options``; lines that do not have that shape are skipped."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        mounts.append(
            Mount(_unescape(fields[3]), _unescape(fields[4]), tail[0], frozenset(tail[2].split(",")))
        )
    return mounts


def _within(mount: Mount, path: str) -> Path | None:
    """The directory of cgroup ``path`` under ``mount``; None if the mount does not show that path, or if
    the path climbs (a process outside the cgroup namespace reads ``/../..``)."""
    cgroup, root = PurePosixPath(path), PurePosixPath(mount.root)
    if not cgroup.is_absolute() or ".." in cgroup.parts:
        return None
    try:
        relative = cgroup.relative_to(root)
    except ValueError:
        return None
    return Path(mount.mountpoint) / relative


def locate(mountinfo: str, proc_cgroup: str) -> Hierarchy:
    """Where this process's memory cgroup is: the v1 memory hierarchy if it has one, else v2's."""
    mounts = parse_mountinfo(mountinfo)
    paths = parse_proc_cgroup(proc_cgroup)
    if "memory" in paths:
        for mount in mounts:
            if mount.fstype == "cgroup" and "memory" in mount.super_options:
                directory = _within(mount, paths["memory"])
                if directory is not None:
                    return Hierarchy(1, directory)
        raise CgroupUnavailable(
            f"the memory cgroup {paths['memory']!r} (v1) is not mounted where it can be seen"
        )
    if "" in paths:
        for mount in mounts:
            if mount.fstype == "cgroup2":
                directory = _within(mount, paths[""])
                if directory is not None:
                    return Hierarchy(2, directory)
        raise CgroupUnavailable(f"the cgroup {paths['']!r} (v2) is not mounted where it can be seen")
    raise CgroupUnavailable("this process is in no memory cgroup (no cgroup v1 memory line nor v2 line)")


class VmCgroups:
    """The demo's VM cgroups under one hierarchy: made before the VMs start, removed once they stopped."""

    def __init__(self, hierarchy: Hierarchy, parent: str = PARENT) -> None:
        self.hierarchy = hierarchy
        self.parent = hierarchy.directory / check_name(parent)

    @classmethod
    def of_this_process(cls, parent: str = PARENT) -> VmCgroups:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError as exc:
            raise CgroupUnavailable(f"cannot read this process's cgroups: {exc}") from exc
        return cls(locate(mountinfo, proc_cgroup), parent)

    def directory(self, vm: str) -> Path:
        return self.parent / check_name(vm)

    def procs_file(self, vm: str) -> Path:
        """Where a process writes its PID to join the VM's cgroup."""
        return self.directory(vm) / "cgroup.procs"

    def create(self, vm: str, limit: int) -> Path:
        """The VM's cgroup with ``limit`` set (a stale one, left by a killed run, is made afresh)."""
        directory = self.directory(vm)
        self.remove(vm)  # fresh counters (peak usage, failures) for this run; kept if a process is in it
        try:
            if self.hierarchy.version == 2:
                self._enable_memory_v2()
            directory.mkdir(parents=True, exist_ok=True)
            (directory / self.hierarchy.limit_file).write_text(f"{limit}\n")
            written = memory_limit((directory / self.hierarchy.limit_file).read_text())
        except OSError as exc:
            raise CgroupUnavailable(f"cannot make {directory} with a memory limit: {_why(exc)}") from exc
        if written != limit:
            raise CgroupUnavailable(f"{directory}: the limit {limit} was written, {written} read back")
        return directory

    def _enable_memory_v2(self) -> None:
        """v2: a cgroup's children get memory.max only if it enables ``memory`` for them, from the top."""
        own = self.hierarchy.directory
        if "memory" not in (own / "cgroup.controllers").read_text().split():
            raise CgroupUnavailable(
                f"cgroup v2 offers no memory controller in {own} (bound to a v1 hierarchy, or not delegated)"
            )
        _enable_memory(own)
        self.parent.mkdir(exist_ok=True)
        _enable_memory(self.parent)

    def remove(self, vm: str) -> bool:
        """rmdir the VM's cgroup; False if a process is still in it (then it is left)."""
        return _rmdir(self.directory(vm))

    def remove_all(self, vms: Iterable[str]) -> None:
        """The VMs' cgroups, then the parent if no other run's VMs are in it."""
        for vm in vms:
            if not _NAME.fullmatch(vm):  # never made: create() refused the name
                continue
            if not self.remove(vm):
                log.warning(
                    "a VM's cgroup still holds a process; left", extra={"cgroup": str(self.directory(vm))}
                )
        _rmdir(self.parent, wait=0.0)


def _enable_memory(directory: Path) -> None:
    control = directory / "cgroup.subtree_control"
    if "memory" not in control.read_text().split():
        control.write_text("+memory\n")


def _rmdir(directory: Path, wait: float = 2.0) -> bool:
    """True once gone. A process just reaped may still be leaving the cgroup: EBUSY is retried shortly."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                return False
        time.sleep(0.05)


def _why(exc: OSError) -> str:
    if exc.errno == errno.EBUSY:
        # v2: a cgroup holding processes cannot enable memory for its children; v1: usage above the limit.
        return "busy (a cgroup v2 holding processes cannot give its children memory.max, or usage > limit)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not allowed ({exc.strerror}): the cgroup file system is read-only or not delegated to us"
    return exc.strerror or str(exc)
