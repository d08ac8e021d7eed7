"""Early collections: a launcher pod's changes, from the watch, turned into reads before the hourly run.

The pure part (what a change asks for) is ``triggers``; this is the I/O around it. Each pod has at most
one worker at a time: changes arriving while it reads are merged into its next round, so a pod that
changes ten times while a collection runs is read once more, not ten times. Workers read through the
collector's ``collect_pod`` (the pod's lock, the shared read slots, the journalled commits), so the
hourly run and an early collection never read the same stream at once, and a burst of pods going at
once is bounded by COLLECT_CONCURRENCY. A going pod's reads are urgent. Why: docs/logs-collector.md,
"Collecting before it is gone".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from ..kube import Pod
from .collector import Collector, RunSummary
from .layout import UnusableName, vm_folder
from .plan import PodWork, VmRef, closed_key, init_key, launcher_key, new_stream_start
from .triggers import Trigger, what_now

log = logging.getLogger(__name__)

JSON = dict[str, Any]
PodKey = tuple[str, str]  # namespace, pod name


@dataclasses.dataclass
class EarlyCounts:
    """What early collections did, for the logs and the benchmark."""

    triggers: int = 0
    collections: int = 0
    streams: int = 0
    files: int = 0
    bytes: int = 0
    closed_pods: int = 0
    failed: int = 0  # collections with a stream not read (retried at the next change or run)
    unplaced: int = 0  # pods whose VMI could not be named (logged)
    gone_unread: int = 0  # pods deleted before a read after they started going (lines may be lost)


class EarlyCollector:
    def __init__(self, collector: Collector, ready: asyncio.Event) -> None:
        """``ready``: set once the caches have their first lists (the VMIs are known by then)."""
        self.collector = collector
        self._ready = ready
        self.counts = EarlyCounts()
        self._vmis: dict[str, VmRef] = {}  # VMI uid -> VM
        self._pending: dict[PodKey, tuple[Trigger, JSON]] = {}
        self._workers: dict[PodKey, asyncio.Task[None]] = {}
        self._read_after_going: set[PodKey] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- watch callbacks (on the event loop, in the server's order, never concurrently) ------------

    def on_vmi_change(self, old: JSON | None, new: JSON | None) -> None:
        if new is None:
            meta = old.get("metadata") if isinstance(old, dict) else None
            if isinstance(meta, dict):
                self._vmis.pop(str(meta.get("uid")), None)
            return
        meta = new.get("metadata")
        if isinstance(meta, dict):
            uid, namespace, name = meta.get("uid"), meta.get("namespace"), meta.get("name")
            if isinstance(uid, str) and isinstance(namespace, str) and isinstance(name, str):
                self._vmis[uid] = VmRef(namespace, name)

    def on_pod_change(self, old: JSON | None, new: JSON | None) -> None:
        trigger = what_now(old, new)
        if trigger is None:
            return
        self.counts.triggers += 1
        key = (trigger.namespace, trigger.pod)
        obj = new if new is not None else old
        assert obj is not None
        earlier = self._pending.get(key)
        self._pending[key] = (_merge(earlier[0], trigger) if earlier else trigger, obj)
        if key not in self._workers:
            self._idle.clear()
            self._workers[key] = asyncio.get_running_loop().create_task(self._work(key))

    async def idle(self) -> None:
        """Return once no early collection is pending or running."""
        await self._idle.wait()

    async def stop(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    # ---- one pod's worker -------------------------------------------------------------------------

    async def _work(self, key: PodKey) -> None:
        try:
            await self._ready.wait()
            while (entry := self._pending.pop(key, None)) is not None:
                trigger, obj = entry
                try:
                    await self._handle(key, trigger, obj)
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception:  # a bug must cost this pod's collection, never the watch
                    self.counts.failed += 1
                    log.exception("early collection failed", extra={"pod": f"{key[0]}/{key[1]}"})
        finally:
            del self._workers[key]
            if not self._workers:
                self._idle.set()

    async def _handle(self, key: PodKey, trigger: Trigger, obj: JSON) -> None:
        vm = self._vmis.get(trigger.vmi_uid)
        if vm is None or vm.namespace != trigger.namespace:  # a pod and its VMI share a namespace
            vm = VmRef(trigger.namespace, trigger.vmi_name) if trigger.vmi_name else None
        pod = Pod.from_json(obj)
        if vm is None and trigger.gone:
            return  # never placed: nothing of it is stored
        if vm is None:
            self.counts.unplaced += 1
            log.warning(
                "launcher pod of no known VMI, not collected early",
                extra={"pod": f"{key[0]}/{key[1]}", "vmi_uid": trigger.vmi_uid},
            )
            return
        if trigger.gone:
            await self._gone(key, vm, pod)
            return
        try:
            folder = vm_folder(
                self.collector.config.data_dir, vm.namespace, vm.name, self.collector.per_namespace
            )
        except UnusableName as exc:
            self.counts.unplaced += 1
            log.warning("VM not collected early", extra={"vm": str(vm), "reason": str(exc)})
            return
        start = new_stream_start(self.collector.oldest, vm, self.collector.first_start())
        summary = RunSummary()
        complete = await self.collector.collect_pod(
            PodWork(vm, folder, pod, start), summary, urgent=trigger.going, only=trigger.containers
        )
        counts = self.counts
        counts.collections += 1
        counts.streams += summary.streams
        counts.files += summary.files
        counts.bytes += summary.bytes
        counts.closed_pods += summary.closed_pods
        counts.failed += not complete
        if trigger.going and complete:
            self._read_after_going.add(key)
        log.info(
            "collected early",
            extra={
                "vm": str(vm),
                "pod": pod.name,
                "reason": "going" if trigger.going else "restarted " + ",".join(trigger.restarted),
                "streams": summary.streams,
                "bytes": summary.bytes,
                "closed": bool(summary.closed_pods),
                "complete": complete,
            },
        )

    async def _gone(self, key: PodKey, vm: VmRef, pod: Pod) -> None:
        """The pod is deleted: nothing can be read any more; its cursors are no longer needed."""
        collector = self.collector
        async with collector.pod_locks.hold(key):
            closed = closed_key(vm, pod.name) in collector.store.cursors
            keys = [closed_key(vm, pod.name)]
            keys += [launcher_key(vm, pod.name, c) for c in (*pod.init_containers, *pod.containers)]
            keys += [init_key(vm, pod.name, c) for c in pod.init_containers]
            collector.store.forget(keys)
        if not closed and key not in self._read_after_going:
            self.counts.gone_unread += 1
            log.warning(
                "launcher pod deleted before its last lines could be read",
                extra={"vm": str(vm), "pod": pod.name},
            )
        self._read_after_going.discard(key)


def _merge(earlier: Trigger, later: Trigger) -> Trigger:
    """Two changes waiting for one worker round: going wins over a restart, all restarts are kept."""
    restarted = tuple(dict.fromkeys((*earlier.restarted, *later.restarted)))
    return dataclasses.replace(
        later,
        going=earlier.going or later.going,
        finished=later.finished,
        restarted=restarted,
        gone=earlier.gone or later.gone,
    )
