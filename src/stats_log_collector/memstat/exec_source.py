"""The ``exec`` source: per-process memory from ``/proc/<pid>/status``, read inside each launcher pod.

Per process where the kubelet source only knows the container: ONE exec per pod per poll runs a POSIX
``sh`` script printing the status file of every process named in PROCESS_NAMES (names matched as the
kernel cuts them, 15 characters). Why and how: docs/memstat.md, "exec: /proc inside each launcher pod".
Parsing the output is pure (:func:`samples_from_scan`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from ..kube.client import KubeClient
from ..kube.errors import KubeError
from .kubelet_source import CONTAINER, list_targets
from .procstatus import memory_figures, parse_status
from .sample import Sample, VmPod

log = logging.getLogger(__name__)

SOURCE = "exec"
DEFAULT_MAX_CONCURRENCY = 32
COMM_LENGTH = 15  # TASK_COMM_LEN - 1: what /proc/<pid>/status says as Name
MARKER = "### pid "

# $@ are the wanted names. A process that exits between the glob and the read is skipped; one that exits
# between the read and the cat leaves a marker with no status, which the parser ignores.
SCAN_SCRIPT = f"""\
for f in /proc/[0-9]*/status; do
  read -r key name 2>/dev/null <"$f" || continue
  for want in "$@"; do
    if [ "$name" = "$want" ]; then
      pid=${{f#/proc/}}
      echo "{MARKER}${{pid%/status}}"
      cat "$f" 2>/dev/null
      break
    fi
  done
done
exit 0
"""


def scan_command(process_names: Sequence[str]) -> list[str]:
    """The exec command: ``sh -c SCRIPT sh NAME...`` with each name cut as the kernel cuts it."""
    return ["sh", "-c", SCAN_SCRIPT, "sh", *dict.fromkeys(name[:COMM_LENGTH] for name in process_names)]


def split_scan(output: str) -> list[tuple[int, str]]:
    """``(pid, status text)`` for each marker of the script's output that is followed by a status."""
    found = []
    for chunk in output.split(MARKER)[1:]:
        pid_text, _, status = chunk.partition("\n")
        if pid_text.strip().isdigit() and status.strip():
            found.append((int(pid_text), status))
    return found


def samples_from_scan(output: str, target: VmPod, process_names: Sequence[str], at: datetime) -> list[Sample]:
    """A Sample per process of the scan output, named as configured (not as the kernel cut it)."""
    by_comm: dict[str, str] = {}
    for configured in process_names:
        by_comm.setdefault(configured[:COMM_LENGTH], configured)
    samples: list[Sample] = []
    for pid, text in split_scan(output):
        fields, kb = parse_status(text)
        name = by_comm.get(fields.get("Name", ""))
        if not name or not kb:
            continue
        figures = memory_figures(kb)
        samples.append(target.sample(at, SOURCE, name, pid, **figures.sample_fields()))
    return samples


class ExecSource:
    """Samples PROCESS_NAMES in every VM's ``compute`` container with one exec per pod per poll."""

    name = SOURCE

    def __init__(
        self,
        client: KubeClient,
        namespaces: Sequence[str],
        process_names: Sequence[str],
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._client = client
        self._namespaces = tuple(namespaces)
        self._process_names = tuple(process_names)
        self._command = scan_command(process_names)
        self._max_concurrency = max_concurrency
        self.skipped = 0

    async def poll(self, at: datetime) -> list[Sample]:
        """One sample of every process of every VM that could be read; ``at`` is the scheduled time."""
        targets = await list_targets(self._client, self._namespaces)
        limit = asyncio.Semaphore(self._max_concurrency)
        per_pod = await asyncio.gather(*(self._sample_pod(target, at, limit) for target in targets))
        self.skipped = sum(not samples for samples in per_pod)  # each with its log line
        return [sample for samples in per_pod for sample in samples]

    async def _sample_pod(self, target: VmPod, at: datetime, limit: asyncio.Semaphore) -> list[Sample]:
        where = {"namespace": target.namespace, "vm": target.vm, "pod": target.pod, "node": target.node}
        async with limit:
            try:
                result = await self._client.exec(target.namespace, target.pod, CONTAINER, self._command)
            except KubeError as exc:
                log.warning("VM skipped for this sample: exec failed", extra={**where, "error": str(exc)})
                return []
        if result.exit_code != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()[:200]
            log.warning(
                "VM skipped for this sample: the status scan failed",
                extra={**where, "exit_code": result.exit_code, "stderr": stderr},
            )
            return []
        samples = samples_from_scan(result.stdout.decode("utf-8", "replace"), target, self._process_names, at)
        if not samples:
            log.warning("VM skipped for this sample: no matching process", extra=where)
        return samples
