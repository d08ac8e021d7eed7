"""One collection run: plan from the watched (or listed) objects, read every stream concurrently,
publish each window, report; and the reads of one launcher pod that early collections share.

Each stream (a launcher container, a node's handler log) publishes its files and moves its cursors in
one store commit, or fails alone and is read again next run; logs stream to gzip files, never held in
memory. A pod's jobs are made under its lock from the cursors of that moment, so the run and an early
collection (``early``) never read a line twice. Why and how: docs/logs-collector.md, "One run" and
"Collecting before it is gone".
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Collection
from datetime import UTC, datetime

from ..config import ALL_NAMESPACES
from ..kube import KubeClient, KubeError, KubeNotFound, KubeRejected
from ..settings import LogsCollectorSettings
from . import retention
from .concurrency import KeyedLocks, ReadSlots, drain
from .cursor import NANOS, Cursor, WindowFilter
from .handler_split import HandlerSplitter
from .inventory import Inventory
from .layout import UnusableName, handler_file, launcher_file
from .plan import (
    HandlerJob,
    LauncherJob,
    Plan,
    PodWork,
    VmRef,
    closed_key,
    handler_identities,
    make_plan,
    pod_jobs,
    vm_oldest,
)
from .store import CursorStore
from .triggers import FINISHED_PHASES
from .writer import WindowFile

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunSummary:
    vms: int = 0
    streams: int = 0
    files: int = 0
    bytes: int = 0
    failed_vms: set[str] = dataclasses.field(default_factory=set)
    seconds: float = 0.0
    removed_files: int = 0
    skipped: int = 0  # containers or pods whose shape was not understood (each logged)
    closed_pods: int = 0  # finished pods collected to their end: never read again


class Collector:
    def __init__(self, client: KubeClient, config: LogsCollectorSettings) -> None:
        self.client = client
        self.config = config
        self.store = CursorStore(config.data_dir)
        self.per_namespace = len(config.namespace) > 1 or ALL_NAMESPACES in config.namespace
        self.slots = ReadSlots(config.collect_concurrency)
        self.pod_locks = KeyedLocks()
        # each VM's oldest moving cursor, for streams seen first by an early collection (refreshed
        # every run; a stale value is only older, so such a stream starts earlier, never later)
        self.oldest: dict[str, int] = {}

    def open(self) -> None:
        self.store.open()
        self.oldest = vm_oldest(self.store.cursors)

    def close(self) -> None:
        self.store.close()

    async def list_inventory(self) -> Inventory:
        """Everything listed from the API now (``--once``, and the tests of one run)."""
        config = self.config
        vmis = await self.client.list_vmis(config.namespace)
        launchers = await self.client.list_launcher_pods(config.namespace)
        handlers = await self.client.handler_pods(config.handler_namespace)
        return Inventory(vmis, launchers, handlers)

    def first_start(self) -> int:
        """Where a stream seen for the first time starts, unless its VM has an older cursor."""
        return time.time_ns() - self.config.collect_interval_secs * NANOS

    async def run(self, inventory: Inventory | None = None) -> RunSummary:
        """One collection, from ``inventory`` (the watch caches) or, without one, from lists of the
        API; raises KubeError only when nothing could be listed."""
        began = time.monotonic()
        summary = RunSummary()
        config = self.config
        if inventory is None:
            inventory = await self.list_inventory()
        self.oldest = vm_oldest(self.store.cursors)
        plan = make_plan(
            inventory.vmis,
            inventory.launcher_pods,
            inventory.handlers,
            self.store.cursors,
            now_nanos=time.time_ns(),
            interval_nanos=config.collect_interval_secs * NANOS,
            data_dir=config.data_dir,
            per_namespace=self.per_namespace,
        )
        summary.vms = plan.vms
        for vm, reason in plan.problems:
            self._failed(summary, vm, reason)
        for vm, note in plan.notes:
            log.warning("lines lost before collection", extra={"vm": str(vm), "reason": note})
        for vm, reason in plan.skipped:
            log.warning("launcher pod shape not understood, skipped", extra={"vm": str(vm), "reason": reason})
        summary.skipped = len(plan.skipped)
        final = set(plan.final)
        await drain(
            itertools.chain(
                (self._handler(job, summary, final) for job in plan.handler_jobs),
                (self._collect_quietly(work, summary) for work in plan.pods),
            ),
            workers=config.collect_concurrency,
        )
        self._finish(plan, summary)
        summary.seconds = time.monotonic() - began
        log.info(
            "collection done",
            extra={
                "vms": summary.vms,
                "vms_failed": len(summary.failed_vms),
                "streams": summary.streams,
                "files": summary.files,
                "bytes": summary.bytes,
                "removed_files": summary.removed_files,
                "skipped": summary.skipped,
                "closed_pods": summary.closed_pods,
                "duration_s": round(summary.seconds, 3),
            },
        )
        return summary

    def _finish(self, plan: Plan, summary: RunSummary) -> None:
        retention_secs = self.config.retention_hours * 3600
        now = time.time()
        self.store.snapshot(plan.keys, now, forget_after_secs=retention_secs)
        summary.removed_files, _ = retention.enforce(
            self.config.data_dir, now, retention_secs, self.config.max_data_bytes
        )

    def _failed(self, summary: RunSummary, vm: VmRef, reason: str) -> None:
        summary.failed_vms.add(str(vm))
        log.warning("VM not collected, retried next run", extra={"vm": str(vm), "reason": reason})

    # ---- a launcher pod ----------------------------------------------------------------------------

    async def collect_pod(
        self,
        work: PodWork,
        summary: RunSummary,
        *,
        urgent: bool = False,
        only: Collection[str] | None = None,
    ) -> bool:
        """Read the pod's streams (``only``: those containers) from the cursors of the moment, under the
        pod's lock; a finished pod read whole is closed. True when every stream was read."""
        async with self.pod_locks.hold((work.vm.namespace, work.pod.name)):
            jobs = pod_jobs(work, self.store.cursors, only)
            if jobs.closed:
                return True
            results = await asyncio.gather(*(self._launcher(job, summary, urgent) for job in jobs.jobs))
            complete = all(results) and only is None and not jobs.skipped
            if complete and work.pod.phase in FINISHED_PHASES:
                # after every stream's own commit: a crash before this one only means a re-read (of
                # nothing new) next time
                self.store.commit({closed_key(work.vm, work.pod.name): Cursor(time.time_ns())})
                summary.closed_pods += 1
            return all(results)

    async def _collect_quietly(self, work: PodWork, summary: RunSummary) -> None:
        await self.collect_pod(work, summary)  # failures are in the summary, and logged

    async def _launcher(self, job: LauncherJob, summary: RunSummary, urgent: bool = False) -> bool:
        try:
            name = launcher_file(job.pod, job.container, job.start.nanos)
        except UnusableName as exc:  # a pod or container name from the API that cannot be a file name
            self._failed(summary, job.vm, f"{job.pod!r}/{job.container!r}: {exc}")
            return False
        output = WindowFile(job.folder / name)
        try:
            async with self.slots.slot(urgent):
                end = job.current
                if job.previous is not None:
                    await self._read_previous(job, job.previous, output)
                end = await self._read(job, job.current, False, output)
            published = await asyncio.to_thread(output.close)
            self.store.commit({job.key: end}, [(output.temporary, output.final)] if published else [])
        except (KubeError, OSError) as exc:
            output.discard()
            self._failed(summary, job.vm, f"{job.pod}/{job.container}: {_reason(exc)}")
            return False
        except BaseException:
            output.discard()
            raise
        summary.streams += 1
        summary.files += published
        summary.bytes += output.raw_bytes
        return True

    async def _read_previous(self, job: LauncherJob, start: Cursor, output: WindowFile) -> None:
        try:
            await self._read(job, start, True, output)
        except KubeRejected as exc:  # kubelet no longer has it (the pod was recreated, logs rotated)
            log.warning(
                "previous container log unavailable",
                extra={"vm": str(job.vm), "pod": job.pod, "container": job.container, "reason": str(exc)},
            )

    async def _read(self, job: LauncherJob, start: Cursor, previous: bool, output: WindowFile) -> Cursor:
        window, sink = WindowFilter(start), _Sink(output)
        async with self.client.stream_log_chunks(
            job.vm.namespace, job.pod, job.container, since_time=_second(start), previous=previous
        ) as chunks:
            async for chunk in chunks:
                await sink.add(window.feed(chunk))
        await sink.add(window.finish())
        await sink.flush()
        return window.end.cursor()

    # ---- a node's virt-handler log ----------------------------------------------------------------

    async def _handler(self, job: HandlerJob, summary: RunSummary, final: set[str]) -> None:
        try:
            names = [handler_file(job.pod, target.start.nanos) for target in job.targets]
        except UnusableName as exc:  # a handler pod name from the API that cannot be a file name
            for target in job.targets:
                self._failed(summary, target.vm, f"virt-handler {job.pod!r} on {job.node}: {exc}")
            return
        splitter = HandlerSplitter(handler_identities(job), [target.start for target in job.targets])
        outputs = [WindowFile(target.folder / name) for target, name in zip(job.targets, names, strict=True)]
        sinks = [_Sink(output) for output in outputs]
        try:
            async with self.slots.slot():
                async with self.client.stream_log_chunks(
                    job.namespace, job.pod, "virt-handler", since_time=_second(Cursor(job.since))
                ) as chunks:
                    async for chunk in chunks:
                        for index, data in splitter.feed(chunk).items():
                            await sinks[index].add(data)
                for index, data in splitter.finish().items():
                    await sinks[index].add(data)
                for sink in sinks:
                    await sink.flush()
            published = [await asyncio.to_thread(output.close) for output in outputs]
            cursors = {
                target.key: cursor for target, cursor in zip(job.targets, splitter.cursors(), strict=True)
            }
            renames = [(o.temporary, o.final) for o, done in zip(outputs, published, strict=True) if done]
            self.store.commit(cursors, renames)
            self.store.forget(target.key for target in job.targets if target.key in final)
        except (KubeError, OSError) as exc:
            for output in outputs:
                output.discard()
            for target in job.targets:
                self._failed(summary, target.vm, f"virt-handler {job.pod} on {job.node}: {_reason(exc)}")
            return
        except BaseException:
            for output in outputs:
                output.discard()
            raise
        summary.streams += 1
        summary.files += sum(published)
        summary.bytes += sum(output.raw_bytes for output in outputs)


class _Sink:
    """Gathers kept bytes for a window file and compresses them in a worker thread, 256 KiB at a time
    (ISA-L releases the GIL: compression runs beside the reading and splitting)."""

    BATCH = 256 * 1024

    def __init__(self, output: WindowFile) -> None:
        self.output = output
        self._parts: list[bytes] = []
        self._size = 0

    async def add(self, data: bytes) -> None:
        if data:
            self._parts.append(data)
            self._size += len(data)
            if self._size >= self.BATCH:
                await self.flush()

    async def flush(self) -> None:
        if self._parts:
            data = b"".join(self._parts)
            self._parts, self._size = [], 0
            await asyncio.to_thread(self.output.write, data)


def _second(cursor: Cursor) -> datetime:
    return datetime.fromtimestamp(cursor.second, UTC)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KubeNotFound):
        return f"gone (404): {exc}"
    if isinstance(exc, KubeError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return f"cannot write: {exc.strerror or exc}"
    return repr(exc)
