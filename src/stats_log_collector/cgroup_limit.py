"""cgroup files, read: by memstat (a VM's limit) and the demo (its VMs' cgroups and the limits it set).

cgroup v2 ``memory.max`` (the kernel's Documentation/admin-guide/cgroup-v2.rst): a number of bytes, or
``max`` for none. cgroup v1 ``memory.limit_in_bytes`` (Documentation/admin-guide/cgroup-v1/memory.rst): a
number of bytes; "no limit" shows as PAGE_COUNTER_MAX pages in bytes (9223372036854771712 with 4 KiB
pages, mm/memcontrol.c ``mem_cgroup_read_u64``), so anything this large is no limit.
"""

from __future__ import annotations

V1_UNLIMITED = 2**62


def memory_limit(text: str) -> int | None:
    """The limit in bytes; None for no limit, a limit of 0 or unreadable text."""
    value = text.strip()
    if not value.isdigit():
        return None  # "max", empty, garbage, a negative number
    limit = int(value)
    return limit if 0 < limit < V1_UNLIMITED else None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 hierarchy (``0::<path>``) under ``""``."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths
