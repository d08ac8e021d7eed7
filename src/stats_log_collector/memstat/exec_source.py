"""The ``exec`` source: per-process memory from ``/proc/<pid>/status``, read inside each launcher pod.

Per process where the kubelet source only knows the container: ONE exec per pod per poll runs a POSIX
``sh`` script printing the status file and the argv of every process named in PROCESS_NAMES (names
matched as the kernel cuts them, 15 characters) and of every QEMU, whatever PROCESS_NAMES says. Why and
how: docs/memstat.md, "exec: /proc inside each launcher pod". Parsing the output is pure
(:func:`samples_from_scan`); which process is sampled under which name is the procfs source's rule
(``procstatus``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ..kube.client import KubeClient
from ..kube.errors import KubeError
from .kubelet_source import CONTAINER, memory_by_vm
from .procstatus import (
    COMM_LEN,
    is_qemu,
    memory_figures,
    name_matches,
    parse_status,
    process_name,
    split_cmdline,
)
from .sample import Sample, VmPod
from .vm_figures import VmKey, VmMemory

if TYPE_CHECKING:
    from .inventory import VmInventory

log = logging.getLogger(__name__)

SOURCE = "exec"
DEFAULT_MAX_CONCURRENCY = 32

MARKER = "### pid "
CMDLINE_MARKER = "\n### cmdline\n"

# $@ are the wanted names (cut to 15 characters); any QEMU is wanted too. For each process: the marker,
# its status, a cmdline marker, its NUL-separated argv (the full name behind a cut comm), a newline.
# A process that exits between the glob and the read is skipped; one that exits between the read and
# the cat leaves a marker with no status (or no argv), which the parser copes with. Only sh and cat.
SCAN_SCRIPT = f"""\
for f in /proc/[0-9]*/status; do
  read -r key name 2>/dev/null <"$f" || continue
  case "$name" in
    qemu-system-*|qemu-kvm) ;;
    *)
      found=
      for want in "$@"; do
        if [ "$name" = "$want" ]; then found=1; break; fi
      done
      [ -n "$found" ] || continue
      ;;
  esac
  d=${{f%/status}}
  echo "{MARKER}${{d#/proc/}}"
  cat "$f" 2>/dev/null
  echo "### cmdline"
  cat "$d/cmdline" 2>/dev/null
  echo
done
exit 0
"""


def scan_command(process_names: Sequence[str]) -> list[str]:
    """The exec command: ``sh -c SCRIPT sh NAME...`` with each name cut as the kernel cuts it."""
    return ["sh", "-c", SCAN_SCRIPT, "sh", *dict.fromkeys(name[:COMM_LEN] for name in process_names)]


@dataclasses.dataclass(frozen=True)
class ScannedProcess:
    """One process of the script's output: its status text and argv (empty when unreadable)."""

    pid: int
    status: str
    argv: list[str]


def split_scan(output: str) -> list[tuple[int, str]]:
    """``(pid, status text)`` for each marker of the script's output that is followed by a status."""
    return [(process.pid, process.status) for process in scanned_processes(output)]


def scanned_processes(output: str) -> list[ScannedProcess]:
    """Each process of the script's output that has a status (argv empty if the script printed none)."""
    found = []
    for chunk in output.split(MARKER)[1:]:
        pid_text, _, rest = chunk.partition("\n")
        if rest.startswith(CMDLINE_MARKER[1:]):  # it exited before its status was read
            continue
        status, _, cmdline = rest.partition(CMDLINE_MARKER)
        if pid_text.strip().isdigit() and status.strip():
            argv = split_cmdline(cmdline.removesuffix("\n").encode())
            found.append(ScannedProcess(int(pid_text), status, argv))
    return found


def sampled_name(comm: str, argv: list[str], process_names: Sequence[str]) -> str | None:
    """The name a scanned process is reported under, or None when it is not sampled.

    The procfs source's rule (``procstatus.process_name``/``name_matches``): the untruncated name from
    argv, any QEMU whatever PROCESS_NAMES says. Without argv (unreadable, or an older script), a cut
    comm stands for the configured name it is the start of.
    """
    name = process_name(comm, argv)
    if not argv and len(comm) >= COMM_LEN:
        name = next((n for n in process_names if n[:COMM_LEN] == comm), name)
    return name if name_matches(name, process_names) else None


def samples_from_scan(output: str, target: VmPod, process_names: Sequence[str], at: datetime) -> list[Sample]:
    """A Sample per process of the scan output, under its untruncated name (see :func:`sampled_name`)."""
    samples: list[Sample] = []
    for process in scanned_processes(output):
        fields, kb = parse_status(process.status)
        name = sampled_name(fields.get("Name", ""), process.argv, process_names)
        if not name or not kb:
            continue
        figures = memory_figures(kb)
        samples.append(target.sample(at, SOURCE, name, process.pid, **figures.sample_fields()))
    return samples


class ExecSource:
    """Samples PROCESS_NAMES and QEMU in every VM's ``compute`` container, one exec per pod per poll."""

    name = SOURCE

    def __init__(
        self,
        client: KubeClient,
        inventory: VmInventory,
        process_names: Sequence[str],
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._client = client
        self._inventory = inventory
        self._process_names = tuple(process_names)
        self._command = scan_command(process_names)
        self._max_concurrency = max_concurrency
        self.skipped = 0
        # The pods whose missing QEMU was already logged: logged again only after QEMU came back.
        self._without_qemu: set[tuple[str, str]] = set()
        self.vm_memory: Mapping[VmKey, VmMemory] = {}

    async def poll(self, at: datetime) -> list[Sample]:
        """One sample of every process of every VM that could be read; ``at`` is the scheduled time.

        ``skipped`` (memstat_poll_failures) counts the VMs without a QEMU sample: exec failed, or the
        pod shows no QEMU process (its helpers are still sampled).
        """
        found = await self._inventory.vm_targets()
        targets = [target for target, _ in found]
        self.vm_memory = memory_by_vm(found)
        limit = asyncio.Semaphore(self._max_concurrency)
        per_pod = await asyncio.gather(*(self._sample_pod(target, at, limit) for target in targets))
        without_qemu = set()
        for target, samples in zip(targets, per_pod, strict=True):
            if samples is not None and not any(is_qemu(sample.process) for sample in samples):
                without_qemu.add((target.namespace, target.pod))
                if (target.namespace, target.pod) not in self._without_qemu:
                    self._log_no_qemu(target, samples)
        self._without_qemu = without_qemu
        self.skipped = sum(samples is None for samples in per_pod) + len(without_qemu)
        return [sample for samples in per_pod if samples for sample in samples]

    @staticmethod
    def _log_no_qemu(target: VmPod, samples: list[Sample]) -> None:
        where = {"namespace": target.namespace, "vm": target.vm, "pod": target.pod, "node": target.node}
        if not samples:
            log.warning("VM skipped for this sample: no matching process", extra=where)
        else:
            helpers = sorted({sample.process for sample in samples})
            log.warning(
                "no QEMU process in the VM's pod (logged once until it appears); its helpers are sampled",
                extra={**where, "processes": ",".join(helpers)},
            )

    async def _sample_pod(self, target: VmPod, at: datetime, limit: asyncio.Semaphore) -> list[Sample] | None:
        """The pod's samples; None when the pod could not be read (logged every time)."""
        where = {"namespace": target.namespace, "vm": target.vm, "pod": target.pod, "node": target.node}
        async with limit:
            try:
                result = await self._client.exec(target.namespace, target.pod, CONTAINER, self._command)
            except KubeError as exc:
                log.warning("VM skipped for this sample: exec failed", extra={**where, "error": str(exc)})
                return None
        if result.exit_code != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()[:200]
            log.warning(
                "VM skipped for this sample: the status scan failed",
                extra={**where, "exit_code": result.exit_code, "stderr": stderr},
            )
            return None
        return samples_from_scan(result.stdout.decode("utf-8", "replace"), target, self._process_names, at)
