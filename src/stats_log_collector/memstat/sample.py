"""One memory figure of one VM's process or container at one moment: what every source produces.

Sources fill what they know and leave the rest None (an empty CSV cell): the kubelet source knows a
container's RSS and working set, the exec and procfs sources know each process's /proc status fields, and
procfs also knows PSS from smaps_rollup.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

# The standard CSV columns, in order. Byte values throughout.
COLUMNS = (
    "timestamp",
    "namespace",
    "vm",
    "pod",
    "node",
    "source",
    "process",
    "pid",
    "rss_bytes",
    "rss_anon_bytes",
    "rss_file_bytes",
    "rss_shmem_bytes",
    "pss_bytes",
    "vm_hwm_bytes",
    "vm_size_bytes",
    "swap_bytes",
    "working_set_bytes",
)

# The original stats-logs-collector's header (github.com/fossedihelm/stats-logs-collector): vmName holds
# the launcher pod name, timestamp is unix seconds, values are kB, RSS = RssAnon + RssFile.
LEGACY_COLUMNS = (
    "vmName", "process", "timestamp", "RSS", "RssAnon", "RssFile", "RssShmem", "VmData", "VmExe", "VmHWM",
    "VmLck", "VmLib", "VmPTE", "VmPeak", "VmPin", "VmRSS", "VmSize", "VmStk", "VmSwap",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class VmPod:
    """Where a figure belongs: a VM, the launcher pod running it, and that pod's node.

    Every source finds these first (from the API, or from QEMU's ``-name`` on a plain host), then reads
    figures and makes Samples with :meth:`sample`.
    """

    namespace: str
    vm: str
    pod: str
    node: str = ""

    def sample(self, at: datetime, source: str, process: str, pid: int | None, **figures: Any) -> Sample:
        return Sample(at, self.namespace, self.vm, self.pod, self.node, source, process, pid, **figures)


@dataclasses.dataclass(frozen=True)
class Sample:
    timestamp: datetime  # aware, UTC: the scheduled sample time, not when the answer came back
    namespace: str
    vm: str
    pod: str
    node: str
    source: str  # kubelet | exec | procfs
    process: str  # process name, or container name for the kubelet source
    pid: int | None
    rss_bytes: int
    rss_anon_bytes: int | None = None
    rss_file_bytes: int | None = None
    rss_shmem_bytes: int | None = None
    pss_bytes: int | None = None
    vm_hwm_bytes: int | None = None
    vm_size_bytes: int | None = None
    swap_bytes: int | None = None
    working_set_bytes: int | None = None
    # Every /proc/<pid>/status Vm*/Rss* field in kB, when the source read it (the legacy CSV needs them).
    status_kb: dict[str, int] = dataclasses.field(default_factory=dict, compare=False)
