"""Reading node-local /proc for the procfs source: figures with no API call at all.

Scans PROC_ROOT for the KubeVirt and QEMU processes (judged by ``comm`` first, so 1,000 processes take
well under 100 ms) and reads each one's status, smaps_rollup, cgroup and cmdline; a process that
vanishes mid-scan is skipped, a file that cannot be read leaves its fields empty. Mapping a pod UID to
its VM is the caller's (a ``Mapping[str, VmPod]`` or a callable). Why: docs/memstat.md, "procfs".
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from ..cgroup_limit import memory_limit
from .procstatus import (
    QEMU_PREFIXES,
    is_wanted,
    memory_figures,
    name_matches,
    needs_cmdline,
    parse_smaps_rollup,
    parse_status_kb,
    pod_uid_from_cgroup,
    process_name,
    qemu_vm_name,
    split_cmdline,
)
from .sample import Sample, VmPod
from .vm_figures import VmKey, VmMemory, cgroup_limit_files, qemu_guest_memory

log = logging.getLogger(__name__)

SOURCE = "procfs"
_GONE = (errno.ENOENT, errno.ESRCH)
_READ_SIZE = 65536


PodResolver = Mapping[str, VmPod] | Callable[[str], VmPod | None]


@dataclasses.dataclass(frozen=True)
class ProcRecord:
    """One process as read from /proc; ``rollup_kb`` None when smaps_rollup was unreadable."""

    pid: int
    name: str
    argv: list[str]
    status_kb: dict[str, int]
    rollup_kb: dict[str, int] | None
    pod_uid: str | None
    cgroup: str = ""  # /proc/<pid>/cgroup, for the memory limit that binds it

    @property
    def is_qemu(self) -> bool:
        return self.name.startswith(QEMU_PREFIXES)


class _Vanished(Exception):
    """The process exited while it was being read."""


def _read(path: str, *, optional: bool = False) -> bytes | None:
    """A whole /proc file; raises _Vanished if the process is gone, None if unreadable and optional."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # /proc produces a small file whole in one read; a short read is its end, so the usual
            # second, empty read (a third of a scan's syscalls) is skipped.
            chunks = [os.read(fd, _READ_SIZE)]
            while len(chunks[-1]) == _READ_SIZE:
                chunks.append(os.read(fd, _READ_SIZE))
            return b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in _GONE:
            raise _Vanished from e
        if optional:
            return None
        raise


@dataclasses.dataclass(frozen=True)
class _Identity:
    """What does not change while a process runs one program: kept between scans."""

    comm: str
    name: str
    argv: list[str]
    pod_uid: str | None
    cgroup: str = ""


def _identify(base: str, pid: int, comm: str, names: Iterable[str]) -> _Identity | None:
    """Name, argv and pod of a candidate; None when it is not one of ``names``. Raises _Vanished."""
    argv: list[str] = []
    if needs_cmdline(comm):
        argv = split_cmdline(_read(f"{base}/cmdline", optional=True) or b"")
        if not argv:
            # Mid-exec: the kernel sets the new name before the new argv exists, so for a moment
            # cmdline is empty. Identified now, a QEMU would keep no -name until it exec'd again.
            log.debug("process %d (%s) has no argv yet; identified next scan", pid, comm)
            return None
    name = process_name(comm, argv)
    if not name_matches(name, names):
        return None
    raw = _read(f"{base}/cgroup", optional=True)
    cgroup = raw.decode("utf-8", "replace") if raw else ""
    return _Identity(comm, name, argv, pod_uid_from_cgroup(cgroup) if cgroup else None, cgroup)


def _status_name(text: str) -> str | None:
    """The ``Name:`` of a status text (its first line), or None."""
    if not text.startswith("Name:"):
        return None
    return text[5 : text.find("\n")].strip()


def _measure(
    base: str, pid: int, identity: _Identity, pss: bool, *, recheck: bool, pss_max_bytes: int | None = None
) -> ProcRecord | None:
    """Read the figures; None when the process has no memory or (``recheck``) now runs another program.

    PSS is read only up to ``pss_max_bytes`` of RSS: on some kernels reading smaps_rollup holds the
    process's memory map lock for the whole walk, stalling a large guest's page faults meanwhile
    (ncabatoff/process-exporter#246). Raises _Vanished.
    """
    text = (_read(f"{base}/status") or b"").decode("utf-8", "replace")
    if recheck and _status_name(text) != identity.comm:  # it exec'd: identify it again
        return None
    status_kb = parse_status_kb(text)
    if "VmRSS" not in status_kb:  # a zombie, or it exited between reads
        log.debug("process %d (%s) has no memory figures", pid, identity.name)
        return None
    if pss and pss_max_bytes is not None and status_kb["VmRSS"] * 1024 > pss_max_bytes:
        log.debug("process %d (%s): RSS over PROCFS_PSS_MAX_BYTES, PSS not read", pid, identity.name)
        pss = False
    rollup = _read(f"{base}/smaps_rollup", optional=True) if pss else None
    return ProcRecord(
        pid=pid,
        name=identity.name,
        argv=identity.argv,
        status_kb=status_kb,
        rollup_kb=parse_smaps_rollup(rollup.decode("ascii", "replace")) if rollup else None,
        pod_uid=identity.pod_uid,
        cgroup=identity.cgroup,
    )


def read_process(
    proc_root: str, pid: int, comm: str, names: Iterable[str], *, pss: bool = True
) -> ProcRecord | None:
    """Read one candidate process; None when it vanished, is not one of ``names``, or has no memory.

    ``pss=False`` skips smaps_rollup: the kernel walks every page table for it, half a scan's time.
    """
    base = f"{proc_root}/{pid}"
    try:
        identity = _identify(base, pid, comm, names)
        return None if identity is None else _measure(base, pid, identity, pss, recheck=False)
    except _Vanished:
        log.debug("process %d (%s) vanished while read", pid, comm)
        return None


def _comm(proc_root: str, pid: int) -> str | None:
    try:
        raw = _read(f"{proc_root}/{pid}/comm", optional=True)
    except _Vanished:
        return None
    return raw.decode("utf-8", "replace").rstrip("\n") if raw else None


class Scanner:
    """Repeated scans of one PROC_ROOT that read each known process's ``status`` and nothing else.

    A process's name, argv and cgroup do not change while it runs one program, so after the first
    scan a process seen last time costs one read (``status``, whose ``Name`` line tells whether it
    exec'd another program since; then it is identified again). Every other process costs one ``comm``
    read per scan, as before: it may exec into QEMU at any time. A PID that disappears is forgotten at
    once, so a reused PID is always identified afresh. This halves a steady scan's reads.
    """

    def __init__(
        self, proc_root: Path | str, names: Iterable[str], *, pss_max_bytes: int | None = None
    ) -> None:
        self._root = str(proc_root)
        self._names = tuple(names)
        self._pss_max_bytes = pss_max_bytes  # PSS is left unread above this RSS (see _measure)
        self._known: dict[int, _Identity] = {}
        self.failed = 0  # processes the last scan could not read for another reason than their exit

    def scan(self, *, pss: bool = True) -> list[ProcRecord]:
        """Every process named one of ``names`` (or any QEMU), in PID order."""
        with os.scandir(self._root) as entries:
            pids = sorted(int(e.name) for e in entries if e.name.isdigit())
        known, self._known = self._known, {}
        records = []
        self.failed = 0
        for pid in pids:
            base = f"{self._root}/{pid}"
            try:
                found = self._read(base, pid, known.get(pid), pss)
            except _Vanished:
                log.debug("process %d vanished while read", pid)
                continue
            except Exception as exc:  # one unreadable process (an odd /proc, a bug) fails itself only
                log.warning("process skipped for this sample", extra={"pid": pid, "error": repr(exc)})
                self.failed += 1
                continue
            if found is not None:
                self._known[pid] = found[0]
                records.append(found[1])
        return records

    def _read(
        self, base: str, pid: int, identity: _Identity | None, pss: bool
    ) -> tuple[_Identity, ProcRecord] | None:
        if identity is not None:
            record = _measure(base, pid, identity, pss, recheck=True, pss_max_bytes=self._pss_max_bytes)
            if record is not None:
                return identity, record
        comm = _comm(self._root, pid)
        if comm is None or not is_wanted(comm, self._names):
            return None
        identity = _identify(base, pid, comm, self._names)
        if identity is None:
            return None
        record = _measure(base, pid, identity, pss, recheck=False, pss_max_bytes=self._pss_max_bytes)
        return None if record is None else (identity, record)


def scan(proc_root: Path | str, names: Iterable[str], *, pss: bool = True) -> list[ProcRecord]:
    """One scan with nothing known beforehand (see :class:`Scanner` for repeated scans)."""
    return Scanner(proc_root, names).scan(pss=pss)


def _lookup(resolver: PodResolver | None, uid: str) -> VmPod | None:
    if resolver is None:
        return None
    if isinstance(resolver, Mapping):
        return resolver.get(uid)
    return resolver(uid)


def _sample(record: ProcRecord, timestamp: datetime, info: VmPod) -> Sample:
    figures = memory_figures(record.status_kb, record.rollup_kb)
    return info.sample(timestamp, SOURCE, record.name, record.pid, **figures.sample_fields())


def resolve(record: ProcRecord, resolver: PodResolver | None, node: str) -> VmPod | None:
    """Namespace, VM, pod and node of a process; None when it cannot be tied to a VM (then skipped).

    In a pod: what the resolver knows of its UID (every process of the pod gets the pod's VM; a pod it
    does not know is not watched). Without a resolver (no Kubernetes API) or outside a pod: QEMU's
    ``-name``; a helper (virtqemud, virtlogd) there serves every VM, so it is tied to none and skipped.
    """
    if record.pod_uid is not None and resolver is not None:
        info = _lookup(resolver, record.pod_uid)
        if info is None:
            log.debug("process %d (%s): pod %s not watched", record.pid, record.name, record.pod_uid)
            return None
        return info if info.node else dataclasses.replace(info, node=node)
    vm = qemu_vm_name(record.argv) if record.is_qemu else None
    if vm is None:
        return None
    return VmPod(namespace="", vm=vm, pod="", node=node)


def to_samples(
    records: Iterable[ProcRecord],
    timestamp: datetime,
    resolver: PodResolver | None = None,
    node: str | None = None,
) -> list[Sample]:
    """Samples of the records that can be tied to a VM; ``node`` defaults to this host's name."""
    host = node if node is not None else socket.gethostname()
    samples = []
    for record in records:
        info = resolve(record, resolver, host)
        if info is not None:
            samples.append(_sample(record, timestamp, info))
    return samples


def sample_procfs(
    proc_root: Path | str | Scanner,
    names: Iterable[str],
    timestamp: datetime,
    resolver: PodResolver | None = None,
    node: str | None = None,
    *,
    pss: bool = True,
) -> list[Sample]:
    """One poll of the procfs source: scan (with a :class:`Scanner` kept between polls), map to Samples."""
    scanner = proc_root if isinstance(proc_root, Scanner) else Scanner(proc_root, names)
    return to_samples(scanner.scan(pss=pss), timestamp, resolver, node)


def cgroup_root_for(proc_root: Path | str) -> Path:
    """Where the cgroup hierarchy of PROC_ROOT's host is: ``/proc`` -> ``/sys/fs/cgroup``, and the
    host's mounted beside it (``/host/proc`` -> ``/host/sys/fs/cgroup``)."""
    return Path(proc_root).parent / "sys" / "fs" / "cgroup"


def cgroup_memory_limit_of(cgroup_root: Path | str, cgroup: str) -> int | None:
    """The tightest memory limit on a process's cgroup and its ancestors (see ``cgroup_limit_files``);
    None when none is set or none can be read."""
    limits = []
    for path in cgroup_limit_files(str(cgroup_root), cgroup):
        try:
            raw = _read(path, optional=True)
        except _Vanished:  # ENOENT: a controller not enabled at this level, or the cgroup went away
            continue
        if raw and (limit := memory_limit(raw.decode("ascii", "replace"))) is not None:
            limits.append(limit)
    return min(limits, default=None)


def vm_memory_from_records(
    records: Iterable[ProcRecord],
    resolver: PodResolver | None,
    node: str,
    cgroup_root: Path | str | None,
) -> dict[VmKey, VmMemory]:
    """What /proc says of each VM's memory: the guest's RAM from its QEMU's ``-m``, and the memory
    limit of the QEMU's cgroup (None without a cgroup root, or when none is set)."""
    found: dict[VmKey, VmMemory] = {}
    for record in records:
        info = resolve(record, resolver, node) if record.is_qemu else None
        if info is None:
            continue
        limit = cgroup_memory_limit_of(cgroup_root, record.cgroup) if cgroup_root is not None else None
        found[(info.namespace, info.vm)] = VmMemory(qemu_guest_memory(record.argv), None, limit)
    return found


def poll_procfs(
    scanner: Scanner,
    timestamp: datetime,
    resolver: PodResolver | None,
    node: str,
    *,
    pss: bool = True,
    cgroup_root: Path | str | None = None,
) -> tuple[list[Sample], dict[VmKey, VmMemory]]:
    """One poll of the procfs source: its samples, and what /proc says of each VM's memory."""
    records = scanner.scan(pss=pss)
    samples = to_samples(records, timestamp, resolver, node)
    return samples, vm_memory_from_records(records, resolver, node, cgroup_root)
