"""Pure parsers for the /proc files the procfs (and exec) sources read, and a Sample's figures from them.

Kept free of I/O so every format quirk is tested on literal text: ``/proc/<pid>/status`` gives the
Vm*/Rss* fields in kB (the original tool's figures), ``smaps_rollup`` adds Pss (the fair share of pages
shared between QEMU processes), ``cmdline`` gives QEMU's ``-name`` (the VM name on a host without
Kubernetes), and ``cgroup`` gives the pod UID (how a node-local process is tied to its pod without asking
the API).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

KIB = 1024

# A kubelet pod cgroup: systemd driver "kubepods-burstable-pod<uid with _>.slice" or
# "kubepods-pod<uid>.slice"; cgroupfs driver "/kubepods/burstable/pod<uid>/<container>".
_POD_UID = re.compile(
    r"(?:kubepods[^/]*-pod|/kubepods(?:/[a-z]+)?/pod)"
    r"([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})"
)

# Anchored on "\n" rather than ^ with re.MULTILINE: twice as fast, and this runs for every process.
_KB_FIELD = re.compile(r"\n((?:Vm|Rss)\w+):\s+(\d+) kB")
_ROLLUP_FIELD = re.compile(r"\n(\w+):\s+(\d+) kB")


def parse_status(text: str) -> tuple[dict[str, str], dict[str, int]]:
    """Split status text into (plain fields such as Name/Pid, kB fields Vm*/Rss* as ints)."""
    kb = parse_status_kb(text)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key not in kb:
            fields[key] = value.strip()
    return fields, kb


def parse_status_kb(text: str) -> dict[str, int]:
    """Only the Vm*/Rss* kB fields of status: what a poll needs, with one regex pass (the scan's hot path)."""
    return {key: int(value) for key, value in _KB_FIELD.findall("\n" + text)}


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """The kB fields of smaps_rollup (Rss, Pss, Pss_Anon, Swap, ...); the header line has no kB field."""
    return {key: int(value) for key, value in _ROLLUP_FIELD.findall("\n" + text)}


@dataclasses.dataclass(frozen=True)
class MemoryFigures:
    """A Sample's byte fields, as read from one process."""

    rss_bytes: int
    rss_anon_bytes: int | None
    rss_file_bytes: int | None
    rss_shmem_bytes: int | None
    pss_bytes: int | None
    vm_hwm_bytes: int | None
    vm_size_bytes: int | None
    swap_bytes: int | None
    status_kb: dict[str, int]

    def sample_fields(self) -> dict[str, Any]:
        """These figures as keyword arguments of :class:`~.sample.Sample`.

        Not ``dataclasses.asdict``: it deep-copies ``status_kb``, which was most of a procfs scan's CPU.
        """
        return {name: getattr(self, name) for name in _FIGURE_FIELDS}


_FIGURE_FIELDS = tuple(field.name for field in dataclasses.fields(MemoryFigures))


def _bytes(kb: dict[str, int], key: str) -> int | None:
    value = kb.get(key)
    return None if value is None else value * KIB


def memory_figures(status_kb: dict[str, int], rollup_kb: dict[str, int] | None = None) -> MemoryFigures:
    """Bytes from status kB fields (and smaps_rollup Pss when read); RSS is VmRSS, as libvirt reports."""
    rss = status_kb.get("VmRSS")
    if rss is None:  # a kernel thread or zombie has no VmRSS; sum the parts when they exist
        rss = sum(status_kb.get(k, 0) for k in ("RssAnon", "RssFile", "RssShmem"))
    return MemoryFigures(
        rss_bytes=rss * KIB,
        rss_anon_bytes=_bytes(status_kb, "RssAnon"),
        rss_file_bytes=_bytes(status_kb, "RssFile"),
        rss_shmem_bytes=_bytes(status_kb, "RssShmem"),
        pss_bytes=_bytes(rollup_kb or {}, "Pss"),
        vm_hwm_bytes=_bytes(status_kb, "VmHWM"),
        vm_size_bytes=_bytes(status_kb, "VmSize"),
        swap_bytes=_bytes(status_kb, "VmSwap"),
        status_kb=dict(status_kb),
    )


def split_cmdline(raw: bytes) -> list[str]:
    """argv from /proc/<pid>/cmdline (NUL-separated, NUL-terminated); empty for kernel threads."""
    if not raw:
        return []
    return raw.rstrip(b"\0").decode("utf-8", "replace").split("\0")


def qemu_vm_name(argv: list[str]) -> str | None:
    """The VM name from QEMU's ``-name``: ``vm1,process=...`` or libvirt's ``guest=vm1,debug-threads=on``.

    QEMU escapes a comma in a name as ``,,``; that is undone here.
    """
    for i, arg in enumerate(argv):
        if arg in ("-name", "--name") and i + 1 < len(argv):
            return _name_option(argv[i + 1])
        if arg.startswith(("-name=", "--name=")):
            return _name_option(arg.partition("=")[2])
    return None


def _name_option(value: str) -> str | None:
    parts = value.replace(",,", "\0").split(",")
    for index, part in enumerate(parts):
        key, sep, rest = part.partition("=")
        if sep and key == "guest":
            return rest.replace("\0", ",") or None
        if index == 0 and not sep:
            return part.replace("\0", ",") or None
    return None


# Which processes are sampled, and under what name: shared by the procfs and exec sources.
COMM_LEN = 15  # the kernel keeps the first 15 bytes of the executable's name as comm (TASK_COMM_LEN - 1)
# QEMU in KubeVirt's own images is /usr/libexec/qemu-kvm (comm "qemu-kvm"; the emulator libvirt probes
# inside virt-launcher, kubevirt/kubevirt#8615); elsewhere, and for emulating another architecture, it
# is qemu-system-<arch>, whose comm the kernel cuts to "qemu-system-x86", "qemu-system-aar", ...
QEMU_PREFIXES = ("qemu-system-", "qemu-kvm")


def is_qemu(name: str) -> bool:
    """Whether a comm (or a full name) is QEMU's: any ``qemu-system-*``, or ``qemu-kvm``."""
    return name.startswith(QEMU_PREFIXES[0]) or name == QEMU_PREFIXES[1]


def is_wanted(comm: str, names: Iterable[str]) -> bool:
    """Whether a comm may belong to one of ``names`` (or any QEMU); truncated comms are confirmed later."""
    return is_qemu(comm) or any(comm == name[:COMM_LEN] for name in names)


def needs_cmdline(comm: str) -> bool:
    """argv matters only for QEMU (its ``-name``, its full name) or a comm the kernel may have cut."""
    return len(comm) >= COMM_LEN or comm.startswith(QEMU_PREFIXES)


def process_name(comm: str, argv: list[str]) -> str:
    """The untruncated name: argv[0]'s basename when comm is its start (comm keeps only 15 bytes).

    ``exec -a`` changes argv[0] but not comm, so a renamed argv[0] is ignored and comm is kept.
    """
    if argv:
        base = argv[0].rsplit("/", 1)[-1]
        if len(comm) >= COMM_LEN and base.startswith(comm):
            return base
    return comm


def name_matches(name: str, names: Iterable[str]) -> bool:
    """Whether an untruncated process name is sampled: any QEMU whatever ``names`` says, or one of them."""
    return is_qemu(name) or name in names


def pod_uid_from_cgroup(text: str) -> str | None:
    """The pod UID (with dashes) from /proc/<pid>/cgroup, v1 or v2, systemd or cgroupfs; None off-pod."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        match = _POD_UID.search(path)
        if match:
            return match.group(1).replace("_", "-").lower()
    return None
