"""Per-VM memory figures: what a VM costs beyond its guest RAM, and how close its pod is to its limit.

Pure: QEMU's ``-m`` and the cgroup memory files are parsed here, and :func:`vm_figures` turns one
poll's samples plus what the source knows of each VM (:class:`VmMemory`) into one :class:`VmFigures`
per VM. Every figure is None (an empty CSV cell, JSON null) where its inputs are not known. Why and
which source knows what: docs/memstat.md, "Per-VM figures".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from fractions import Fraction

from ..cgroup_limit import parse_proc_cgroup
from .sample import COLUMNS, Sample

# The vm-stats.csv columns, in order: where and when as in mem-stats.csv (timestamp .. source), then
# byte values.
VM_COLUMNS = (
    *COLUMNS[: COLUMNS.index("source") + 1],
    "guest_memory_bytes",
    "measured_bytes",
    "overhead_bytes",
    "memory_request_bytes",
    "memory_limit_bytes",
    "headroom_bytes",
    "requested_overhead_bytes",
)

VmKey = tuple[str, str]  # (namespace, vm); namespace "" on a plain host


@dataclasses.dataclass(frozen=True)
class VmMemory:
    """What a source knows of a VM's memory besides its samples; None where it cannot know."""

    guest_memory_bytes: int | None = None
    memory_request_bytes: int | None = None
    memory_limit_bytes: int | None = None
    # The whole pod's figure when the source has one (kubelet: the pod's working set); else the
    # samples are summed.
    measured_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class VmFigures:
    timestamp: datetime
    namespace: str
    vm: str
    pod: str
    node: str
    source: str
    guest_memory_bytes: int | None
    measured_bytes: int | None
    overhead_bytes: int | None  # measured - guest memory: what the VM costs beyond its RAM
    memory_request_bytes: int | None
    memory_limit_bytes: int | None
    headroom_bytes: int | None  # limit - measured: how far the pod is from being OOM-killed
    requested_overhead_bytes: int | None  # request - guest memory: the overhead KubeVirt reserved


def _minus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def measured_of(samples: Iterable[Sample]) -> int | None:
    """What a VM's samples say it uses: the working set where the source has one (the kubelet's
    ``compute`` container), else the RSS of its processes summed; None without samples."""
    rows = list(samples)
    if not rows:
        return None
    if all(s.working_set_bytes is not None for s in rows):
        return sum(s.working_set_bytes or 0 for s in rows)
    return sum(s.rss_bytes for s in rows)


def vm_figures(samples: Iterable[Sample], memory: Mapping[VmKey, VmMemory]) -> list[VmFigures]:
    """One VmFigures per VM that has samples in this poll, sorted by namespace and VM."""
    by_vm: dict[VmKey, list[Sample]] = {}
    for sample in samples:
        by_vm.setdefault((sample.namespace, sample.vm), []).append(sample)
    figures = []
    for key in sorted(by_vm):
        rows = by_vm[key]
        first = rows[0]
        known = memory.get(key, VmMemory())
        measured = known.measured_bytes if known.measured_bytes is not None else measured_of(rows)
        guest, request, limit = known.guest_memory_bytes, known.memory_request_bytes, known.memory_limit_bytes
        figures.append(
            VmFigures(
                timestamp=first.timestamp,
                namespace=first.namespace,
                vm=first.vm,
                pod=first.pod,
                node=first.node,
                source=first.source,
                guest_memory_bytes=guest,
                measured_bytes=measured,
                overhead_bytes=_minus(measured, guest),
                memory_request_bytes=request,
                memory_limit_bytes=limit,
                headroom_bytes=_minus(limit, measured),
                requested_overhead_bytes=_minus(request, guest),
            )
        )
    return figures


# ---- QEMU's -m ---------------------------------------------------------------------------------------

# qemu util/cutils.c ``do_strtosz``: a decimal number (a fraction only with a unit), then one of B K M G T
# P E (case-insensitive, binary multiples).
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([bBkKmMgGtTpPeE]?)$")
_UNITS = {"": None, "B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def qemu_size(text: str, default_unit: str = "B") -> int | None:
    """A QEMU size (``4G``, ``4194304k``, ``1.5G``; bare numbers in ``default_unit``); None if not one."""
    match = _SIZE.match(text.strip())
    if match is None:
        return None
    number, unit = match.group(1), match.group(2).upper()
    if "." in number and not unit:
        return None  # do_strtosz refuses a fraction of a byte
    power = _UNITS[unit or default_unit.upper()]
    value = Fraction(number) * 1024 ** (power or 0)
    return int(value) if value < 2**64 else None


def qemu_guest_memory(argv: list[str]) -> int | None:
    """The guest's initial RAM in bytes from QEMU's ``-m``; None without one (or an unreadable one).

    qemu system/vl.c (softmmu/vl.c before 8.0) ``set_memory_options``: ``-m [size=]N[,slots=n,maxmem=M]``,
    the first unkeyed value being ``size``; a size without a unit is MiB ("legacy suffix-less format"),
    so ``-m 160`` is 160 MiB, and libvirt writes ``-m size=4194304k``. ``maxmem`` is the hotplug ceiling,
    not what the guest has. The last ``-m`` counts, as QEMU merges repeated options.
    """
    found: int | None = None
    for index, arg in enumerate(argv):
        if arg in ("-m", "--m") and index + 1 < len(argv):
            value: str | None = argv[index + 1]
        elif arg.startswith(("-m=", "--m=")):
            value = arg.partition("=")[2]
        else:
            continue
        found = _m_option(value or "")
    return found


def _m_option(value: str) -> int | None:
    for index, part in enumerate(value.split(",")):
        key, sep, rest = part.partition("=")
        if sep and key == "size":
            return qemu_size(rest, "M")
        if index == 0 and not sep:
            return qemu_size(part, "M")
    return None


# ---- cgroup memory limits -------------------------------------------------------------------------


def memory_cgroup(text: str) -> tuple[str, str] | None:
    """``("v2", path)`` or ``("v1", path)`` of the memory controller from /proc/<pid>/cgroup.

    proc(5)/cgroups(7): lines ``hierarchy-ID:controllers:path``; v2's is ``0::path``. A v1 memory
    hierarchy wins when both exist (hybrid hosts account memory there).
    """
    paths = {controller: path for controller, path in parse_proc_cgroup(text).items() if path.startswith("/")}
    if "memory" in paths:
        return "v1", paths["memory"]
    return ("v2", paths[""]) if "" in paths else None


def cgroup_limit_files(cgroup_root: str, text: str) -> list[str]:
    """The limit files that bind a process, its own cgroup first, then each ancestor up to the root.

    The kernel charges a page to every ancestor too, so the tightest limit on the way up is the one
    that OOM-kills (on a node: the container's, then the pod's, then the QoS class's).
    """
    found = memory_cgroup(text)
    if found is None:
        return []
    version, path = found
    base, name = (
        (cgroup_root, "memory.max") if version == "v2" else (f"{cgroup_root}/memory", "memory.limit_in_bytes")
    )
    # A process outside our cgroup namespace shows a path that first climbs out of it (``/../../kubepods/
    # ...``, cgroups(7) "cgroup namespaces"); with the host's hierarchy mounted at cgroup_root, the rest is
    # the path from the host's root.
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    return [
        f"{base}/{'/'.join(parts[:depth])}/{name}".replace("//", "/") for depth in range(len(parts), 0, -1)
    ]
